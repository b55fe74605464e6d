"""Associative memory (SPEC 2.6, 3): ten binary spike patterns, their delayed and filtered targets, and the
reference's random corruptions.

Patterns: [10, N=300, T=300] {0, 1}; axis 1 = input neuron (image row), axis 2 = time step (image column).
The reference rasterised ten small drawings (lines, triangles, the letters a b c d, a cross); we draw shapes
of the same kinds with code (no image files) and apply the reference's sparse mask: at time step 5k only
neurons n = k (mod 3) may spike, and only for 20 <= 5k <= 290. Our shapes are not the reference's pixels
(its .npy is not part of this project), but they have its structure: about 1000-1800 spikes a pattern
(density ~1.4 %), a handful of spikes per neuron.
Targets: target[:, :, 4:] = pattern[:, :, :-4] (a 4-step delay); filtered_target = the peak-normalised
dual-exponential filter (tau 8/2) of the target, computed in float64 and cast to float32 (SPEC 3.2).
Samples (index i of a split of data.pattern_samples = 1000): pattern k = i mod 10 (the label), corrupted as
`corrupt` (SPEC 3.3) with a Generator keyed by (seed, split, epoch, i).
Batches, time second: input uint8 [B, T, 300], target and filtered_target float32 [B, T, 300], label [B].
"""
from __future__ import annotations

import functools
import math

import numpy as np

from iirsnn_jax.data import common

SIZE = 300
DELAY = 4
NAMES = ("parallel", "intersection", "b", "triangle", "d", "a", "triangle2", "c", "mult", "triangle3")


def _segment(rr, cc, p0, p1, width):
    (r0, c0), (r1, c1) = p0, p1
    dr, dc = r1 - r0, c1 - c0
    s = np.clip(((rr - r0) * dr + (cc - c0) * dc) / (dr * dr + dc * dc), 0.0, 1.0)
    return np.hypot(rr - (r0 + s * dr), cc - (c0 + s * dc)) <= width / 2


def _ring(rr, cc, centre, radius, width, gap=None):
    """A circle of `radius`; `gap` = (from, to) angles in degrees (0 = later in time, 90 = lower neuron)
    left open, e.g. the opening of a c."""
    d = np.hypot(rr - centre[0], cc - centre[1])
    on = np.abs(d - radius) <= width / 2
    if gap is not None:
        angle = np.degrees(np.arctan2(rr - centre[0], cc - centre[1]))
        on &= ~((angle > gap[0]) & (angle < gap[1]))
    return on


def _triangle(rr, cc, a, b, c, width):
    return _segment(rr, cc, a, b, width) | _segment(rr, cc, b, c, width) | _segment(rr, cc, c, a, width)


def draw_shapes(width: float = 28.0) -> np.ndarray:
    """bool [10, 300, 300] drawings (row = neuron, column = time step), in the order of NAMES."""
    rr, cc = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    seg = functools.partial(_segment, rr, cc, width=width)
    ring = functools.partial(_ring, rr, cc, width=width)
    shapes = [
        seg((40, 40), (200, 270)) | seg((110, 30), (270, 260)),  # parallel
        seg((40, 40), (260, 260)) | seg((150, 45), (150, 255)),  # intersection
        seg((30, 70), (270, 70)) | ring((195, 145), 70),  # b
        _triangle(rr, cc, (40, 150), (260, 40), (260, 260), width),  # triangle
        ring((195, 150), 70) | seg((30, 225), (270, 225)),  # d
        ring((175, 140), 80) | seg((100, 225), (265, 225)),  # a
        _triangle(rr, cc, (40, 40), (40, 260), (260, 150), width),  # triangle2
        ring((150, 155), 110, gap=(-40, 40)),  # c
        seg((40, 40), (260, 260)) | seg((40, 260), (260, 40)),  # mult
        _triangle(rr, cc, (40, 40), (260, 40), (260, 260), width),  # triangle3
    ]
    return np.stack(shapes)


def sparse_mask() -> np.ndarray:
    """bool [300, 300]: time step 5k may carry spikes of neurons n = k (mod 3), for 20 <= 5k <= 290."""
    mask = np.zeros((SIZE, SIZE), bool)
    for k in range(4, 59):
        mask[k % 3::3, 5 * k] = True
    return mask


