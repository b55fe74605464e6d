"""Two networks on the same inputs, spiking layer by spiking layer: how many spikes agree.

Layers are matched by position among the spiking layers (an export drops dropout, so names can be matched
that way even when a re-imported network's layer list differs in its dropouts).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import jax
import numpy as np
from flax import nnx

from iirsnn_jax.models import NetworkOutput, SpikingNetwork


@dataclass
class Agreement:
    """Per spiking layer (original name): (differing elements, all elements); the output filter's max
    absolute difference when both networks have one."""

    layers: dict[str, tuple[int, int]] = field(default_factory=dict)
    filtered_max_abs: float | None = None

    def add(self, other: "Agreement") -> None:
        for name, (d, n) in other.layers.items():
            d0, n0 = self.layers.get(name, (0, 0))
            self.layers[name] = (d0 + d, n0 + n)
        if other.filtered_max_abs is not None:
            self.filtered_max_abs = max(self.filtered_max_abs or 0.0, other.filtered_max_abs)

    @property
    def identical(self) -> bool:
        return all(d == 0 for d, _ in self.layers.values()) and not self.filtered_max_abs

    def lines(self) -> list[str]:
        out = [f"{name:16s} {n - d:>12d} of {n:>12d} spike slots agree ({100.0 * (n - d) / max(n, 1):.4f} %)"
               for name, (d, n) in self.layers.items()]
        if self.filtered_max_abs is not None:
            out.append(f"{'filtered output':16s} max |difference| {self.filtered_max_abs:.3g}")
        return out


def jitted_forward(model: SpikingNetwork):
    """inputs [B, T, *S] -> NetworkOutput as numpy (evaluation mode, zero initial state), compiled once."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, x):
        return nnx.merge(graphdef, state)(x)._replace(state=())

    return lambda x: jax.device_get(run(state, x))


def agreement(a: NetworkOutput, b: NetworkOutput, keep=None) -> Agreement:
    """Compares the spikes of every spiking layer of two outputs (rows where `keep` is True, all if None)."""
    if len(a.layer_spikes) != len(b.layer_spikes):
        raise ValueError(f"the networks have {len(a.layer_spikes)} and {len(b.layer_spikes)} spiking layers")
    rows = slice(None) if keep is None else np.asarray(keep, bool)
    result = Agreement()
    for (name, x), y in zip(a.layer_spikes.items(), b.layer_spikes.values()):
        x, y = np.asarray(x)[rows], np.asarray(y)[rows]
        if x.shape != y.shape:
            raise ValueError(f"layer {name}: shapes {x.shape} and {y.shape} differ")
        result.layers[name] = (int(np.sum(x != y)), int(x.size))
    if a.filtered is not None and b.filtered is not None:
        result.filtered_max_abs = float(np.max(np.abs(np.asarray(a.filtered)[rows] - np.asarray(b.filtered)[rows]),
                                               initial=0.0))
    return result
