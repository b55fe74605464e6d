"""Max-pooling of every frame of a time-major sequence, with PyTorch's padding and gradient semantics.

Padding is minus infinity (padded cells never win), and the gradient of each window goes to its FIRST
maximum in row-major order, the element PyTorch's max_pool2d backward picks on ties. For the
non-overlapping windows of the reference networks (kernel == stride) the backward pass is written by hand:
autodiff of `reduce_window` becomes `select_and_scatter`, which XLA on CPU runs through an index array the
size of the input and a scatter (about 15 % of a conv network's step); the rule below is a few fused
elementwise ops.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def max_pool(x, kernel: int, stride: int, padding: int):
    """[T, B, H, W, C] -> [T, B, H', W', C], H' = (H + 2 padding - kernel) // stride + 1 (and W')."""
    if kernel == stride:
        return _non_overlapping_max_pool(x, kernel, padding)
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, kernel, kernel, 1), (1, 1, stride, stride, 1),
                                 ((0, 0), (0, 0), (padding, padding), (padding, padding), (0, 0)))


def _windows(x, k: int, p: int):
    """The k*k elements of every window, each [T, B, H', W', C], in row-major window order."""
    h_out, w_out = (x.shape[2] + 2 * p - k) // k + 1, (x.shape[3] + 2 * p - k) // k + 1
    padded = jnp.pad(x, ((0, 0), (0, 0), (p, p), (p, p), (0, 0)), constant_values=-jnp.inf) if p else x
    tiles = padded[:, :, : h_out * k, : w_out * k].reshape(*x.shape[:2], h_out, k, w_out, k, x.shape[-1])
    return [tiles[:, :, :, i, :, j] for i in range(k) for j in range(k)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _non_overlapping_max_pool(x, k: int, p: int):
    if p:  # XLA's reduce_window pads in place; the windows of a padded copy cost that copy (N-MNIST: 46-55 ms
        # against 28 ms for [30, 48, 34, 34, 64]). Without padding the windows are the faster form (7-11 ms
        # against 14-17 ms for [25, 32, 28, 28, 64]). A maximum is exact either way.
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, k, k, 1), (1, 1, k, k, 1),
                                     ((0, 0), (0, 0), (p, p), (p, p), (0, 0)))
    return functools.reduce(jnp.maximum, _windows(x, k, p))


def _pool_fwd(x, k, p):
    out = _non_overlapping_max_pool(x, k, p)
    return out, (x, out)


def _pool_bwd(k, p, residuals, cotangent):
    x, out = residuals
    taken, parts = None, []
    for element in _windows(x, k, p):  # the first maximum of each window takes the whole cotangent
        hit = element == out
        first = hit if taken is None else hit & ~taken
        taken = hit if taken is None else taken | hit
        parts.append(jnp.where(first, cotangent, jnp.zeros_like(cotangent)))
    t, b, h_out, w_out, c = out.shape
    rows = [jnp.stack(parts[i * k:(i + 1) * k], axis=-2) for i in range(k)]  # each [T, B, H', W', k, C]
    grad = jnp.stack(rows, axis=3).reshape(t, b, h_out * k, w_out * k, c)
    h, w = x.shape[2:4]
    grad = jnp.pad(grad, ((0, 0), (0, 0), (0, max(0, h + 2 * p - h_out * k)), (0, max(0, w + 2 * p - w_out * k)),
                          (0, 0)))
    return (grad[:, :, p:p + h, p:p + w].astype(x.dtype),)


_non_overlapping_max_pool.defvjp(_pool_fwd, _pool_bwd)


def first_maximum_cotangent(x, out, cotangent, kernel: int, padding: int):
    """The cotangent of x [T, B, H, W, C] given that of out = max_pool(x, kernel, kernel, padding): each window's
    cotangent goes to its first maximum (the backward pass of the non-overlapping pool above)."""
    return _pool_bwd(kernel, padding, (x, out), cotangent)[0]
