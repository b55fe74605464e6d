"""Cells and layers of the reference (SPEC 1.2-1.9), each layer with its own Python loop over time.

Each layer is a Python loop over time that calls a per-step "cell" (as the reference's *_layer / *_cell
classes do).  Cells are jitted one step at a time, so a 300-step loop costs a few compilations, not 300.
The loop reads x[..., t] and writes the output's [..., t] with a traced t, for the same reason.  Signals
are time-last: [B, N, T] or [B, C, A1, A2, T].
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

SQRT_2PI = 2.506628  # the constant the reference writes for sqrt(2 pi)


@jax.jit
def time_slice(x, t):
    """x[..., t]: the input of step t (the reference splits the last axis into T slices)."""
    return jax.lax.dynamic_index_in_dim(x, t, axis=-1, keepdims=False)


@jax.jit
def _write_time_slice(outputs, y, t):
    return jax.lax.dynamic_update_index_in_dim(outputs, y, t, axis=-1)


def _time_loop(cell, x, state, *args):
    """for t in 0..T-1: y[t], state = cell(x[t], state, *args); returns the y stacked on the last axis."""
    n_steps = x.shape[-1]
    # Zero states of the per-sample shape broadcast against the batch on the first step; broadcasting them
    # once before the loop is the same arithmetic and saves compiling every cell for a batch-less state.
    state = jax.tree.map(lambda z: jnp.broadcast_to(z, x.shape[:1] + z.shape), state)
    outputs = None
    for t in range(n_steps):
        y, state = cell(time_slice(x, t), state, *args)
        if outputs is None:
            outputs = jnp.zeros(y.shape + (n_steps,), y.dtype)
        outputs = _write_time_slice(outputs, y, t)
    return outputs


@jax.custom_vjp
def spike_fn(v, sigma):
    """max(0, sign(v - 1)): strictly greater than the hard-coded threshold 1."""
    return jnp.maximum(jnp.zeros_like(v), jnp.sign(v - 1.0))


def _spike_fwd(v, sigma):
    return spike_fn(v, sigma), (v, sigma)


def _spike_bwd(residual, grad_output):
    v, sigma = residual
    surrogate = jnp.exp(-(1.0 - v) ** 2 / (2.0 * sigma ** 2)) / (SQRT_2PI * sigma)
    return grad_output * surrogate, jnp.zeros_like(sigma)  # no gradient for sigma


spike_fn.defvjp(_spike_fwd, _spike_bwd)


@jax.jit
def dual_exp_iir_cell(x_t, state, alpha_1, alpha_2, beta_1):
    """y[t] = alpha_1 y[t-1] + alpha_2 y[t-2] + beta_1 x[t]; new state (y[t], y[t-1])."""
    y_1, y_2 = state
    y = alpha_1 * y_1 + alpha_2 * y_2 + beta_1 * x_t
    return y, (y, y_1)


def dual_exp_iir_layer(x, alpha_1, alpha_2, beta_1):
    """States (y[t-1], y[t-2]) start as zeros of the per-sample shape."""
    zeros = jnp.zeros(alpha_1.shape, x.dtype)
    return _time_loop(dual_exp_iir_cell, x, (zeros, zeros), alpha_1, alpha_2, beta_1)


@jax.jit
def first_order_low_pass_cell(x_t, y_1, alpha_1):
    """y[t] = alpha_1 y[t-1] + x[t]."""
    y = alpha_1 * y_1 + x_t
    return y, y


def first_order_low_pass_layer(x, alpha_1):
    return _time_loop(first_order_low_pass_cell, x, jnp.zeros(alpha_1.shape, x.dtype), alpha_1)


def _neuron_update(current, state, reset_decay, reset_v, decay_v, sigma, membrane_filter):
    """The v / s / r step of SPEC 1.7; returns (s[t], (v[t], r[t]))."""
    v, r = state
    if membrane_filter:
        v = decay_v * v + current - r
    else:
        v = current - r
    s = spike_fn(v, sigma)
    r = reset_decay * r + reset_v * s
    return s, (v, r)


@functools.partial(jax.jit, static_argnames=("membrane_filter",))
def neuron_cell(x_t, state, weight, bias, reset_decay, reset_v, decay_v, sigma, membrane_filter=False):
    """I[t] = x[t] W^T + b (PyTorch Linear, W [out, in]), then the neuron step."""
    current = x_t @ weight.T + bias
    return _neuron_update(current, state, reset_decay, reset_v, decay_v, sigma, membrane_filter)


def neuron_layer(x, weight, bias, reset_decay, reset_v, decay_v, sigma, membrane_filter=False):
    """x [B, in, T] -> spikes [B, out, T]; states (v, r) start as zeros of shape (out,)."""
    zeros = jnp.zeros(reset_decay.shape, x.dtype)
    return _time_loop(functools.partial(neuron_cell, membrane_filter=membrane_filter), x, (zeros, zeros),
                      weight, bias, reset_decay, reset_v, decay_v, sigma)


def conv2d(x_t, weight, bias, stride, padding):
    """PyTorch Conv2d of one time slice [B, C, A1, A2] with weight [O, I, k, k]."""
    out = jax.lax.conv_general_dilated(x_t, weight, window_strides=(stride, stride),
                                       padding=((padding, padding), (padding, padding)),
                                       dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                       precision=jax.lax.Precision.HIGHEST)
    return out + bias[None, :, None, None]


@functools.partial(jax.jit, static_argnames=("stride", "padding", "membrane_filter"))
def conv2d_cell(x_t, state, weight, bias, reset_decay, reset_v, decay_v, sigma, stride, padding,
                membrane_filter=False):
    current = conv2d(x_t, weight, bias, stride, padding)
    return _neuron_update(current, state, reset_decay, reset_v, decay_v, sigma, membrane_filter)


def conv2d_layer(x, weight, bias, stride, padding, reset_decay, reset_v, decay_v, sigma, membrane_filter=False):
    """x [B, C, A1, A2, T] -> spikes [B, O, A1', A2', T]; states zeros of shape (O, A1', A2')."""
    zeros = jnp.zeros(reset_decay.shape, x.dtype)
    cell = functools.partial(conv2d_cell, stride=stride, padding=padding, membrane_filter=membrane_filter)
    return _time_loop(cell, x, (zeros, zeros), weight, bias, reset_decay, reset_v, decay_v, sigma)


@functools.partial(jax.jit, static_argnames=("kernel", "stride", "padding"))
def maxpooling2d_cell(x_t, state, kernel, stride, padding):
    """MaxPool2d of one slice [B, C, A1, A2], implicit -inf padding; no state."""
    y = jax.lax.reduce_window(x_t, -jnp.inf, jax.lax.max, (1, 1, kernel, kernel), (1, 1, stride, stride),
                              ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    return y, state


def maxpooling2d_layer(x, kernel, stride, padding):
    cell = functools.partial(maxpooling2d_cell, kernel=kernel, stride=stride, padding=padding)
    return _time_loop(cell, x, ())


@jax.jit
def filter_cell(x_t, state, v0, decay_m, decay_s):
    """Output filter step (SPEC 1.6): m = dm m + x, s = ds s + x, out = v0 (m - s)."""
    m, s = state
    m = decay_m * m + x_t
    s = decay_s * s + x_t
    return v0 * (m - s), (m, s)


def filter_layer(x, v0, decay_m, decay_s):
    zeros = jnp.zeros(x.shape[1:-1], x.dtype)
    return _time_loop(filter_cell, x, (zeros, zeros), v0, decay_m, decay_s)
