"""Spike function: Heaviside forward, surrogate derivative backward (`jax.custom_vjp`).

The forward pass is the reference's `max(0, sign(v - threshold))`: a spike iff `v > threshold`, strictly, so
`v == threshold` does not fire. The backward pass replaces the Dirac delta with a smooth bump centred at the
threshold. `gaussian` (the paper's and the reference's, width sigma = 0.4) is the default; the others are the
shapes SNN libraries commonly offer, for research comparisons. `heaviside` and `slope` are the two halves;
the spiking scans of neurons.py, whose backward pass is written by hand, call them directly.

| name | d spike / d v at x = v - threshold, width w |
|---|---|
| gaussian | exp(-x^2 / (2 w^2)) / (2.506628 w)   (the reference's truncated sqrt(2 pi)) |
| fast_sigmoid | 1 / (1 + |x| / w)^2             (SuperSpike, w = 1/slope) |
| atan | (1 / w) / (1 + (pi x / (2 w))^2) / 2    (arctan surrogate, alpha = 1/w) |
| triangle | max(0, 1 - |x| / w) / w              (piecewise linear) |
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp

# The reference writes sqrt(2 pi) as this literal; we keep it so gradients match to the last digit.
_SQRT_2PI_REFERENCE = 2.506628


def _gaussian(x, width):
    return jnp.exp(-(x * x) / (2.0 * width * width)) / (_SQRT_2PI_REFERENCE * width)


def _fast_sigmoid(x, width):
    return 1.0 / (1.0 + jnp.abs(x) / width) ** 2


def _atan(x, width):
    return (0.5 / width) / (1.0 + (math.pi * x / (2.0 * width)) ** 2)


def _triangle(x, width):
    return jnp.maximum(0.0, 1.0 - jnp.abs(x) / width) / width


SURROGATES: dict[str, Callable] = {
    "gaussian": _gaussian,
    "fast_sigmoid": _fast_sigmoid,
    "atan": _atan,
    "triangle": _triangle,
}


def heaviside(v, threshold: float):
    """The forward pass: 1 where v > threshold (strictly), else 0, in v's dtype."""
    return (v > threshold).astype(v.dtype)


def slope(v, threshold: float, name: str, width: float):
    """The backward pass: the surrogate derivative d spike / d v at v, in v's dtype."""
    return SURROGATES[name](v - threshold, width).astype(v.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _spike(v, threshold, name, width):
    return heaviside(v, threshold)


def _spike_fwd(v, threshold, name, width):
    return _spike(v, threshold, name, width), v


def _spike_bwd(threshold, name, width, v, cotangent):
    return (cotangent * slope(v, threshold, name, width),)


_spike.defvjp(_spike_fwd, _spike_bwd)


def spike(v: jax.Array, threshold: float = 1.0, surrogate: str = "gaussian", width: float = 0.4) -> jax.Array:
    """Heaviside spike `v > threshold` (same shape and dtype as `v`) with a surrogate gradient.

    Args:
      v: membrane potential, any shape.
      threshold: firing threshold (the reference hard-codes 1.0).
      surrogate: one of `SURROGATES`.
      width: the surrogate's width (sigma for `gaussian`).
    """
    if surrogate not in SURROGATES:
        raise ValueError(f"unknown surrogate {surrogate!r}; expected one of {sorted(SURROGATES)}")
    return _spike(v, float(threshold), surrogate, float(width))
