"""Interoperability with the reference PyTorch implementation (zhongyuchen/snn-iir, Snow-Crash/snn-iir).

* `load_state_dict(model, state_dict)` copies a reference `state_dict` into one of our networks, converting
  every layout difference: Linear weight [out, in] -> kernel [in, out]; Conv2d weight [O, I, k1, k2] -> HWIO;
  per-element coefficients (C, A1, A2) -> (H, W, C); the channel-major flatten (c, a1, a2) -> our (h, w, c);
  and for event-camera networks (model.reference_spatial_order == "xy") the (x, y) spatial order of the
  reference's frames -> our (y, x). Reference modules are matched to our layers by position (stage number,
  the filter before the layer it feeds), so the mysnn attribute names (snn7, dense7, ...) do not matter.
* `read_state_dict(path)` reads an `.npz` of arrays keyed by PyTorch names (keys may carry DataParallel's
  `module.` prefix or the golden files' `param/` prefix), or a reference checkpoint written by `torch.save`
  (a dict with `snn_state_dict`) when torch is installed.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Mapping

import jax.numpy as jnp
import numpy as np

from iirsnn_jax import layers as layers_lib
from iirsnn_jax.models import SpikingNetwork

# Reference cell name -> our layer class; frozen constants we keep as scalars.
_CELLS = {
    "dual_exp_iir_cell": layers_lib.DualExpFilter,
    "first_order_low_pass_cell": layers_lib.LowPassFilter,
    "neuron_cell": layers_lib.SpikingDense,
    "conv2d_cell": layers_lib.SpikingConv,
}
_UNIFORM_CONSTANTS = ("reset_decay", "reset_v", "decay_v")


def strip_prefixes(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Removes the golden files' `param/` and DataParallel's `module.` prefixes from every key."""
    out = {}
    for key, value in state_dict.items():
        name = key[len("param/"):] if key.startswith("param/") else key
        name = name[len("module."):] if name.startswith("module.") else name
        out[name] = np.asarray(value)
    return out


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a reference state_dict from `.npz` (PyTorch names) or a `torch.save` checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no state_dict file at {path}")
    if path.suffix == ".npz":
        with np.load(path) as data:
            return strip_prefixes({k: data[k] for k in data.files if not k.startswith(("grad/", "layer_spikes/"))
                                   and data[k].dtype.kind == "f"})
    try:
        import torch
    except ImportError:
        raise ImportError(f"{path} is not an .npz file; reading a PyTorch checkpoint needs torch "
                          "(pip install torch), or save its state_dict as .npz of numpy arrays") from None
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(checkpoint, Mapping) and "snn_state_dict" in checkpoint:
        checkpoint = checkpoint["snn_state_dict"]
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path}: expected a state_dict or a dict with 'snn_state_dict', got {type(checkpoint)}")
    return strip_prefixes({k: v.detach().cpu().numpy() for k, v in checkpoint.items()})


def _module_order(module: str) -> tuple:
    """Sort key of a reference module: output filter last, else (stage number, filter before its layer)."""
    if module == "output_filter":
        return (float("inf"), 0)
    match = re.search(r"(\d+)$", module)
    if not match:
        raise ValueError(f"reference module {module!r} has no stage number; cannot place it in the network")
    return (int(match.group(1)), 0 if module.startswith("axon") else 1)


def _reference_modules(names) -> list[tuple[str, str]]:
    """[(module, cell)] of the parametrised reference modules in forward order, from state_dict keys."""
    modules = {}
    for name in names:
        module, _, rest = name.partition(".")
        cell = rest.split(".")[0] if module != "output_filter" else "output_filter"
        modules.setdefault(module, cell)
    return sorted(modules.items(), key=lambda item: _module_order(item[0]))


def _flatten_permutation(shape_hwc, spatial_order: str) -> np.ndarray:
    """perm with ours_flat = reference_flat[perm] for a flattened (H, W, C) frame."""
    h, w, c = shape_hwc
    if spatial_order == "hw":
        return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
    return np.arange(c * w * h).reshape(c, w, h).transpose(2, 1, 0).reshape(-1)


def _frame_to_ours(array: np.ndarray, spatial_order: str) -> np.ndarray:
    """(C, A1, A2) -> (H, W, C)."""
    return array.transpose((1, 2, 0) if spatial_order == "hw" else (2, 1, 0))


