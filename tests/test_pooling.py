"""pooling.max_pool: values and gradients against reduce_window autodiff and a loop with PyTorch's tie rule."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iirsnn_jax import pooling


def _reference(x, k, s, p):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, k, k, 1), (1, 1, s, s, 1),
                                 ((0, 0), (0, 0), (p, p), (p, p), (0, 0)))


def _first_max_gradient_loop(x, ct, k, p):
    """d sum(pool(x) * ct) / dx with the gradient of each window on its first (row-major) maximum."""
    t, b, h, w, c = x.shape
    grad = np.zeros_like(x)
    for i in range(ct.shape[2]):
        for j in range(ct.shape[3]):
            for n in np.ndindex(t, b, c):
                best, where = -np.inf, None
                for di in range(k):
                    for dj in range(k):
                        r, q = i * k + di - p, j * k + dj - p
                        if 0 <= r < h and 0 <= q < w and x[n[0], n[1], r, q, n[2]] > best:
                            best, where = x[n[0], n[1], r, q, n[2]], (r, q)
                grad[n[0], n[1], where[0], where[1], n[2]] += ct[n[0], n[1], i, j, n[2]]
    return grad


@pytest.mark.parametrize("k, s, p, h", [(2, 2, 0, 6), (2, 2, 1, 6), (2, 2, 1, 7), (3, 3, 1, 7), (3, 2, 1, 7)])
def test_values_and_gradients(k, s, p, h):
    rng = np.random.default_rng(k * 10 + p)
    # Rounded values make ties common, as zeros of silent regions are in the networks.
    x = np.round(rng.normal(size=(3, 2, h, h + 1, 4)), 1)
    ours = pooling.max_pool(jnp.asarray(x), k, s, p)
    np.testing.assert_array_equal(ours, _reference(jnp.asarray(x), k, s, p))
    ct = rng.normal(size=ours.shape)
    grad = jax.grad(lambda x: jnp.sum(pooling.max_pool(x, k, s, p) * ct))(jnp.asarray(x))
    if k == s:
        np.testing.assert_allclose(grad, _first_max_gradient_loop(x, ct, k, p), rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_allclose(grad, jax.grad(lambda x: jnp.sum(_reference(x, k, s, p) * ct))(jnp.asarray(x)),
                                   rtol=1e-6)
