"""Pure IIR filters over a whole sequence, elementwise, time-major.

Every function takes `x` of shape [T, B, *F] (T steps first, then the batch, then the per-sample feature
shape F) and coefficients that broadcast against [B, *F] (one per element of F in the networks), and returns
the filtered sequence of the same shape with the final state. States are NamedTuples of [B, *F] arrays; a
`None` state means zeros, the reference's initial condition.

The recurrences are linear in `x` and independent of any spikes, so a layer filters its whole input
sequence in one `lax.scan` before the weights are applied (see layers.py).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


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


def dual_exp_iir(x, alpha_1, alpha_2, beta_1, state: DualExpState | None = None):
    """y[t] = alpha_1 * y[t-1] + alpha_2 * y[t-2] + beta_1 * x[t].

    Args:
      x: [T, B, *F] input sequence.
      alpha_1, alpha_2, beta_1: coefficients broadcastable to [B, *F] (one per element of F).
      state: initial (y[-1], y[-2]); zeros when None.
    Returns:
      (y [T, B, *F], final DualExpState).
    """
    x = _float_input(x, alpha_1, alpha_2, beta_1)
    if state is None:
        state = DualExpState(*(jnp.zeros(x.shape[1:], x.dtype) for _ in range(2)))
    y1 = jnp.broadcast_to(state.y1, x.shape[1:]).astype(x.dtype)
    y2 = jnp.broadcast_to(state.y2, x.shape[1:]).astype(x.dtype)
    y, final_1, final_2 = _dual_exp_scan(x, alpha_1, alpha_2, beta_1, y1, y2)
    return y, DualExpState(final_1, final_2)


# The recurrence has a hand-written backward pass. Autodiff of the scan would reduce the coefficient
# gradients over the batch inside every reverse step; the adjoint below accumulates them elementwise in its
# carry and reduces once, which makes the filter's backward about 1.3x faster on CPU (bench/experiments).
# Adjoint: lam[t] = ct[t] + alpha_1 lam[t+1] + alpha_2 lam[t+2]; d/d alpha_1 = sum_t lam[t] y[t-1],
# d/d alpha_2 = sum_t lam[t] y[t-2], d/d beta_1 = sum_t lam[t] x[t], d/d x[t] = beta_1 lam[t].
@jax.custom_vjp
def _dual_exp_scan(x, alpha_1, alpha_2, beta_1, y1, y2):
    def step(carry, x_t):
        p1, p2 = carry
        y = alpha_1 * p1 + alpha_2 * p2 + beta_1 * x_t
        return (y, p1), y

    (final_1, final_2), y = jax.lax.scan(step, (y1, y2), x)
    return y, final_1, final_2


def _dual_exp_scan_fwd(x, alpha_1, alpha_2, beta_1, y1, y2):
    y, final_1, final_2 = _dual_exp_scan(x, alpha_1, alpha_2, beta_1, y1, y2)
    return (y, final_1, final_2), (x, y, alpha_1, alpha_2, beta_1, y1, y2)


def _dual_exp_scan_bwd(residuals, cotangents):
    x, y, alpha_1, alpha_2, beta_1, y1, y2 = residuals
    ct_y, ct_final_1, ct_final_2 = cotangents
    length = x.shape[0]
    zero = jnp.zeros(x.shape[1:], y.dtype)

    def step(carry, inputs):
        lam_1, lam_2, g_1, g_2, g_b = carry  # lam[t+1], lam[t+2], gradient accumulators [B, *F]
        t, ct_t, x_t, y_t = inputs
        # The final state (y[T-1], y[T-2]) is an output too; its cotangents join here rather than through a
        # scatter into ct_y, which would copy the whole [T, B, *F] sequence twice.
        ct_t = ct_t + jnp.where(t == length - 1, ct_final_1, 0) + jnp.where(t == length - 2, ct_final_2, 0)
        lam = ct_t + alpha_1 * lam_1 + alpha_2 * lam_2
        return (lam, lam_1, g_1 + lam_1 * y_t, g_2 + lam_2 * y_t, g_b + lam * x_t), beta_1 * lam

    (lam_0, lam_1, g_1, g_2, g_b), ct_x = jax.lax.scan(step, (zero,) * 5, (jnp.arange(length), ct_y, x, y),
                                                       reverse=True)
    g_1 = g_1 + lam_0 * y1  # the terms of the initial state
    g_2 = g_2 + lam_0 * y2 + lam_1 * y1
    ct_y1 = alpha_1 * lam_0 + alpha_2 * lam_1
    ct_y2 = alpha_2 * lam_0
    return (ct_x.astype(x.dtype), _sum_to_shape(g_1, alpha_1), _sum_to_shape(g_2, alpha_2),
            _sum_to_shape(g_b, beta_1), ct_y1, ct_y2)


_dual_exp_scan.defvjp(_dual_exp_scan_fwd, _dual_exp_scan_bwd)


def _sum_to_shape(accumulated, coefficient):
    """Sums a [B, *F] gradient down to the shape of a coefficient that was broadcast against it."""
    shape = jnp.shape(coefficient)
    lead = accumulated.ndim - len(shape)
    if lead:
        accumulated = accumulated.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and accumulated.shape[i] != 1)
    if axes:
        accumulated = accumulated.sum(axis=axes, keepdims=True)
    return accumulated.astype(jnp.result_type(coefficient))


def first_order_low_pass(x, alpha_1, state: LowPassState | None = None):
    """y[t] = alpha_1 * y[t-1] + x[t] (no input gain, as the reference).

    Args:
      x: [T, B, *F]; alpha_1 broadcastable to [B, *F]; state: y[-1], zeros when None.
    Returns:
      (y [T, B, *F], final LowPassState).
    """
    x = _float_input(x, alpha_1)
    if state is None:
        state = LowPassState(jnp.zeros(x.shape[1:], x.dtype))

    def step(carry, x_t):
        y = alpha_1 * carry.y1 + x_t
        return LowPassState(y), y

    final, y = jax.lax.scan(step, state, x)
    return y, final


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
