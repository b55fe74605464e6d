"""Conversion between our signal layout and the reference's, done once at the boundary.

Ours (data pipelines and networks): batch-major, time second, features last:
  [B, T, N] for vectors, [B, T, H, W, C] for frames, with H = image row (y) and W = column (x).
The reference: time LAST, channels first:
  [B, N, T] for vectors, [B, C, A1, A2, T] for frames, where (A1, A2) = (H, W) for MNIST ("hw") but
  (x, y) = (W, H) for the event cameras, which store (polarity, x, y) ("xy").
"""
from __future__ import annotations

import numpy as np

SPATIAL_ORDERS = ("hw", "xy")


def _swap_time_and_features(x, spatial_order: str, expected: str):
    """Transposes x between the two layouts.  The permutation swaps time with the features (axes 1 and 2 of
    a vector signal; axes 1 and 4 of frames, whose spatial axes also swap for "xy"), so it is its own
    inverse and serves both directions."""
    if spatial_order not in SPATIAL_ORDERS:
        raise ValueError(f"reference_spatial_order must be one of {SPATIAL_ORDERS}, got {spatial_order!r}")
    if x.ndim == 3:
        return np.transpose(x, (0, 2, 1))
    if x.ndim != 5:
        raise ValueError(f"expected {expected}, got shape {x.shape}")
    spatial = (2, 3) if spatial_order == "hw" else (3, 2)
    return np.transpose(x, (0, 4, *spatial, 1))


def to_reference_signal(x, spatial_order: str = "hw"):
    """Ours [B, T, N] or [B, T, H, W, C] -> reference [B, N, T] or [B, C, A1, A2, T]."""
    return _swap_time_and_features(x, spatial_order, "[B, T, N] or [B, T, H, W, C]")


def from_reference_signal(x, spatial_order: str = "hw"):
    """Reference [B, N, T] or [B, C, A1, A2, T] -> ours [B, T, N] or [B, T, H, W, C]."""
    return _swap_time_and_features(x, spatial_order, "[B, N, T] or [B, C, A1, A2, T]")
