"""Encodings of the reference: analog copy, Bernoulli (Poisson) rate coding, and event binning.

Our layout everywhere: a sample is [T, *S], frames (H, W, C) with H = y (row), W = x (column), C = polarity.
The reference stores events as (p, x, y, t); data/inspect.py converts with iirsnn_jax.layout.

Event binning (SPEC 2.4, 2.5, 4.2, 4.3), with t in microseconds and the first event at t = 0:
  nmnist_or:     bin = floor(floor(t / 1000) / (300 // T)) (10 ms for T = 30); OR within a bin; bins >= T
                 (after the first 300 ms) are dropped.
  gesture_or:    bin width w = floor((max t + 1) / T) us, bin = floor(t / w), OR, bins >= T dropped.
  gesture_count: t_ms = floor(t / 1000), w = floor((max t_ms + 1) / T) ms; per bin and (y, x, p) the number
                 of distinct 1 ms slots holding an event; `normalise_frames` then divides each frame by its
                 max ("max") or its sum ("avg").
The reference allocates T + 1 bins and would crash (index error) or divide by zero on recordings shorter than
about T time units; we clip the bin width to >= 1 and drop late bins, which equals the reference wherever the
reference runs. An empty frame normalises to zeros (the reference gives 0/0 = NaN, SPEC 6.11).
"""
from __future__ import annotations

import numpy as np

from iirsnn_jax.data import common


def copy_encode(x: np.ndarray, length: int) -> np.ndarray:
    """[B, *S] analog values -> [B, T, *S]: the same value at every step (SPEC 2.1)."""
    return np.ascontiguousarray(np.broadcast_to(x[:, None], (x.shape[0], length, *x.shape[1:])))


def poisson_encode(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """[*S] probabilities -> uint8 [T, *S]: spike where x > u, u ~ U[0, 1) fresh per element and step.

    As the reference (SPEC 2.3), 1.0 always spikes and 0.0 never does.
    """
    return (x[None] > rng.random((length, *x.shape))).astype(np.uint8)


def encode_intensities(x: np.ndarray, length: int, encoding: str, *, seed: int, split: str, epoch: int,
                       indices: np.ndarray) -> np.ndarray:
    """Intensities in [0, 1] of a batch [B, *S] -> [B, T, *S]: "copy" (float32 at every step) or "poisson"
    (uint8 spikes, sample i drawing from its own (seed, split, epoch, i) Generator)."""
    if encoding == "copy":
        return copy_encode(x, length)
    if not len(indices):
        return np.zeros((0, length, *x.shape[1:]), np.uint8)
    return np.stack([poisson_encode(xi, length, common.sample_rng(seed, split, epoch, i, "poisson"))
                     for xi, i in zip(x, indices)])


def _time_origin(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype=np.int64)
    return t - t.min()


def nmnist_or(x, y, p, t_us, length: int, sensor=(34, 34)) -> np.ndarray:
    """Events -> bool [T, H, W, 2]: 300 // T ms bins, OR, the first T bins (SPEC 4.2)."""
    bin_ms = 300 // length
    if bin_ms < 1:
        raise ValueError(f"N-MNIST binning uses 300 // T ms bins; T = {length} > 300 leaves none")
    b = (_time_origin(t_us) // 1000) // bin_ms
    keep = b < length
    frames = np.zeros((length, *sensor, 2), dtype=bool)
    frames[b[keep], np.asarray(y)[keep], np.asarray(x)[keep], np.asarray(p)[keep]] = True
    return frames


def gesture_or(x, y, p, t_us, length: int, sensor=(128, 128)) -> np.ndarray:
    """Events -> bool [T, H, W, 2]: T bins spanning the sample's own duration, OR (SPEC 2.5)."""
    t = _time_origin(t_us)
    width = max(1, (int(t.max()) + 1) // length)
    b = t // width
    keep = b < length
    frames = np.zeros((length, *sensor, 2), dtype=bool)
    frames[b[keep], np.asarray(y)[keep], np.asarray(x)[keep], np.asarray(p)[keep]] = True
    return frames


def gesture_count(x, y, p, t_us, length: int, sensor=(128, 128)) -> np.ndarray:
    """Events -> uint16 [T, H, W, 2]: per bin, the number of distinct active 1 ms slots (SPEC 2.5 max/avg)."""
    h, w = sensor
    t_ms = _time_origin(t_us) // 1000
    width = max(1, (int(t_ms.max()) + 1) // length)
    # One key per (ms, y, x, p): several events in the same 1 ms slot count once, as the reference's bool
    # 1 ms raster does before it sums each bin.
    key = ((t_ms * h + np.asarray(y, np.int64)) * w + np.asarray(x, np.int64)) * 2 + np.asarray(p, np.int64)
    key = np.unique(key)
    pixel = key % (h * w * 2)
    b = (key // (h * w * 2)) // width
    keep = b < length
    counts = np.bincount(b[keep] * (h * w * 2) + pixel[keep], minlength=length * h * w * 2)
    return counts.astype(np.uint16).reshape(length, h, w, 2)


def normalise_frames(counts: np.ndarray, mode: str) -> np.ndarray:
    """[..., T, H, W, C] counts -> float32, each frame divided by its max ("max") or sum ("avg").

    Sums are exact integers (computed in float64, then float32, as the reference's float32 sums are below
    2^24). Empty frames stay 0 instead of the reference's NaN.
    """
    counts = np.asarray(counts)
    if mode == "max":
        denom = counts.max(axis=(-3, -2, -1), keepdims=True)
    elif mode == "avg":
        denom = counts.sum(axis=(-3, -2, -1), keepdims=True, dtype=np.float64)
    else:
        raise ValueError(f"normalisation must be 'max' or 'avg', got {mode!r}")
    denom = denom.astype(np.float32)
    out = counts.astype(np.float32) / np.where(denom > 0, denom, np.float32(1))
    return out
