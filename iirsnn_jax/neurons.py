"""Pure threshold-and-reset dynamics of the paper's spiking neuron over a whole sequence, time-major.

Given the input current I [T, B, *F] (already W x + b for every step), each element runs

    v[t] = I[t] - r[t-1]                      (+ decay_v * v[t-1] when the membrane filter is on)
    s[t] = H(v[t] - threshold)                (strict >, surrogate gradient, see surrogate.py)
    r[t] = reset_decay * r[t-1] + reset_v * s[t]

The reset r is a decaying trace subtracted from the potential, not a reset to zero, and gradients flow
through it (BPTT over the reset path, as the reference). This is the only truly sequential part of a layer.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from iirsnn_jax import surrogate


class NeuronState(NamedTuple):
    """Membrane potential v[t-1] and reset trace r[t-1], each [B, *F]."""

    v: jax.Array
    r: jax.Array


def spiking_neuron(
    current,
    state: NeuronState | None = None,
    *,
    reset_decay,
    reset_v,
    decay_v,
    membrane_filter: bool = False,
    threshold: float = 1.0,
    surrogate_name: str = "gaussian",
    surrogate_width: float = 0.4,
):
    """Runs the neuron over all T steps.

    Args:
      current: [T, B, *F] input current.
      state: initial (v, r); zeros when None.
      reset_decay, reset_v, decay_v: scalars or arrays broadcastable to [B, *F].
      membrane_filter: add decay_v * v[t-1] to the potential (off in every reference experiment).
    Returns:
      (spikes [T, B, *F] of 0/1 in current's dtype, final NeuronState).
    """
    if state is None:
        zeros = jnp.zeros(current.shape[1:], current.dtype)
        state = NeuronState(zeros, zeros)

    def step(carry, current_t):
        v_prev, r_prev = carry
        if membrane_filter:
            v = decay_v * v_prev + current_t - r_prev
        else:
            v = current_t - r_prev
        s = surrogate.spike(v, threshold, surrogate_name, surrogate_width)
        r = reset_decay * r_prev + reset_v * s
        return NeuronState(v, r), s

    final, spikes = jax.lax.scan(step, state, current)
    return spikes, final
