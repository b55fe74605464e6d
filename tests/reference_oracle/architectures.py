"""The reference networks as stage lists (SPEC section 2), written from SPEC.md, not from the library.

A network is a list of stages in forward order, signals time-last ([B, N, T] or [B, C, A1, A2, T]):
  ("reshape", shape)                  [B, 784, T] -> [B, *shape, T] row-major (conv nets on MNIST)
  ("iir", module, shape)              dual-exponential IIR filter, per-element coefficients of `shape`
  ("lowpass", module, shape)          first-order low-pass filter
  ("dense", module, n_in, n_out)      fully connected spiking layer
  ("conv", module, c_in, c_out, k, s, p, (h_in, w_in))  spiking conv layer
  ("pool", k, s, p)                   max-pool of each time slice
  ("flatten",)                        [B, C, H, W, T] -> [B, C*H*W, T]
  ("output", module)                  the associative memory's dual-exponential output filter
"""
from __future__ import annotations

TAUS = {"default": (4.0, 1.0), "associative": (8.0, 2.0)}


def _mlp(filter_kind):
    f = "iir" if filter_kind == "iir" else "lowpass"
    return [(f, "axon1", (784,)), ("dense", "snn1", 784, 500),
            (f, "axon2", (500,)), ("dense", "snn2", 500, 500),
            (f, "axon3", (500,)), ("dense", "snn3", 500, 10)]


def _conv_mnist_like(c_in, size, pool1_pad, n_hidden, reshape):
    s = size
    s4 = (s + 2 * pool1_pad - 2) // 2 + 1
    s6 = s4 // 2
    stages = [("reshape", (1, 28, 28))] if reshape else []
    stages += [
        ("iir", "axon1", (c_in, s, s)), ("conv", "conv1", c_in, 32, 3, 1, 1, (s, s)),
        ("iir", "axon2", (32, s, s)), ("conv", "conv2", 32, 32, 3, 1, 1, (s, s)),
        ("iir", "axon3", (32, s, s)), ("conv", "conv3", 32, 64, 3, 1, 1, (s, s)),
        ("iir", "axon4", (64, s, s)), ("pool", 2, 2, pool1_pad),
        ("iir", "axon5", (64, s4, s4)), ("conv", "conv5", 64, 64, 3, 1, 1, (s4, s4)),
        ("iir", "axon6", (64, s4, s4)), ("pool", 2, 2, 0), ("flatten",),
        ("iir", "axon7", (64 * s6 * s6,)), ("dense", "snn7", 64 * s6 * s6, n_hidden),
        ("iir", "axon8", (n_hidden,)), ("dense", "snn8", n_hidden, 10),
    ]
    return stages


def _gesture():
    return [
        ("iir", "axon1", (2, 128, 128)), ("conv", "conv1", 2, 64, 7, 3, 1, (128, 128)),
        ("iir", "axon2", (64, 42, 42)), ("conv", "conv2", 64, 32, 3, 3, 0, (42, 42)),
        ("iir", "axon3", (32, 14, 14)), ("conv", "conv3", 32, 32, 3, 1, 1, (14, 14)), ("flatten",),
        ("iir", "axon4", (6272,)), ("dense", "snn4", 6272, 256),
        ("iir", "axon5", (256,)), ("dense", "snn5", 256, 11),
    ]


def _associative():
    return [("iir", "axon1", (300,)), ("dense", "dense1", 300, 500),
            ("iir", "axon2", (500,)), ("dense", "dense2", 500, 200),
            ("iir", "axon3", (200,)), ("dense", "dense3", 200, 500),
            ("iir", "axon4", (500,)), ("dense", "dense4", 500, 300),
            ("output", "output_filter")]


def architecture(experiment: str) -> list[tuple]:
    """The stage list of a reference experiment (SPEC 2.1-2.6)."""
    if experiment == "associative_memory":
        return _associative()
    if experiment.startswith("snn_mlp_1"):
        return _mlp("iir")
    if experiment.startswith("snn_mlp_2"):
        return _mlp("lowpass")
    if experiment.startswith("snn_conv_1_mnist"):
        return _conv_mnist_like(1, 28, 0, 512, reshape=True)
    if experiment == "snn_conv_1_nmnist":
        return _conv_mnist_like(2, 34, 1, 256, reshape=False)
    if experiment.startswith("snn_conv_1_gesture"):
        return _gesture()
    raise ValueError(f"unknown experiment {experiment!r}")


def taus(experiment: str) -> tuple[float, float]:
    return TAUS["associative" if experiment == "associative_memory" else "default"]


def is_classifier(experiment: str) -> bool:
    return experiment != "associative_memory"
