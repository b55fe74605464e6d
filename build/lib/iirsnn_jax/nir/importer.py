"""`from_nir(graph)`: a NIR graph whose nodes map onto our layers, as a SpikingNetwork.

The graph must be a chain from its Input to its Output made of these patterns (export.py writes them):

  LI, or two LIs of one layer in series      -> L (unit gain, one LI) or F (dual-exponential; one LI with a
                                                gain, or two: alpha_1 = p1 + p2, alpha_2 = -p1 p2)
  LI -> LI <-> LI (a feedback loop)          -> F in feedback form (sections.feedback_form)
  Affine | Linear | Conv2d -> [LI membrane] -> Threshold, optionally with a recurrent LI from the Threshold
                                             -> N or C (the LI is the decaying reset trace)
  SumPool2d -> Threshold(theta in [0, 1)) on spikes -> P (a max of binary spikes)
  Flatten                                    -> flat
  two parallel LIs (gains v0 and -v0) summed by a Scale of ones -> O

LIs of one layer are recognised by their node metadata "layer" (written by export.py); without it,
consecutive LIs pair up two by two. Both give the same dynamics; the grouping only decides how the float
operations are ordered. Any other node type raises NIRImportError naming it and listing the supported types.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import nir
import numpy as np

from iirsnn_jax import config as config_lib, models
from iirsnn_jax.nir import sections

SUPPORTED = ("Input", "Output", "Affine", "Linear", "Conv2d", "LI", "Threshold", "SumPool2d", "Flatten", "Scale")


class NIRImportError(ValueError):
    """The graph has a node or a structure with no counterpart in our layers."""


def _our_shape(shape) -> tuple:
    """NIR (C, H, W) -> our (H, W, C)."""
    shape = tuple(int(d) for d in shape)
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape


def _pair(value, what: str, key: str) -> int:
    values = np.atleast_1d(np.asarray(value)).astype(int)
    if not np.all(values == values[0]):
        raise NIRImportError(f"node {key!r}: {what} {values.tolist()} differs between height and width; our layers "
                             "are square")
    return int(values[0])


def _uniform(array, what: str, key: str) -> float:
    array = np.asarray(array, np.float64)
    if array.size and not np.all(array == array.flat[0]):
        raise NIRImportError(f"node {key!r}: {what} differs between elements; our layers hold one value per layer")
    return float(array.flat[0])


class _Reader:
    def __init__(self, graph: nir.NIRGraph, dt: float):
        self.graph, self.dt = graph, float(dt)
        for key, node in graph.nodes.items():
            kind = type(node).__name__
            if kind not in SUPPORTED:
                raise NIRImportError(f"node {key!r} is a {kind}: no layer of ours maps onto it; supported node "
                                     f"types: {', '.join(SUPPORTED)}")
        self.succ = {key: [] for key in graph.nodes}
        self.pred = {key: [] for key in graph.nodes}
        for a, b in graph.edges:
            self.succ[a].append(b)
            self.pred[b].append(a)
        inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
        outputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Output)]
        if len(inputs) != 1 or len(outputs) != 1:
            raise NIRImportError(f"the graph needs exactly one Input and one Output node, has {inputs} and {outputs}")
        self.input_key, self.output_key = inputs[0], outputs[0]
        self.tokens: list[str] = []
        self.values: list[dict] = []  # per token: {attribute: value in our layout}
        self.shape = _our_shape(graph.nodes[self.input_key].input_type["input"])
        self.perm = None  # NIR flat order -> ours, set by a Flatten of an image
        self.spikes = False  # whether the current signal is binary spikes
        self.consumed: set[str] = set()  # nodes inside a pattern (reset traces, feedback loops)

    def node(self, key):
        return self.graph.nodes[key]

    def only(self, keys, key, what):
        if len(keys) != 1:
            raise NIRImportError(f"node {key!r}: expected one {what}, found {keys}")
        return keys[0]

    def features(self, array):
        """A per-element array in NIR layout -> ours."""
        array = np.asarray(array)
        if array.ndim == 3:
            return array.transpose(1, 2, 0)
        return array[self.perm] if self.perm is not None else array

    def section(self, key):
        node = self.node(key)
        if np.any(np.asarray(node.v_leak) != 0):
            raise NIRImportError(f"node {key!r}: LI with v_leak != 0 has no counterpart in our filters")
        pole, gain = sections.li_to_section(node, self.dt)
        return self.features(pole), self.features(gain)

    def emit(self, token, values, spikes):
        self.tokens.append(token)
        self.values.append(values)
        self.spikes = spikes

    # -- patterns ------------------------------------------------------------------------------------------
    def loop_after(self, key):
        """(u, w) when LI `key` feeds the loop of a feedback-form filter: key -> u <-> w, all LIs."""
        nxt = self.succ[key]
        if len(nxt) != 1 or not isinstance(self.node(nxt[0]), nir.LI) or len(self.pred[nxt[0]]) != 2:
            return None
        u = nxt[0]
        w = [k for k in self.pred[u] if k != key]
        if isinstance(self.node(w[0]), nir.LI) and self.pred[w[0]] == [u] and self.succ[w[0]] == [u]:
            return u, w[0]
        return None

    def feedback_filter(self, key):
        """pre -> u <-> w (sections.feedback_form) -> F; returns u."""
        u, w = self.loop_after(key)
        (q, g_pre), (p, g_u), (q_w, k) = self.section(key), self.section(u), self.section(w)
        if not np.array_equal(q, q_w):
            raise NIRImportError(f"nodes {key!r}, {w!r}: the pre-filter and the feedback LI of a second-order "
                                 "section must have the same time constants")
        a1, a2, b1 = sections.dual_exp_from_feedback(p, q, k, g_pre, g_u)
        self.emit("F", {"alpha_1": a1, "alpha_2": a2, "beta_1": b1}, False)
        self.consumed.add(w)
        self.shape = p.shape
        return u

    def filters(self, key):
        """A run of LI nodes in series (each one input, one output) -> F / L tokens; returns the run's last key."""
        run = [key]
        while True:
            nxt = self.succ[run[-1]]
            if (len(nxt) == 1 and isinstance(self.node(nxt[0]), nir.LI) and len(self.pred[nxt[0]]) == 1
                    and not self.loop_after(nxt[0])):
                run.append(nxt[0])
            else:
                break
        groups, hints = [], [self.node(k).metadata.get("layer") if self.node(k).metadata else None for k in run]
        for k, hint in zip(run, hints):
            last = groups[-1] if groups else None
            same = last is not None and len(last) == 1 and (hint == last[0][1] if hint or last[0][1] else True)
            if same:
                last.append((k, hint))
            else:
                groups.append([(k, hint)])
        for group in groups:
            (p1, g1), *rest = [self.section(k) for k, _ in group]
            if rest:
                a1, a2, b1 = sections.dual_exp_from_sections(p1, g1, *rest[0])
                self.emit("F", {"alpha_1": a1, "alpha_2": a2, "beta_1": b1}, False)
            elif np.all(g1 == 1.0):
                self.emit("L", {"alpha_1": p1}, False)
            else:
                self.emit("F", {"alpha_1": p1, "alpha_2": np.zeros_like(p1), "beta_1": g1}, False)
            self.shape = p1.shape
        return run[-1]

    def spiking(self, key):
        """Affine/Linear/Conv2d -> [LI membrane] -> Threshold (+ recurrent reset LI) -> N or C."""
        node = self.node(key)
        values, membrane = {}, None
        if isinstance(node, nir.Conv2d):
            if int(node.groups) != 1 or np.any(np.asarray(node.dilation) != 1):
                raise NIRImportError(f"node {key!r}: Conv2d with groups or dilation other than 1")
            if isinstance(node.padding, str):
                raise NIRImportError(f"node {key!r}: Conv2d padding {node.padding!r}; give it as integers")
            k = _pair(node.weight.shape[2:], "kernel size", key)
            s, p = _pair(node.stride, "stride", key), _pair(node.padding, "padding", key)
            c_out = node.weight.shape[0]
            values["kernel"] = np.asarray(node.weight).transpose(2, 3, 1, 0)  # OIHW -> HWIO
            values["bias"] = np.asarray(node.bias)
            h, w = (self.shape[0] + 2 * p - k) // s + 1, (self.shape[1] + 2 * p - k) // s + 1
            token, out_shape = f"C({c_out},{k},{s},{p})", (h, w, c_out)
        else:
            if len(self.shape) != 1:
                raise NIRImportError(f"node {key!r}: {type(node).__name__} on a signal of shape {self.shape}; "
                                     "add a Flatten before it")
            kernel = np.asarray(node.weight).T
            if self.perm is not None:
                kernel = kernel[self.perm]
            values["kernel"] = kernel
            values["bias"] = np.asarray(node.bias) if isinstance(node, nir.Affine) else None
            token, out_shape = f"N({kernel.shape[1]})", (kernel.shape[1],)
        self.perm = None
        nxt = self.only(self.succ[key], key, "successor (a Threshold or a membrane LI)")
        if isinstance(self.node(nxt), nir.LI):
            membrane, nxt = nxt, self.only(self.succ[nxt], nxt, "successor (the Threshold)")
        if not isinstance(self.node(nxt), nir.Threshold):
            raise NIRImportError(f"node {key!r} ({type(node).__name__}) must feed a Threshold (directly or through "
                                 f"one LI, the membrane); it feeds {nxt!r} ({type(self.node(nxt)).__name__})")
        spike, target = nxt, membrane or nxt
        trace = [k for k in self.succ[spike] if isinstance(self.node(k), nir.LI) and self.succ[k] == [target]]
        self.consumed.update(trace)
        values["threshold"] = _uniform(self.node(spike).threshold, "the threshold", spike)
        values["membrane_filter"] = membrane is not None
        values["reset_decay"], values["reset_v"] = np.float32(0.0), np.float32(0.0)
        if trace:
            decay, gain = sections.li_to_section(self.node(trace[0]), self.dt)
            values["reset_decay"] = np.float32(_uniform(decay, "the reset decay", trace[0]))
            values["reset_v"] = np.float32(-_uniform(gain, "the reset gain", trace[0]))
        if membrane is not None:
            decay, gain = sections.li_to_section(self.node(membrane), self.dt)
            if _uniform(gain, "the membrane input gain", membrane) != 1.0:
                raise NIRImportError(f"node {membrane!r}: a membrane LI needs unit input gain (r = tau/dt)")
            values["decay_v"] = np.float32(_uniform(decay, "the membrane decay", membrane))
        extra = [k for k in self.pred[target] if k not in (*trace, key)]
        if extra:
            raise NIRImportError(f"node {target!r} has inputs {extra} besides its synapse and reset trace")
        self.shape = out_shape
        self.emit(token, values, True)
        return spike

    def pool(self, key):
        node = self.node(key)
        nxt = self.only(self.succ[key], key, "successor (a Threshold)")
        spike = self.node(nxt)
        if not isinstance(spike, nir.Threshold) or not self.spikes:
            raise NIRImportError(f"node {key!r}: only a SumPool2d of spikes followed by a Threshold in [0, 1) maps "
                                 "onto our max-pool")
        theta = _uniform(spike.threshold, "the threshold", nxt)
        if not 0.0 <= theta < 1.0:
            raise NIRImportError(f"node {nxt!r}: threshold {theta} after a SumPool2d must be in [0, 1) to be a max")
        k, s = _pair(node.kernel_size, "kernel size", key), _pair(node.stride, "stride", key)
        p = _pair(node.padding, "padding", key)
        h, w, c = self.shape
        self.shape = ((h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1, c)
        self.emit(f"P({k},{s},{p})", {}, True)
        return nxt

    def flatten(self, key):
        node = self.node(key)
        start, end = int(node.start_dim), int(node.end_dim)
        if not (start == 0 and end in (-1, len(self.shape) - 1)):
            raise NIRImportError(f"node {key!r}: Flatten(start_dim={start}, end_dim={end}); only a flatten of all "
                                 "axes (start_dim 0, end_dim -1: NIR shapes have no batch axis) maps onto ours")
        if len(self.shape) == 3:
            h, w, c = self.shape
            self.perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
            self.emit("flat", {}, self.spikes)
        self.shape = (math.prod(self.shape),)
        return key

    def output_filter(self, branches, source):
        m_key, s_key = branches
        sums = {self.only(self.succ[k], k, "successor") for k in branches}
        if not all(isinstance(self.node(k), nir.LI) for k in branches) or len(sums) != 1:
            raise NIRImportError(f"node {source!r} fans out to {branches}; the only fan-out we map is the output "
                                 "filter: two LIs summed by one node")
        total = sums.pop()
        if isinstance(self.node(total), nir.Scale) and np.any(np.asarray(self.node(total).scale) != 1):
            raise NIRImportError(f"node {total!r}: the Scale that sums the output filter must be all ones")
        (pm, gm), (ps, gs) = self.section(m_key), self.section(s_key)
        if gm.flat[0] < 0:
            (pm, gm), (ps, gs) = (ps, gs), (pm, gm)
        v0 = _uniform(gm, "the output filter gain", m_key)
        if _uniform(gs, "the output filter gain", s_key) != -v0:
            raise NIRImportError(f"nodes {m_key!r}, {s_key!r}: an output filter needs gains v0 and -v0")
        self.emit("O", {"decay_m": np.float32(_uniform(pm, "decay", m_key)),
                        "decay_s": np.float32(_uniform(ps, "decay", s_key)), "v0": np.float32(v0)}, False)
        return total

    def read(self):
        tail, forward = self.input_key, self.succ[self.input_key]
        while True:
            if forward == [self.output_key]:
                break
            if len(forward) == 2:
                tail = self.output_filter(forward, tail)
                if tail == self.output_key:
                    break
                forward = self.succ[tail]
                continue
            key = self.only(forward, tail, "successor")
            node = self.node(key)
            if isinstance(node, nir.LI):
                tail = self.feedback_filter(key) if self.loop_after(key) else self.filters(key)
            elif isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)):
                tail = self.spiking(key)
            elif isinstance(node, nir.SumPool2d):
                tail = self.pool(key)
            elif isinstance(node, nir.Flatten):
                tail = self.flatten(key)
            else:
                raise NIRImportError(f"node {key!r} ({type(node).__name__}) is not where our layers can have it: "
                                     "Threshold only after a synapse or a SumPool2d, Scale only to sum an output "
                                     "filter, Input/Output only at the ends")
            forward = [k for k in self.succ[tail] if k not in self.consumed]
        if not any(t[0] in "NC" for t in self.tokens):
            raise NIRImportError("the graph has no spiking layer (Affine, Linear or Conv2d followed by a Threshold)")


