"""The spiking scan of neurons.py through the CPU kernel of spiking_scan.cc (built by library.py).

On CPU, XLA runs `lax.scan` as a loop whose body is several separate passes over all B x F elements per time
step, each re-reading the carried state from memory; the kernel carries a block of 1024 elements through all
T steps in local arrays instead (docs/performance.md: the forward pass about 2x faster, snn_mlp_1's step
1.1-1.4x). It computes exactly what neurons._forward_step and neurons._scan_bwd compute, in the same float
order; the backward pass only multiplies by reciprocals where they divide by constants, and the surrogate slopes'
exp is the kernel's own polynomial (gradients within an ulp or two of XLA's).

Array layout of the calls: step arrays [T, B, Fs] (Fs = prod of the feature shape), per-element parameters
[Fs], states [B, Fs]; an absent optional array is passed with no elements. The potentials are written over the
current and the current's cotangent over the potentials (input-output aliases), both passed as [T B, *F], the
shape of the matmul or conv output they live in.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from iirsnn_jax.native.library import feature_array

SURROGATES = ("gaussian", "fast_sigmoid", "atan", "triangle")  # the kernel's numbering (enum Surrogate)
FORWARD_TARGET = "iirsnn_spiking_scan_forward"
BACKWARD_TARGET = "iirsnn_spiking_scan_backward"


def _attrs(spec, order, batch, features):
    return dict(order=np.int64(order), membrane=bool(spec.membrane_filter), batch=np.int64(batch),
                features=np.int64(features), threshold=np.float64(spec.threshold),
                keep_divisor=np.float64(1.0 - spec.dropout_rate))


def _pool_attrs(spec, features):
    """The pool's geometry for the backward kernel: padding -1 without a pool; features (H, W, C)."""
    height, width, channels = features if features is not None else (0, 0, 0)
    return dict(pool_padding=np.int64(-1 if features is None else spec.pool_padding), pool_height=np.int64(height),
                pool_width=np.int64(width), pool_channels=np.int64(channels))


def forward(spec, current, bias, constants, keep, coefficients, state, filter_state, *, save_v: bool):
    """The same results as neurons._run_forward: (out, v or None, spikes or None, counts [B] float32,
    final (v, r), final filter state or None)."""
    length, batch, *features = current.shape
    features = tuple(features)
    fs = int(np.prod(features, dtype=np.int64))
    dtype = current.dtype
    order = 0 if coefficients is None else (1 if len(coefficients) == 1 else 2)
    empty = jnp.zeros((0,), dtype)
    steps = lambda a: a.reshape(length, batch, fs)
    flat = lambda a: a.reshape(batch, fs)
    reset_decay, reset_v, decay_v = constants
    a1, a2, b = (coefficients[0], None, None) if order == 1 else (coefficients or (None, None, None))
    keep_flat = jnp.zeros((0,), jnp.bool_) if keep is None else steps(keep)
    spikes_too = spec.keep_spikes and order > 0
    step_shape = jax.ShapeDtypeStruct((length, batch, fs), dtype)
    state_shape = jax.ShapeDtypeStruct((batch, fs), dtype)
    none = jax.ShapeDtypeStruct((0,), dtype)
    # v is written over the current, which nothing reads after the scan: one fresh [T, B, F] buffer less (fewer
    # page faults, less memory). The current goes in with the shape of the matmul or conv that made it,
    # [T B, *F]: XLA copies an aliased operand that is a reshape of another array.
    frames = lambda a: a.reshape(length * batch, *features)
    frames_shape = jax.ShapeDtypeStruct((length * batch, *features), dtype)
    results = (step_shape, frames_shape if save_v else none, step_shape if spikes_too else none,
               jax.ShapeDtypeStruct((batch, fs), jnp.float32), state_shape, state_shape,
               state_shape if order >= 1 else none, state_shape if order == 2 else none)
    filter_state = tuple(filter_state) + (None,) * (2 - len(filter_state)) if filter_state is not None else (None, None)
    out, v, spikes, counts, v_final, r_final, y1_final, y2_final = jax.ffi.ffi_call(
        FORWARD_TARGET, results, vmap_method="sequential", input_output_aliases={0: 1} if save_v else None)(
        frames(current), *(feature_array(p, features, dtype) for p in (bias, reset_decay, reset_v, decay_v, a1, a2, b)),
        keep_flat,
        flat(state[0]), flat(state[1]),
        empty if filter_state[0] is None else flat(filter_state[0]),
        empty if filter_state[1] is None else flat(filter_state[1]),
        **_attrs(spec, order, batch, fs))
    whole = lambda a: a.reshape(current.shape)
    final = lambda a: a.reshape(current.shape[1:])
    filter_final = None if order == 0 else ((final(y1_final),) if order == 1 else (final(y1_final), final(y2_final)))
    return (whole(out), whole(v) if save_v else None, whole(spikes) if spikes_too else None,
            jnp.sum(counts, axis=1), (final(v_final), final(r_final)), filter_final)