@functools.lru_cache(maxsize=1)
def make_patterns() -> np.ndarray:
    """float32 {0, 1} [10, N=300, T=300]: the ten patterns (deterministic, no randomness)."""
    return (draw_shapes() & sparse_mask()).astype(np.float32)


def delay(patterns: np.ndarray, steps: int = DELAY) -> np.ndarray:
    """[..., T] -> the same delayed by `steps` along the last (time) axis, zeros first."""
    out = np.zeros_like(patterns)
    out[..., steps:] = patterns[..., :-steps]
    return out


def dual_exp_filter(x: np.ndarray, tau_m: float = 8.0, tau_s: float = 2.0) -> np.ndarray:
    """[..., T] spikes -> float32 v0 * (m - s), m[t] = e^(-1/tau_m) m[t-1] + x[t], s likewise with tau_s,
    zero initial state, computed in float64 as the reference's utilities.filter_spike (SPEC 1.6, 3.2)."""
    eta = tau_m / tau_s
    v0 = eta ** (eta / (eta - 1.0)) / (eta - 1.0)  # filters.dual_exp_peak_normaliser
    dm, ds = math.exp(-1.0 / tau_m), math.exp(-1.0 / tau_s)
    x = np.asarray(x, np.float64)
    m, s = np.zeros(x.shape[:-1]), np.zeros(x.shape[:-1])
    out = np.empty_like(x)
    for t in range(x.shape[-1]):
        m = dm * m + x[..., t]
        s = ds * s + x[..., t]
        out[..., t] = v0 * (m - s)
    return out.astype(np.float32)


def jitter(pattern: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move every spike by round(N(0, 1)) steps, clipped to [0, T-1]; spikes that meet merge."""
    n, t = np.nonzero(pattern)
    t = np.clip(t + np.round(rng.normal(size=t.shape)).astype(np.int64), 0, pattern.shape[1] - 1)
    out = np.zeros_like(pattern)
    out[n, t] = 1
    return out


def corrupt(pattern: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[N, T] {0, 1} -> a corrupted copy, as PatternDataset.__getitem__ (SPEC 3.3)."""
    x = pattern.copy()
    if rng.random() > 0.6:  # the reference's `modify_input_prob = 0.6` test: modifies with probability 0.4
        if rng.random() < 0.7:
            x = jitter(x, rng)
        choice = rng.integers(2)  # drawn whether or not a removal follows, as the reference
        if rng.random() < 0.5:
            if choice == 0:  # a 40 x 40 block of (neuron, time)
                r, c = rng.integers(0, 260, size=2)
                x[r:r + 40, c:c + 40] = 0
            else:  # 40 whole spike trains
                r = rng.integers(0, 260)
                x[r:r + 40, :] = 0
    noise = rng.random(x.shape) > 0.995
    x[noise] = 1
    return x


class PatternSource:
    """One split of the associative-memory data; see the module docstring."""

    name = "patterns"

    def __init__(self, config, split: str):
        common.check_split(split)
        if int(config.data.length) != SIZE:
            raise ValueError(f"the associative-memory patterns have T = {SIZE} steps, data.length is "
                             f"{config.data.length}")
        self.split, self.seed = split, int(config.seed)
        self.num_examples = int(config.data.pattern_samples)
        self.patterns = make_patterns()
        target = delay(self.patterns)
        tau_m, tau_s = float(config.model.output_tau_m), float(config.model.output_tau_s)
        # Stored time second, [10, T, N], so batches need only a gather.
        self.target = np.ascontiguousarray(np.swapaxes(target, 1, 2))
        self.filtered_target = np.ascontiguousarray(np.swapaxes(dual_exp_filter(target, tau_m, tau_s), 1, 2))

    def get_batch(self, indices: np.ndarray, epoch: int = 0) -> dict[str, np.ndarray]:
        indices = np.asarray(indices, np.int64)
        k = indices % len(self.patterns)
        inputs = np.zeros((len(indices), SIZE, SIZE), np.uint8)
        for b, (i, ki) in enumerate(zip(indices, k)):
            x = corrupt(self.patterns[ki], common.sample_rng(self.seed, self.split, epoch, i, "corrupt"))
            inputs[b] = x.T  # [T, N]
        return {"input": inputs, "label": k.astype(np.int32), "target": self.target[k],
                "filtered_target": self.filtered_target[k]}


def source(config, split: str) -> PatternSource:
    return PatternSource(config, split)
