"""`to_nir(model)`: one of our networks as a graph of NIR primitives (mapping explained in docs/nir.md).

Layer by layer (NIR arrays are channels-first (C, H, W); per-element arrays after a flatten follow NIR's
channel-major flatten order, so dense kernels and coefficients there are permuted to match):

  F  axonK          -> LI axonK_pole1 (pole p1, gain beta_1) -> LI axonK_pole2 (pole p2, gain 1); when any
                       element's poles are complex: LI axonK_pre (pole q, gain beta_1) -> LI axonK (pole p)
                       <-> LI axonK_feedback (pole q, gain k), a loop (sections.feedback_form)
  L  axonK          -> LI axonK (pole alpha_1, gain 1)
  N / C  denseK     -> Affine | Linear | Conv2d denseK -> Threshold denseK_spike, with the reset trace
                       LI denseK_reset (pole reset_decay, gain -reset_v) fed by the spikes and feeding back
                       into the Threshold (a recurrent edge: the trace of step t-1 meets the current of t);
                       with the membrane filter an LI denseK_membrane (pole decay_v) sits before the Threshold
                       and receives the trace instead
  P  poolK          -> SumPool2d poolK -> Threshold poolK_spike (0.5): the max of binary spikes
  flat              -> Flatten (start_dim 0: NIR shapes have no batch axis)
  D                 -> nothing (identity at inference)
  O  output_filter  -> LI output_filter_m (decay_m, gain v0) and LI output_filter_s (decay_s, gain -v0) in
                       parallel, summed by Scale output_filter (ones)

No NIR form exists for a max-pool of a real-valued signal (our conv networks pool the filtered PSP, "F P"),
and `to_nir` refuses it by default (NIRExportError naming the layer); with approximate=True it moves the pool
before the filters between it and the spiking layer (max of spikes, then those filters with their
coefficients averaged over each window) and lists the approximation in graph.metadata["approximations"].
"""
from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np

from iirsnn_jax import layers
from iirsnn_jax.models import SpikingNetwork
from iirsnn_jax.nir import sections
from iirsnn_jax.nir.sections import NIRExportError

DISCRETISATION = ("forward Euler, v[t] = (1 - dt/tau) v[t-1] + (dt/tau) (v_leak + r I[t]); the edge closing a cycle "
                  "carries step t-1")
_FILTERS = (layers.DualExpFilter, layers.LowPassFilter)


@dataclass
class _Item:
    name: str
    layer: object
    pooled: tuple | None = None  # (kernel, stride, padding): a filter moved after a pool (approximation)


def _numpy(variable) -> np.ndarray:
    return np.asarray(variable[...])


def _nir_shape(shape) -> tuple:
    """Our (H, W, C) -> NIR (C, H, W); vectors unchanged."""
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)


def _window_mean(array, kernel, stride, padding):
    """Mean over the valid elements of each pooling window: [H, W, C] -> [H', W', C]."""
    h, w, c = array.shape
    padded = np.pad(array.astype(np.float64), ((padding, padding), (padding, padding), (0, 0)),
                    constant_values=np.nan)
    h_out, w_out = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
    out = np.empty((h_out, w_out, c))
    for i in range(h_out):
        for j in range(w_out):
            window = padded[i * stride:i * stride + kernel, j * stride:j * stride + kernel]
            out[i, j] = np.nanmean(window.reshape(-1, c), axis=0)
    return out


def _plan(model: SpikingNetwork, approximate: bool, notes: list) -> list[_Item]:
    """The layers in export order; a max-pool of filtered spikes moves before those filters (approximation)."""
    out = []
    for name, layer in zip(model.layer_names, model.layers):
        if not isinstance(layer, layers.MaxPool):
            out.append(_Item(name, layer))
            continue
        start = len(out)
        while start > 0 and isinstance(out[start - 1].layer, (*_FILTERS, layers.Dropout)):
            start -= 1
        source = out[start - 1] if start > 0 else None
        spikes = source is not None and (isinstance(source.layer, layers.SpikingConv)
                                         or isinstance(source.layer, layers.MaxPool))
        if not spikes:
            raise NIRExportError(f"{name}: max-pooling of {'the network input' if source is None else source.name} "
                                 "(a real-valued signal) has no NIR form")
        moved = [item for item in out[start:] if isinstance(item.layer, _FILTERS)]
        if moved and not approximate:
            raise NIRExportError(
                f"{name}: max-pools the output of filter {', '.join(i.name for i in moved)} (real-valued PSPs, "
                f"{int(np.prod(layer.output_shape()))} outputs); NIR has no max-pool node and a max of real values "
                "has no exact form in NIR primitives. Export with approximate=True (--approximate) to pool the "
                "spikes before the filter instead, and measure the error with the check command")
        if any(item.pooled for item in moved):
            raise NIRExportError(f"{name}: a second max-pool over filters already moved after a pool is not supported")
        args = (layer.kernel_size, layer.stride, layer.padding)
        out[start:] = [_Item(name, layer)] + [_Item(i.name, i.layer, args if isinstance(i.layer, _FILTERS) else None)
                                              for i in out[start:]]
        if moved:
            notes.append(f"{name}: max-pool of the PSP of {', '.join(i.name for i in moved)} exported as a max-pool "
                         f"of the spikes of {source.name} followed by those filters, their coefficients averaged "
                         "over each pooling window")
    return out


