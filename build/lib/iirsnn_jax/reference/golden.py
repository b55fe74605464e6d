"""Our network against a reference golden file (`python -m iirsnn_jax.reference check FILE.npz`).

A golden file (format of shared/golden/README.md) holds an experiment name, reference-layout inputs (time
last), labels or a filtered target, the reference parameters (`param/NAME`), and what the reference computed
from them in float64: spikes of every layer, output spikes and counts, the loss and every gradient. We build
the experiment's network from the repository's experiment files, load the parameters, run forward and backward in float64 in
evaluation mode, and compare:

  spikes (every layer, the output) and spike counts: exactly;
  loss: relative error <= 1e-9;
  each gradient tensor and the filtered output: max |ours - reference| <= 1e-5 * max |reference|
  (the reference stored them as float32).

An input that is the same at every step (the analog MNIST cases) is checked twice: as the repeated array, and
as the HeldInput that train.py's "copy" encoding gives the network (held_input.py), its lines marked "held".
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from iirsnn_jax import experiments, layout, losses, models
from iirsnn_jax.held_input import HeldInput
from iirsnn_jax.reference import state_dict as reference

LOSS_RTOL = 1e-9
ARRAY_RTOL = 1e-5


@dataclass
class Comparison:
    name: str
    max_abs: float
    max_rel: float
    ok: bool

    def line(self) -> str:
        verdict = "OK" if self.ok else "MISMATCH"
        return f"{verdict:9s} {self.name:55s} max abs {self.max_abs:10.3e}  max rel {self.max_rel:10.3e}"


def _compare_exact(name, ours, theirs) -> Comparison:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        return Comparison(f"{name} (shape {ours.shape} vs {theirs.shape})", np.inf, np.inf, False)
    diff = np.abs(ours - theirs)
    rel = diff.max() / max(np.abs(theirs).max(), 1e-300) if diff.size else 0.0
    return Comparison(f"{name} ({int((diff > 0).sum())} of {diff.size} differ)", float(diff.max(initial=0)),
                      float(rel), bool((diff == 0).all()))


def _compare_scaled(name, ours, theirs, rtol=ARRAY_RTOL) -> Comparison:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        return Comparison(f"{name} (shape {ours.shape} vs {theirs.shape})", np.inf, np.inf, False)
    scale = np.abs(theirs).max(initial=0.0)
    max_abs = float(np.abs(ours - theirs).max(initial=0.0))
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf)
    return Comparison(name, max_abs, max_rel, max_rel <= rtol)


def _stage(key: str) -> int:
    return int(re.search(r"(\d+)$", key).group(1))


def check_file(path: str) -> list[Comparison]:
    """Runs the golden file at `path` through our network; returns every comparison made.

    float64 is switched on for this call only (`jax.enable_x64`): the caller's JAX is left as it was."""
    with jax.enable_x64(True):
        return _check_file(path)


def _check_file(path: str) -> list[Comparison]:
    with np.load(path) as data:
        golden = {k: data[k] for k in data.files}
    for key in ("experiment", "input"):
        if key not in golden:
            raise ValueError(f"{path}: golden file has no {key!r} key")
    experiment = str(golden["experiment"])
    config = experiments.load_config(experiment)
    config.model.dtype = config.model.param_dtype = "float64"
    model = models.build_model(config.model)
    order = model.reference_spatial_order
    reference.load_state_dict(model, {k: v for k, v in golden.items() if k.startswith("param/")})

    inputs = jnp.asarray(layout.from_reference_signal(golden["input"], order), jnp.float64)
    if "filtered_target" in golden:
        target = jnp.asarray(layout.from_reference_signal(golden["filtered_target"], order), jnp.float64)
        loss_of = lambda out: losses.filtered_mse(out.filtered, target)
    elif "labels" in golden:
        labels = jnp.asarray(golden["labels"])
        loss_of = lambda out: losses.spike_count_cross_entropy(out.spikes, labels)
    else:
        raise ValueError(f"{path}: golden file has neither 'labels' nor 'filtered_target'")

    results = _compare_run(path, golden, model, inputs, loss_of, order)
    if bool(jnp.all(inputs == inputs[:, :1])):
        held = _compare_run(path, golden, model, HeldInput(inputs[:, 0], inputs.shape[1]), loss_of, order)
        results += [Comparison("held: " + c.name, c.max_abs, c.max_rel, c.ok) for c in held]
    return results


def _compare_run(path: str, golden: dict, model, inputs, loss_of, order: str) -> list[Comparison]:
    """The comparisons of one forward and backward pass of `model` on `inputs` (golden: the file at `path`)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(params):
        out = nnx.merge(graphdef, params, rest)(inputs)  # no key: evaluation mode, dropout off
        return loss_of(out), out

    (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)

    results = []
    spike_keys = sorted((k for k in golden if k.startswith("layer_spikes/")), key=_stage)
    if len(spike_keys) != len(out.layer_spikes):
        raise ValueError(f"{path}: {len(spike_keys)} spiking layers in the file, {len(out.layer_spikes)} in ours")
    for key, (name, spikes) in zip(spike_keys, out.layer_spikes.items()):
        theirs = layout.from_reference_signal(golden[key], order)
        results.append(_compare_exact(f"spikes {name} vs {key}", spikes, theirs))
    if "output_spikes" in golden:
        results.append(_compare_exact("output_spikes", out.spikes, layout.from_reference_signal(golden["output_spikes"], order)))
    if "spike_counts" in golden:
        results.append(_compare_exact("spike_counts", losses.spike_counts(out.spikes), golden["spike_counts"]))
    if "filtered_output" in golden:
        results.append(_compare_scaled("filtered_output", out.filtered,
                                       layout.from_reference_signal(golden["filtered_output"], order)))
    theirs_loss = float(golden["loss"])
    loss_rel = abs(float(loss) - theirs_loss) / max(abs(theirs_loss), 1e-300)
    results.append(Comparison(f"loss (ours {float(loss):.12g}, reference {theirs_loss:.12g})",
                              abs(float(loss) - theirs_loss), loss_rel, loss_rel <= LOSS_RTOL))

    golden_grads = {k[len("grad/"):]: v for k, v in golden.items() if k.startswith("grad/")}
    converted = reference.convert_state_dict(model, golden_grads)
    our_grads = {tuple(str(p) for p in path): v for path, v in nnx.to_flat_state(grads)}
    for ref_name, ((layer, attr), theirs) in zip(golden_grads, converted.items()):
        ours = our_grads.pop((layer, attr), None)
        if ours is None:
            results.append(Comparison(f"grad {ref_name}: no trainable {layer}.{attr} in ours", np.inf, np.inf, False))
            continue
        results.append(_compare_scaled(f"grad {layer}.{attr} vs {ref_name}", ours[...], theirs))
    for layer, attr in our_grads:
        results.append(Comparison(f"grad {layer}.{attr}: trainable in ours, absent from the file", np.inf, np.inf, False))
    return results