def converters(model: SpikingNetwork, names) -> dict[str, tuple[str, str, Callable]]:
    """Maps each reference parameter name to (our layer, our attribute, convert(array) -> our array).

    `names` are reference state_dict keys (prefixes stripped). Raises ValueError when the reference network
    does not have the structure of `model`.
    """
    order = model.reference_spatial_order
    ours, shape, flat_perm = [], model.input_shape, None
    for name, layer in zip(model.layer_names, model.layers):
        if isinstance(layer, layers_lib.Flatten) and len(shape) == 3:
            flat_perm = _flatten_permutation(shape, order)
        if isinstance(layer, (layers_lib.DualExpFilter, layers_lib.LowPassFilter, layers_lib.OutputFilter,
                              layers_lib.SpikingDense, layers_lib.SpikingConv)):
            ours.append((name, layer, flat_perm))
            if isinstance(layer, layers_lib.SpikingDense):
                flat_perm = None  # the dense layer consumes the flattened order
        shape = layer.output_shape()
    reference = _reference_modules(names)
    if all(module != "output_filter" for module, _ in reference):
        # The output filter is frozen: a list of gradients has no entry for it.
        ours = [entry for entry in ours if not isinstance(entry[1], layers_lib.OutputFilter)]
    if len(reference) != len(ours):
        raise ValueError(f"the reference state_dict has {len(reference)} parametrised modules "
                         f"{[m for m, _ in reference]}, the network {len(ours)} {[n for n, _, _ in ours]}")
    table = {}
    for (module, cell), (name, layer, perm) in zip(reference, ours):
        expected = layers_lib.OutputFilter if cell == "output_filter" else _CELLS.get(cell)
        if expected is None or not isinstance(layer, expected):
            raise ValueError(f"reference module {module} ({cell}) does not match our layer {name} "
                             f"({type(layer).__name__})")

        def features(a, layer=layer, perm=perm):  # per-element coefficients
            if a.ndim == 3:
                return _frame_to_ours(a, order)
            return a[perm] if perm is not None else a

        def kernel(a, perm=perm):
            if a.ndim == 4:  # Conv2d [O, I, k1, k2] -> HWIO
                return a.transpose((2, 3, 1, 0) if order == "hw" else (3, 2, 1, 0))
            a = a.T  # Linear [out, in] -> [in, out]
            return a[perm] if perm is not None else a

        prefix = f"{module}.{cell}."
        if cell in ("dual_exp_iir_cell", "first_order_low_pass_cell"):
            for coef in ("alpha_1", "alpha_2", "beta_1"):
                table[prefix + coef] = (name, coef, features)
        elif cell == "output_filter":
            for theirs, attr in (("filter_decay_m", "decay_m"), ("filter_decay_s", "decay_s"), ("filter_v0", "v0")):
                table[f"output_filter.{theirs}"] = (name, attr, lambda a: a)
        else:
            inner = "weight." if cell == "neuron_cell" else "conv."
            table[prefix + inner + "weight"] = (name, "kernel", kernel)
            table[prefix + inner + "bias"] = (name, "bias", lambda a: a)
            for const in _UNIFORM_CONSTANTS:
                table[prefix + const] = (name, const, _uniform(prefix + const))
            table[prefix + "sigma"] = (name, "surrogate_width", lambda a: float(a))
    return table


def _uniform(key: str) -> Callable:
    def convert(a):
        a = np.asarray(a)
        if a.size and not np.all(a == a.flat[0]):
            raise ValueError(f"{key}: our layers keep this frozen constant as one scalar, but the reference "
                             "values differ between elements")
        return a.reshape(-1)[0]
    return convert


def convert_state_dict(model: SpikingNetwork, state_dict: Mapping[str, np.ndarray]) -> dict[tuple[str, str], object]:
    """Reference arrays -> {(our layer, attribute): value in our layout}. Unused keys (v_0) are skipped."""
    state_dict = strip_prefixes(state_dict)
    table = converters(model, state_dict.keys())
    out = {}
    for key, value in state_dict.items():
        if key.endswith(".v_0"):
            continue  # computed but never used by the reference (SPEC 6.2)
        if key not in table:
            raise ValueError(f"reference key {key!r} has no counterpart in the network")
        name, attr, convert = table[key]
        out[(name, attr)] = convert(np.asarray(value))
    return out


def load_state_dict(model: SpikingNetwork, state_dict: Mapping[str, np.ndarray] | str | Path) -> SpikingNetwork:
    """Copies a reference state_dict (mapping or file path) into `model` in place and returns it."""
    if not isinstance(state_dict, Mapping):
        state_dict = read_state_dict(state_dict)
    for (name, attr), value in convert_state_dict(model, state_dict).items():
        layer = getattr(model, name)
        current = getattr(layer, attr)
        if attr == "surrogate_width":
            setattr(layer, attr, value)
            continue
        if current is None:
            raise ValueError(f"reference has {name}.{attr} but our layer has none (check model.train_bias)")
        if tuple(current.shape) != tuple(np.shape(value)):
            raise ValueError(f"{name}.{attr}: reference value has shape {np.shape(value)} in our layout, "
                             f"the network expects {tuple(current.shape)}")
        current.set_value(jnp.asarray(value, current.dtype))
    return model