def from_nir(graph: nir.NIRGraph, *, dt: float = 1.0) -> models.SpikingNetwork:
    """nir.NIRGraph -> SpikingNetwork (float32, evaluation mode), one time step = `dt` time units.

    Inputs of the returned network are ours: [B, T, N] or [B, T, H, W, C] where the graph's Input is (C, H, W).
    """
    reader = _Reader(graph, dt)
    reader.read()
    cfg = config_lib.default_config().model
    cfg.layers = " ".join(reader.tokens)
    cfg.input_shape = _our_shape(graph.nodes[reader.input_key].input_type["input"])
    cfg.train_bias = any(v.get("bias") is not None for v in reader.values if "kernel" in v)
    model = models.build_model(cfg)
    for name, values in zip(model.layer_names, reader.values):
        layer = getattr(model, name)
        for attr, value in values.items():
            if attr in ("threshold", "membrane_filter"):
                setattr(layer, attr, value)
                continue
            current = getattr(layer, attr, None)
            if attr == "bias" and current is not None and value is None:
                value = np.zeros(current.shape)  # a Linear in a network whose other layers have biases
            if current is None or value is None:
                continue
            if tuple(current.shape) != tuple(np.shape(value)):
                raise NIRImportError(f"{name}.{attr}: the graph gives shape {np.shape(value)}, the layer needs "
                                     f"{tuple(current.shape)}")
            current.set_value(jnp.asarray(np.asarray(value, np.float64).astype(np.float32)))
    return model
