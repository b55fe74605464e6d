"""Pure IIR filters over a whole sequence, elementwise, time-major.

Every function takes `x` of shape [T, B, *F] (T steps first, then the batch, then the per-sample feature
shape F) and coefficients that broadcast against [B, *F] (one per element of F in the networks), and returns
the filtered sequence of the same shape with the final state. States are NamedTuples of [B, *F] arrays; a
`None` state means zeros, the reference's initial condition.

The recurrences are linear in `x` and independent of any spikes, so a layer filters its whole input
sequence at once before the weights are applied (see layers.py). The trained filters run on recurrence.py's
solvers (sequential or associative scan, hand-written backward); inside a network, a filter that follows a
spiking layer runs in that layer's scan instead (neurons.py).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from iirsnn_jax import recurrence


class DualExpState(NamedTuple):
    """State of the dual-exponential IIR synapse: y[t-1] and y[t-2], each [B, *F]."""

    y1: jax.Array
    y2: jax.Array


class LowPassState(NamedTuple):
    """State of the first-order low-pass filter: y[t-1], [B, *F]."""

    y1: jax.Array


class OutputFilterState(NamedTuple):
    """State of the normalised dual-exponential output filter: the two exponential traces, each [B, *F]."""

    m: jax.Array
    s: jax.Array


def dual_exp_coefficients(tau_m: float, tau_s: float) -> tuple[float, float, float]:
    """(alpha_1, alpha_2, beta_1) of the IIR synapse whose impulse response is dm^(k+1) - ds^(k+1)."""
    dm, ds = math.exp(-1.0 / tau_m), math.exp(-1.0 / tau_s)
    return dm + ds, -math.exp(-(tau_m + tau_s) / (tau_m * tau_s)), dm - ds


def dual_exp_peak_normaliser(tau_m: float, tau_s: float) -> float:
    """v0 = eta^(eta/(eta-1)) / (eta-1), eta = tau_m/tau_s: scales v0*(e^-t/tau_m - e^-t/tau_s) to peak 1."""
    eta = tau_m / tau_s
    return eta ** (eta / (eta - 1.0)) / (eta - 1.0)


def _float_input(x, *coefficients):
    """Event inputs (bool, integer) become the coefficients' float dtype, as in the reference (SPEC 1.1)."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating):
        return x
    return x.astype(jnp.result_type(*coefficients, jnp.float32))


def dual_exp_iir(x, alpha_1, alpha_2, beta_1, state: DualExpState | None = None, *, scan: str = "sequential",
                 time_axis: int = 0, cpu_kernel: str = "native"):
    """y[t] = alpha_1 * y[t-1] + alpha_2 * y[t-2] + beta_1 * x[t].

    Args:
      x: [T, B, *F] input sequence ([B, T, *F] with time_axis=1).
      alpha_1, alpha_2, beta_1: coefficients broadcastable to [B, *F] (one per element of F).
      state: initial (y[-1], y[-2]); zeros when None.
      scan: "sequential" or "associative" (recurrence.py; equal to float rounding).
      cpu_kernel: "native" runs the sequential solver on CPU in the compiled kernel (native/), "xla" as a
        lax.scan (the same values).
    Returns:
      (y [T, B, *F], final DualExpState).
    """
    x = _float_input(x, alpha_1, alpha_2, beta_1)
    y, final = recurrence.solve(x, (alpha_1, alpha_2, beta_1), _initial(state, x, time_axis, 2), method=scan,
                                time_axis=time_axis, cpu_kernel=cpu_kernel)
    return y, DualExpState(*final)


def first_order_low_pass(x, alpha_1, state: LowPassState | None = None, *, scan: str = "sequential",
                         time_axis: int = 0, cpu_kernel: str = "native"):
    """y[t] = alpha_1 * y[t-1] + x[t] (no input gain, as the reference).

    Args:
      x: [T, B, *F] ([B, T, *F] with time_axis=1); alpha_1 broadcastable to [B, *F]; state: y[-1], zeros when
      None; scan: "sequential" or "associative"; cpu_kernel: "native" or "xla", as dual_exp_iir.
    Returns:
      (y [T, B, *F], final LowPassState).
    """
    x = _float_input(x, alpha_1)
    y, final = recurrence.solve(x, (alpha_1,), _initial(state, x, time_axis, 1), method=scan, time_axis=time_axis,
                                cpu_kernel=cpu_kernel)
    return y, LowPassState(*final)


def _initial(state, x, time_axis: int, count: int) -> tuple:
    """The state as a tuple of [B, *F] arrays in x's dtype; zeros when None."""
    per_step = x.shape[:time_axis] + x.shape[time_axis + 1:]
    if state is None:
        return tuple(jnp.zeros(per_step, x.dtype) for _ in range(count))
    return tuple(jnp.broadcast_to(s, per_step).astype(x.dtype) for s in state)


def dual_exp_output_filter(x, decay_m, decay_s, v0, state: OutputFilterState | None = None):
    """out[t] = v0 * (m[t] - s[t]), m[t] = decay_m * m[t-1] + x[t], s[t] = decay_s * s[t-1] + x[t].

    The peak-normalised dual-exponential kernel of the associative-memory readout (frozen constants). x[t]
    cancels in m - s at step t, so it shows from t+1 on.

    Args:
      x: [T, B, *F]; decay_m, decay_s, v0: scalars or broadcastable to [B, *F]; state: zeros when None.
    Returns:
      (out [T, B, *F], final OutputFilterState).
    """
    x = _float_input(x, decay_m, decay_s, v0)
    if state is None:
        zeros = jnp.zeros(x.shape[1:], x.dtype)
        state = OutputFilterState(zeros, zeros)

    def step(carry, x_t):
        m = decay_m * carry.m + x_t
        s = decay_s * carry.s + x_t
        return OutputFilterState(m, s), v0 * (m - s)

    final, out = jax.lax.scan(step, state, x)
    return out, final