def backward(spec, v, y, keep, constants, coefficients, ct_out, ct_spikes, ct_counts, ct_v_final,
             ct_r_final, ct_filter_final, *, pooled=None, sum_current: bool):
    """The reverse scan of neurons._scan_bwd: (ct_current [T, B, *F], ct_v0, ct_r0, lam tuple or None,
    per-element coefficient gradient accumulators or None, ct_current summed over T or None (without
    sum_current)), all but the first state-shaped. With spec.pool_padding, ct_out and `pooled` are the max-pooled
    filter output's cotangent and value [T, B, H', W', C]; the kernel routes the cotangent (pooling.py's rule)."""
    length, batch, *features = v.shape
    features = tuple(features)
    fs = int(np.prod(features, dtype=np.int64))
    dtype = v.dtype
    order = 0 if coefficients is None else (1 if len(coefficients) == 1 else 2)
    empty = jnp.zeros((0,), dtype)
    steps = lambda a: a.reshape(length, batch, fs).astype(dtype)
    flat = lambda a: jnp.broadcast_to(a, v.shape[1:]).reshape(batch, fs).astype(dtype)
    reset_decay, reset_v, decay_v = constants
    a1, a2, b = (coefficients[0], None, None) if order == 1 else (coefficients or (None, None, None))
    ct_final = tuple(ct_filter_final) if ct_filter_final is not None else ()
    state_shape = jax.ShapeDtypeStruct((batch, fs), dtype)
    none = jax.ShapeDtypeStruct((0,), dtype)
    # ct_current is written over v (read first at every step), v arriving as the forward pass made it, [T B, *F]
    results = (jax.ShapeDtypeStruct((length * batch, *features), dtype), state_shape, state_shape,
               state_shape if order >= 1 else none, state_shape if order == 2 else none,
               state_shape if order >= 1 else none, state_shape if order == 2 else none,
               state_shape if order == 2 else none, state_shape if sum_current else none)
    ct_current, ct_v0, ct_r0, lam1, lam2, g1, g2, gb, summed = jax.ffi.ffi_call(
        BACKWARD_TARGET, results, vmap_method="sequential", input_output_aliases={2: 0})(
        ct_out.astype(dtype),  # [T, B, *F], or the pooled [T, B, H', W', C]: the kernel reads elements in order
        empty if ct_spikes is None else steps(ct_spikes), v.reshape(length * batch, *features),
        empty if y is None else steps(y),
        jnp.zeros((0,), jnp.bool_) if keep is None else keep.reshape(length, batch, fs),
        *(feature_array(p, features, dtype) for p in (reset_decay, reset_v, decay_v, a1, a2, b)),
        ct_counts.astype(dtype),
        flat(ct_v_final), flat(ct_r_final),
        flat(ct_final[0]) if len(ct_final) > 0 else empty, flat(ct_final[1]) if len(ct_final) > 1 else empty,
        # [T, B, H' W' C], the shape the next filter's kernel reads: in any other shape XLA fuses a second copy of
        # the pool into this operand (snn_conv_1_mnist: about 9 ms a step)
        empty if pooled is None else pooled.reshape(length, batch, -1).astype(dtype),
        **_attrs(spec, order, batch, fs), surrogate=np.int64(SURROGATES.index(spec.surrogate)),
        width=np.float64(spec.width), **_pool_attrs(spec, features if pooled is not None else None))
    state = lambda a: a.reshape(v.shape[1:])
    if order == 0:
        lam, grads = None, None
    elif order == 1:
        lam, grads = (state(lam1),), (state(g1),)
    else:
        lam, grads = (state(lam1), state(lam2)), (state(g1), state(g2), state(gb))
    return (ct_current.reshape(v.shape), state(ct_v0), state(ct_r0), lam, grads,
            state(summed) if sum_current else None)
