"""Inputs of each reference experiment in the reference layout (time last), drawn from a numpy Generator."""
from __future__ import annotations

import numpy as np

DEFAULT_LENGTH = {
    "associative_memory": 24,
    "snn_conv_1_gesture": 7,
}


def default_length(experiment: str) -> int:
    if experiment in DEFAULT_LENGTH:
        return DEFAULT_LENGTH[experiment]
    if experiment.startswith("snn_conv"):
        return 6
    return 8


def make_input(experiment: str, rng: np.random.Generator, batch: int = 2, length: int | None = None):
    """A float32 input in the reference layout for `experiment`."""
    T = length or default_length(experiment)
    if experiment == "associative_memory":
        return (rng.random((batch, 300, T)) < 0.05).astype(np.float32)
    if experiment.startswith(("snn_mlp", "snn_conv_1_mnist")):
        pixels = rng.random((batch, 784)) * (rng.random((batch, 784)) < 0.6)  # MNIST-like: many zeros
        if experiment.endswith("poisson_input"):
            return (pixels[:, :, None] > rng.random((batch, 784, T))).astype(np.float32)
        return np.repeat(pixels[:, :, None], T, axis=-1).astype(np.float32)
    if experiment == "snn_conv_1_nmnist":
        return (rng.random((batch, 2, 34, 34, T)) < 0.05).astype(np.float32)
    if experiment in ("snn_conv_1_gesture", "snn_conv_1_gesture_30"):
        return (rng.random((batch, 2, 128, 128, T)) < 0.05).astype(np.float32)
    if experiment in ("snn_conv_1_gesture_max", "snn_conv_1_gesture_avg"):
        # per bin: number of active 1 ms slots (of 20) per pixel/polarity, then per-frame normalisation
        counts = rng.binomial(20, 0.01, size=(batch, 2, 128, 128, T)).astype(np.float64)
        counts[:, 0, 64, 64, :] += 1.0  # no empty frame (the reference would divide 0 by 0)
        norm = counts.max(axis=(1, 2, 3), keepdims=True) if experiment.endswith("max") else \
            counts.sum(axis=(1, 2, 3), keepdims=True)
        return (counts / norm).astype(np.float32)
    raise ValueError(f"unknown experiment {experiment!r}")