class _Builder:
    def __init__(self, model: SpikingNetwork, dt: float, approximate: bool):
        self.dt, self.approximate = float(dt), approximate
        self.notes: list[str] = []
        self.nodes = {"input": nir.Input(input_type={"input": np.array(_nir_shape(model.input_shape))})}
        self.edges: list[tuple[str, str]] = []
        self.tail, self.shape, self.perm = "input", tuple(model.input_shape), None
        self.model = model

    def add(self, key, node, inputs=None):
        self.nodes[key] = node
        for source in ([self.tail] if inputs is None else inputs):
            self.edges.append((source, key))
        return key

    def features(self, array):
        """A per-element array of our layout -> NIR layout."""
        array = np.asarray(array)
        if array.ndim == 3:
            return array.transpose(2, 0, 1)
        return array[self.perm] if self.perm is not None else array

    def section_node(self, name, key, pole, gain, inputs=None):
        if np.any(pole == 1.0):
            raise NIRExportError(f"{name}: {int(np.sum(pole == 1.0))} of {pole.size} elements have a pole at exactly "
                                 "1 (a pure integrator), which has no LI form")
        node = sections.section_to_li(self.features(pole), self.features(gain), self.dt)
        node.metadata = {"layer": name}
        return self.add(key, node, inputs)

    def filter(self, item: _Item):
        layer, name = item.layer, item.name
        pool = (lambda a: _window_mean(a, *item.pooled)) if item.pooled else (lambda a: a)
        if isinstance(layer, layers.LowPassFilter):
            alpha = pool(_numpy(layer.alpha_1).astype(np.float64))
            self.tail = self.section_node(name, name, alpha, np.ones(alpha.shape))
            restored = lambda: {"alpha_1": sections.li_to_section(self.nodes[name], self.dt)[0]}
        else:
            a1, a2, b1 = (pool(_numpy(getattr(layer, k)).astype(np.float64)) for k in ("alpha_1", "alpha_2", "beta_1"))
            p1, p2, complex_mask = sections.real_poles(a1, a2)
            if not complex_mask.any() and not np.any(p1 == 1.0) and not np.any(p2 == 1.0):
                first = self.tail = self.section_node(name, f"{name}_pole1", p1, b1)
                self.tail = self.section_node(name, f"{name}_pole2", p2, np.ones(p2.shape))

                def restored():
                    (q1, g1), (q2, g2) = (sections.li_to_section(self.nodes[k], self.dt) for k in (first, self.tail))
                    return dict(zip(("alpha_1", "alpha_2", "beta_1"), sections.dual_exp_from_sections(q1, g1, q2, g2)))
            else:
                p, q, k = sections.feedback_form(a1, a2)
                pre = self.tail = self.section_node(name, f"{name}_pre", q, b1)
                self.tail = self.section_node(name, name, p, np.ones(p.shape))
                loop = self.section_node(name, f"{name}_feedback", q, k, inputs=[name])
                self.edges.append((loop, name))

                def restored():
                    (p_, g_u), (q_, g_pre), (_, k_) = (sections.li_to_section(self.nodes[k], self.dt)
                                                       for k in (name, pre, loop))
                    return dict(zip(("alpha_1", "alpha_2", "beta_1"),
                                    sections.dual_exp_from_feedback(p_, q_, k_, g_pre, g_u)))
        if not item.pooled:  # the importer's coefficients equal ours bit for bit
            original = {k: self.features(_numpy(getattr(layer, k))) for k in restored()}
            sections.check_exact(name, original, restored())
        self.shape = pool(_numpy(layer.alpha_1)).shape

    def spiking(self, name, layer):
        if isinstance(layer, layers.SpikingDense):
            kernel = _numpy(layer.kernel)
            if self.perm is not None:
                kernel = kernel[self.perm]
            weight = np.ascontiguousarray(kernel.T)
            node = (nir.Affine(weight=weight, bias=_numpy(layer.bias)) if layer.bias is not None
                    else nir.Linear(weight=weight))
            self.perm = None  # the dense layer consumed the flattened order
        else:
            weight = np.ascontiguousarray(_numpy(layer.kernel).transpose(3, 2, 0, 1))  # HWIO -> OIHW
            bias = _numpy(layer.bias) if layer.bias is not None else np.zeros(weight.shape[0], weight.dtype)
            node = nir.Conv2d(input_shape=tuple(self.shape[:2]), weight=weight, stride=layer.stride,
                              padding=layer.padding, dilation=1, groups=1, bias=bias)
        node.metadata = {"layer": name}
        synapse = self.add(name, node)
        shape = _nir_shape(layer.output_shape())
        uniform = lambda value: np.full(shape, float(np.asarray(value[...])), np.float64)
        spike_inputs = [synapse]
        membrane = None
        if layer.membrane_filter:
            li = sections.section_to_li(uniform(layer.decay_v), np.ones(shape), self.dt)
            li.metadata = {"layer": name}
            membrane = self.add(f"{name}_membrane", li, inputs=[synapse])
            spike_inputs = [membrane]
        spike = self.add(f"{name}_spike", nir.Threshold(threshold=np.full(shape, layer.threshold, np.float64),
                                                        metadata={"layer": name}), inputs=spike_inputs)
        reset_v = float(np.asarray(layer.reset_v[...]))
        if reset_v != 0.0:
            li = sections.section_to_li(uniform(layer.reset_decay), np.full(shape, -reset_v), self.dt)
            li.metadata = {"layer": name}
            self.add(f"{name}_reset", li, inputs=[spike])
            self.edges.append((f"{name}_reset", membrane or spike))
            pole, gain = sections.li_to_section(li, self.dt)
            sections.check_exact(name, {"reset_decay": _numpy(layer.reset_decay), "reset_v": np.float32(-reset_v)},
                                 {"reset_decay": pole.flat[0], "reset_v": gain.flat[0]})
        self.tail, self.shape = spike, tuple(layer.output_shape())

    def pool(self, name, layer):
        size = lambda v: np.array([v, v])
        self.tail = self.add(name, nir.SumPool2d(kernel_size=size(layer.kernel_size), stride=size(layer.stride),
                                     padding=size(layer.padding), metadata={"layer": name}))
        self.shape = tuple(layer.output_shape())
        self.tail = self.add(f"{name}_spike", nir.Threshold(threshold=np.full(_nir_shape(self.shape), 0.5),
                                                            metadata={"layer": name}))

    def flatten(self, name):
        if len(self.shape) == 3:
            h, w, c = self.shape
            self.tail = self.add(name, nir.Flatten(input_type={"input": np.array([c, h, w])}, start_dim=0, end_dim=-1,
                                                   metadata={"layer": name}))
            self.perm = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
            self.shape = (h * w * c,)

    def output_filter(self, name, layer):
        shape = _nir_shape(self.shape)
        v0 = float(np.asarray(layer.v0[...]))
        branches = []
        for suffix, decay, gain in (("m", layer.decay_m, v0), ("s", layer.decay_s, -v0)):
            pole = np.full(shape, float(np.asarray(decay[...])))
            li = sections.section_to_li(pole, np.full(shape, gain), self.dt)
            li.metadata = {"layer": name}
            branches.append(self.add(f"{name}_{suffix}", li))
            restored_pole, restored_gain = sections.li_to_section(li, self.dt)
            sections.check_exact(name, {f"decay_{suffix}": _numpy(decay), "v0": np.float32(gain)},
                                 {f"decay_{suffix}": restored_pole.flat[0], "v0": restored_gain.flat[0]})
        self.tail = self.add(name, nir.Scale(scale=np.ones(shape), metadata={"layer": name}), inputs=branches)

    def build(self) -> nir.NIRGraph:
        for item in _plan(self.model, self.approximate, self.notes):
            layer = item.layer
            if isinstance(layer, _FILTERS):
                self.filter(item)
            elif isinstance(layer, (layers.SpikingDense, layers.SpikingConv)):
                self.spiking(item.name, layer)
            elif isinstance(layer, layers.MaxPool):
                self.pool(item.name, layer)
            elif isinstance(layer, layers.Flatten):
                self.flatten(item.name)
            elif isinstance(layer, layers.OutputFilter):
                self.output_filter(item.name, layer)
            elif not isinstance(layer, layers.Dropout):
                raise NIRExportError(f"{item.name}: no NIR mapping for {type(layer).__name__}")
        self.add("output", nir.Output(output_type={"output": np.array(_nir_shape(self.shape))}))
        metadata = {"source": "iirsnn_jax", "dt": self.dt, "discretisation": DISCRETISATION,
                    "layers": " ".join(self.model.layer_names)}
        if self.notes:
            metadata["approximations"] = "\n".join(self.notes)
        return nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=metadata)


def to_nir(model: SpikingNetwork, *, dt: float = 1.0, approximate: bool = False) -> nir.NIRGraph:
    """Our network -> nir.NIRGraph of NIR primitives, one time step = `dt` time units.

    Input and output nodes carry per-sample shapes in NIR layout: (N,) or (C, H, W). Raises NIRExportError
    for layers without an exact NIR form unless `approximate`; the approximations made are then listed in
    graph.metadata["approximations"] (one line each).
    """
    return _Builder(model, dt, approximate).build()
