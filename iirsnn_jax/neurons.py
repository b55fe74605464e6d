"""The paper's spiking neuron over a whole sequence, time-major, with a hand-written backward pass.

Given the input current I [T, B, *F] (W x for every step; the bias is added here), each element runs

    v[t] = I[t] + bias - r[t-1]               (+ decay_v * v[t-1] when the membrane filter is on)
    s[t] = H(v[t] - threshold)                (strict >, surrogate gradient, see surrogate.py)
    r[t] = reset_decay * r[t-1] + reset_v * s[t]

The reset r is a decaying trace subtracted from the potential, not a reset to zero, and gradients flow
through it (BPTT over the reset path, as the reference). This is the only truly sequential part of a layer.

One pass per layer boundary: `spiking_scan` can also run, in the same `lax.scan`, the dropout and the IIR
filter of the next layer (the network's "N D F" and "C F"), so the spikes never exist as a [T, B, *F] array
and the backward pass is one reverse scan too. Its residuals are the potentials v (s and the surrogate slope
are recomputed from them) and the filter's output. A 2x2 max-pool after the filter ("C F P") can join too
(`NeuronSpec.pool_padding`): the CPU kernel then routes the pooled cotangent to each window's first maximum
itself, so the unpooled cotangent is never written. The backward pass (BPTT through r, the filter's adjoint of
recurrence.py) is written out in `_scan_bwd`:

    gr[t] = reset_decay gr[t+1] - gv[t+1]          (r[t] enters r[t+1], and v[t+1] negated)
    gs[t] = dL/ds[t] + reset_v gr[t]
    gv[t] = slope(v[t]) gs[t] + decay_v gv[t+1]    (last term only with the membrane filter)
    dL/dI[t] = gv[t]

On CPU both passes run by default in a compiled kernel (native/spiking_scan.cc, `NeuronSpec.cpu_kernel`): the
same float operations in the same order, with a block of elements carried through all T steps, where XLA's
loop makes several passes over all elements per step. Other backends, and `cpu_kernel="xla"`, run the
`lax.scan`s below.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from iirsnn_jax import pooling, recurrence, surrogate
from iirsnn_jax.native import library, spiking_scan as native_scan


class NeuronState(NamedTuple):
    """Membrane potential v[t-1] and reset trace r[t-1], each [B, *F]."""

    v: jax.Array
    r: jax.Array


class NeuronSpec(NamedTuple):
    """The static settings of a spiking scan (hashable: they select the traced program)."""

    membrane_filter: bool = False
    threshold: float = 1.0
    surrogate: str = "gaussian"
    width: float = 0.4
    dropout_rate: float = 0.0  # used when a keep mask is given
    keep_spikes: bool = False  # with a filter: also return the spikes [T, B, *F]
    # On CPU: "native" runs the scan in the compiled kernel of native/spiking_scan.cc (same results, faster),
    # "xla" as a lax.scan. Other backends always use the lax.scan.
    cpu_kernel: str = "native"
    # With a filter over [T, B, H, W, C]: None, or 0 or 1 for a 2x2, stride-2 max-pool of the filter's output
    # with that padding (pooling.py's rule). The backward kernel then routes the pooled cotangent itself.
    pool_padding: int | None = None


class ScanOutput(NamedTuple):
    """out: the filter's output [T, B, *F] (the spikes without a filter; max-pooled with spec.pool_padding);
    spikes: [T, B, *F] or None;
    counts: [B] float32 spikes per sample (over T and F); neuron_state, filter_state: the final states."""

    out: jax.Array
    spikes: jax.Array | None
    counts: jax.Array
    neuron_state: NeuronState
    filter_state: tuple | None


def spiking_neuron(current, state: NeuronState | None = None, *, reset_decay, reset_v, decay_v,
                   membrane_filter: bool = False, threshold: float = 1.0, surrogate_name: str = "gaussian",
                   surrogate_width: float = 0.4, bias=None):
    """Runs the neuron over all T steps.

    Args:
      current: [T, B, *F] input current.
      state: initial (v, r); zeros when None.
      reset_decay, reset_v, decay_v: frozen constants, scalars or arrays broadcastable to [B, *F].
      membrane_filter: add decay_v * v[t-1] to the potential (off in every reference experiment).
      bias: None or an array broadcastable to [B, *F], added to the current at every step.
    Returns:
      (spikes [T, B, *F] of 0/1 in current's dtype, final NeuronState).
    """
    spec = NeuronSpec(bool(membrane_filter), float(threshold), surrogate_name, float(surrogate_width))
    out = spiking_scan(current, state, spec, reset_decay=reset_decay, reset_v=reset_v, decay_v=decay_v, bias=bias)
    return out.out, out.neuron_state


def spiking_scan(current, state: NeuronState | None, spec: NeuronSpec, *, reset_decay, reset_v, decay_v,
                 bias=None, keep=None, filter_coefficients=None, filter_state=None) -> ScanOutput:
    """The neuron, then optionally dropout and an IIR filter, in one scan over T.

    Args:
      current: [T, B, *F]; state: initial NeuronState or None (zeros).
      spec: the static settings.
      reset_decay, reset_v, decay_v: frozen constants (no gradient flows into them).
      bias: None or broadcastable to [B, *F] (trained: its gradient is the sum of dL/dI).
      keep: None (no dropout) or a bool [T, B, *F] mask; kept spikes are scaled by 1 / (1 - spec.dropout_rate).
      filter_coefficients: None, (alpha_1, alpha_2, beta_1) or (alpha_1,) as in recurrence.py.
      filter_state: the filter's initial state tuple or None (zeros).
    """
    if spec.surrogate not in surrogate.SURROGATES:
        raise ValueError(f"unknown surrogate {spec.surrogate!r}; expected one of {sorted(surrogate.SURROGATES)}")
    library.check_option(spec.cpu_kernel)
    if spec.pool_padding is not None and (filter_coefficients is None or current.ndim != 5
                                          or spec.pool_padding not in (0, 1)):
        raise ValueError(f"a pooled spiking scan needs a filter, [T, B, H, W, C] currents and pool padding 0 or 1; "
                         f"got pool padding {spec.pool_padding}, current shape {current.shape}")
    def as_state(given, count):  # a tuple of [B, *F] arrays in the current's dtype; zeros when None
        if given is None:
            return tuple(jnp.zeros(current.shape[1:], current.dtype) for _ in range(count))
        return tuple(jnp.broadcast_to(a, current.shape[1:]).astype(current.dtype) for a in given)

    state = as_state(state, 2)
    if filter_coefficients is not None:
        filter_coefficients = tuple(filter_coefficients)
        filter_state = as_state(filter_state, recurrence.order(filter_coefficients))
    else:
        filter_state = None
    constants = jax.lax.stop_gradient((reset_decay, reset_v, decay_v))
    out, spikes, counts, neuron_final, filter_final = _scan(spec, current, bias, constants, keep,
                                                            filter_coefficients, state, filter_state)
    return ScanOutput(out, spikes, counts, NeuronState(*neuron_final), filter_final)


def _forward_step(spec, bias, constants, coefficients, carry, inputs):
    """One step: (new carry, (out, v, s)); carry = (neuron (v, r), filter state, spike counts [B, *F])."""
    reset_decay, reset_v, decay_v = constants
    (v_prev, r_prev), filt, counts = carry
    current_t, keep_t = inputs
    if bias is not None:
        current_t = current_t + bias
    v = decay_v * v_prev + current_t - r_prev if spec.membrane_filter else current_t - r_prev
    s = surrogate.heaviside(v, spec.threshold)
    r = reset_decay * r_prev + reset_v * s
    counts = counts + s.astype(jnp.float32)
    out = s
    if coefficients is not None:
        filt, out = recurrence.step(coefficients, filt, _dropped(spec, s, keep_t))
    return ((v, r), filt, counts), (out, v, s)


def _dropped(spec, s, keep_t):
    return s if keep_t is None else jnp.where(keep_t, s / (1.0 - spec.dropout_rate), jnp.zeros_like(s))


def _run_forward(spec, current, bias, constants, keep, coefficients, state, filter_state, *, save_v: bool):
    """(out, v or None, spikes or None, counts, final neuron state, final filter state)."""
    xla = functools.partial(_xla_forward, spec, save_v=save_v)
    if not library.usable(spec.cpu_kernel, current, bias, *constants, *(coefficients or ())):
        return xla(current, bias, constants, keep, coefficients, state, filter_state)
    native = functools.partial(native_scan.forward, spec, save_v=save_v)
    return library.on_cpu(native, xla, current, bias, constants, keep, coefficients, state, filter_state)


def _xla_forward(spec, current, bias, constants, keep, coefficients, state, filter_state, *, save_v: bool):
    """_run_forward as a lax.scan, which stacks only what is asked for (each stacked output is a [T, B, *F]
    buffer)."""
    spikes_too = spec.keep_spikes and coefficients is not None

    def body(carry, inputs):
        carry, (out, v, s) = _forward_step(spec, bias, constants, coefficients, carry, inputs)
        return carry, (out, v if save_v else None, s if spikes_too else None)

    # Spike counts per element, summed over F once at the end: a reduction in every step would be a separate,
    # single-threaded pass (about 5 % of a conv network's step on CPU).
    counts = jnp.zeros(current.shape[1:], jnp.float32)
    (neuron_final, filter_final, counts), (out, v, s) = jax.lax.scan(body, (state, filter_state, counts),
                                                                     (current, keep))
    counts = jnp.sum(counts, axis=tuple(range(1, counts.ndim)))
    return out, v, s, counts, neuron_final, filter_final


def _pooled(spec, out):
    if spec.pool_padding is None:
        return out
    # computed once: the next layer and the backward pass both read it, and XLA would otherwise fuse the pool (and
    # its padded copy of `out`) into each reader (still so with the native kernels' same-shape operands)
    return jax.lax.optimization_barrier(pooling.max_pool(out, 2, 2, spec.pool_padding))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _scan(spec, current, bias, constants, keep, coefficients, state, filter_state):
    out, _, spikes, counts, neuron_final, filter_final = _run_forward(
        spec, current, bias, constants, keep, coefficients, state, filter_state, save_v=False)
    return _pooled(spec, out), spikes, counts, neuron_final, filter_final


def _scan_fwd(spec, current, bias, constants, keep, coefficients, state, filter_state):
    out, v, spikes, counts, neuron_final, filter_final = _run_forward(
        spec, current, bias, constants, keep, coefficients, state, filter_state, save_v=True)
    pooled = _pooled(spec, out)
    residuals = (v, out if coefficients is not None else None, bias, constants, keep, coefficients, filter_state,
                 None if spec.pool_padding is None else pooled)
    return (pooled, spikes, counts, neuron_final, filter_final), residuals


def _scan_bwd(spec, residuals, cotangents):
    v, y, bias, constants, keep, coefficients, filter_init, pooled = residuals
    ct_out, ct_spikes, ct_counts, (ct_v_final, ct_r_final), ct_filter_final = cotangents
    ct_spikes = ct_spikes if spec.keep_spikes and coefficients is not None else None
    args = (v, y, keep, constants, coefficients, ct_out, ct_spikes, ct_counts, ct_v_final, ct_r_final,
            ct_filter_final)
    bias_gradient = lambda summed: None if bias is None else recurrence.sum_to_shape(summed, bias)

    def xla(pooled, *args):
        if pooled is not None:  # ct_out is the pooled output's: route it to the first maximum of each window
            v, y, keep, constants, coefficients, ct_out, *rest = args
            ct_y = pooling.first_maximum_cotangent(y, pooled, ct_out, 2, spec.pool_padding)
            args = (v, y, keep, constants, coefficients, ct_y, *rest)
        ct_current, *rest = _xla_reverse(spec, *args)
        return ct_current, *rest, bias_gradient(ct_current)

    def native(pooled, *args):  # the kernel sums ct_current over T as it goes: the bias gradient reads [B, *F]
        *results, summed = native_scan.backward(spec, *args, pooled=pooled, sum_current=bias is not None)
        return *results, bias_gradient(summed)

    if library.usable(spec.cpu_kernel, v, *constants, *(coefficients or ())):
        ct_current, ct_v0, ct_r0, lam, grads, ct_bias = library.on_cpu(native, xla, pooled, *args)
    else:
        ct_current, ct_v0, ct_r0, lam, grads, ct_bias = xla(pooled, *args)
    if coefficients is None:
        ct_coefficients, ct_filter_init = None, None
    else:
        ct_coefficients, ct_filter_init = recurrence.finish_adjoint(coefficients, lam, grads, filter_init,
                                                                    ct_filter_final, v.shape[0])
    return (ct_current, ct_bias, (None, None, None), None, ct_coefficients, (ct_v0, ct_r0), ct_filter_init)


def _xla_reverse(spec, v, y, keep, constants, coefficients, ct_out, ct_spikes, ct_counts, ct_v_final, ct_r_final,
                 ct_filter_final):
    """The reverse scan as a lax.scan: (ct_current, ct_v0, ct_r0, lam or None, coefficient gradient
    accumulators or None), the last four [B, *F]."""
    reset_decay, reset_v, decay_v = constants
    length = v.shape[0]
    per_sample = lambda c: c.reshape(c.shape + (1,) * (v.ndim - 2)).astype(v.dtype)  # [B] -> [B, 1, ...]

    def body(carry, inputs):
        gr, gvm, lam, grads = carry
        t, ct_t, ct_s_t, v_t, keep_t, y_t = inputs
        s = surrogate.heaviside(v_t, spec.threshold)
        ct_s = per_sample(ct_counts)
        if coefficients is not None:
            ct_y = ct_t + recurrence.final_cotangent(ct_filter_final, t, length)
            lam, grads, ct_x = recurrence.adjoint_step(coefficients, lam, grads, ct_y, _dropped(spec, s, keep_t), y_t)
            ct_s = ct_s + (ct_x if keep_t is None else jnp.where(keep_t, ct_x / (1.0 - spec.dropout_rate), 0))
            if ct_s_t is not None:
                ct_s = ct_s + ct_s_t
        else:
            ct_s = ct_s + ct_t
        gs = ct_s + reset_v * gr
        gv = surrogate.slope(v_t, spec.threshold, spec.surrogate, spec.width) * gs
        gv = gv + (gvm if spec.membrane_filter else jnp.where(t == length - 1, ct_v_final, 0))
        gvm = decay_v * gv if spec.membrane_filter else gvm
        return (reset_decay * gr - gv, gvm, lam, grads), gv

    zero = jnp.zeros_like(v[0])
    lam, grads = recurrence.zero_adjoint(coefficients, zero) if coefficients is not None else (None, None)
    gr = jnp.broadcast_to(ct_r_final, zero.shape).astype(v.dtype)
    gvm = jnp.broadcast_to(ct_v_final, zero.shape).astype(v.dtype) if spec.membrane_filter else None
    inputs = (jnp.arange(length), ct_out, ct_spikes, v, keep, y)
    (ct_r0, ct_v0, lam, grads), ct_current = jax.lax.scan(body, (gr, gvm, lam, grads), inputs, reverse=True)
    return ct_current, zero if ct_v0 is None else ct_v0, ct_r0, lam, grads


_scan.defvjp(_scan_fwd, _scan_bwd)
