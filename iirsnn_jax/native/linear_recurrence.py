"""The filters' sequential solver (recurrence.py) through the CPU kernel of linear_recurrence.cc.

Same values as recurrence._sequential and recurrence._sequential_adjoint (the forward pass bit for bit):
x is [T, B, *F], or [B, T, *F] with time_axis=1 (read in place, and its cotangent written in that layout).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from iirsnn_jax.native.library import feature_array

FORWARD_TARGET = "iirsnn_linear_recurrence_forward"
BACKWARD_TARGET = "iirsnn_linear_recurrence_backward"


def _layout(x, time_axis):
    """(T, B, feature shape, prod of it)."""
    length, batch = (x.shape[1], x.shape[0]) if time_axis == 1 else x.shape[:2]
    features = tuple(x.shape[2:])
    return length, batch, features, int(np.prod(features, dtype=np.int64))


def _coefficients(coefficients, features, dtype):
    """(a1, a2, b) as [F] arrays; the absent ones (order 1) with no elements."""
    a1, a2, b = (coefficients[0], None, None) if len(coefficients) == 1 else coefficients
    return tuple(feature_array(c, features, dtype) for c in (a1, a2, b))


def _attrs(order, length, batch, fs, time_axis):
    return dict(order=np.int64(order), length=np.int64(length), batch=np.int64(batch), features=np.int64(fs),
                batch_major=time_axis == 1)


def forward(x, coefficients, init, time_axis):
    """(y [T, B, *F], final state tuple) as recurrence._solve's sequential route."""
    length, batch, features, fs = _layout(x, time_axis)
    order, dtype = (2 if len(coefficients) == 3 else 1), x.dtype
    state = jax.ShapeDtypeStruct((batch, fs), dtype)
    results = (jax.ShapeDtypeStruct((length, batch, fs), dtype), state,
               state if order == 2 else jax.ShapeDtypeStruct((0,), dtype))
    flat = lambda s: s.reshape(batch, fs).astype(dtype)
    y, final1, final2 = jax.ffi.ffi_call(FORWARD_TARGET, results, vmap_method="sequential")(
        x.reshape(x.shape[0], x.shape[1], fs), *_coefficients(coefficients, features, dtype), flat(init[0]),
        flat(init[1]) if order == 2 else jnp.zeros((0,), dtype), **_attrs(order, length, batch, fs, time_axis))
    final = (final1, final2) if order == 2 else (final1,)
    return y.reshape(length, batch, *features), tuple(f.reshape(batch, *features) for f in final)


def backward(x, y, coefficients, ct_y, ct_final, time_axis):
    """(ct_x in x's layout, lam = (lam[0], lam[1]) or (lam[0],), per-element gradient accumulators), the inputs
    of recurrence.finish_adjoint."""
    length, batch, features, fs = _layout(x, time_axis)
    order, dtype = (2 if len(coefficients) == 3 else 1), x.dtype
    state = jax.ShapeDtypeStruct((batch, fs), dtype)
    none = jax.ShapeDtypeStruct((0,), dtype)
    results = (jax.ShapeDtypeStruct((x.shape[0], x.shape[1], fs), dtype), state, state if order == 2 else none,
               state, state if order == 2 else none, state if order == 2 else none)
    flat = lambda s: jnp.broadcast_to(s, (batch, *features)).reshape(batch, fs).astype(dtype)
    steps = lambda a: a.reshape(length, batch, fs).astype(dtype)
    ct_x, lam1, lam2, g1, g2, gb = jax.ffi.ffi_call(BACKWARD_TARGET, results, vmap_method="sequential")(
        x.reshape(x.shape[0], x.shape[1], fs), steps(y), steps(ct_y), flat(ct_final[0]),
        flat(ct_final[1]) if order == 2 else jnp.zeros((0,), dtype), *_coefficients(coefficients, features, dtype),
        **_attrs(order, length, batch, fs, time_axis))
    shaped = lambda a: a.reshape(batch, *features)
    if order == 2:
        return ct_x.reshape(x.shape), (shaped(lam1), shaped(lam2)), (shaped(g1), shaped(g2), shaped(gb))
    return ct_x.reshape(x.shape), (shaped(lam1),), (shaped(g1),)
