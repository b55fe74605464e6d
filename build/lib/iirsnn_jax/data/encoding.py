"""The reference's binning of camera events into frames, on the host (once per file, then cached).

Our layout everywhere: a sample is [T, *S], frames (H, W, C) with H = y (row), W = x (column), C = polarity.
The reference stores events as (p, x, y, t); data/inspect.py converts with iirsnn_jax.layout. The copy and
Poisson encodings of images, and the normalisation of counted frames, run on the device
(device_encoding.py).

Event binning (SPEC 2.4, 2.5, 4.2, 4.3), with t in microseconds and the first event at t = 0:
  nmnist_or:     bin = floor(floor(t / 1000) / (300 // T)) (10 ms for T = 30); OR within a bin; bins >= T
                 (after the first 300 ms) are dropped.
  gesture_or:    bin width w = floor((max t + 1) / T) us, bin = floor(t / w), OR, bins >= T dropped.
  gesture_count: t_ms = floor(t / 1000), w = floor((max t_ms + 1) / T) ms; per bin and (y, x, p) the number
                 of distinct 1 ms slots holding an event; device_encoding.normalise_frames then divides each
                 frame by its max ("max") or its sum ("avg").
The reference allocates T + 1 bins and would crash (index error) or divide by zero on recordings shorter than
about T time units; we clip the bin width to >= 1 and drop late bins, which equals the reference wherever the
reference runs.
"""
from __future__ import annotations

import numpy as np


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
