"""surrogate.spike: strict Heaviside forward; backward equals each surrogate's closed formula (SPEC 1.2).

The expected derivatives are written out here from SPEC 1.2 and the table in surrogate.py's docstring, in
numpy/float64, never by calling surrogate.SURROGATES.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iirsnn_jax import surrogate


def _gaussian(x, w):
    return np.exp(-(x ** 2) / (2 * w ** 2)) / (2.506628 * w)


def _fast_sigmoid(x, w):
    return 1.0 / (1.0 + np.abs(x) / w) ** 2


def _atan(x, w):
    return (1.0 / w) / (1.0 + (np.pi * x / (2 * w)) ** 2) / 2


def _triangle(x, w):
    return np.maximum(0.0, 1.0 - np.abs(x) / w) / w


EXPECTED = {"gaussian": _gaussian, "fast_sigmoid": _fast_sigmoid, "atan": _atan, "triangle": _triangle}

# v values away from the triangle's kinks at threshold +- width, so its derivative is unambiguous there.
V = np.array([-3.0, -0.5, 0.0, 0.3, 0.55, 0.8, 0.95, 1.0, 1.05, 1.2, 1.45, 1.7, 2.5, 7.0], np.float32)


def test_forward_is_strict_heaviside():
    one = np.float32(1.0)
    v = jnp.array([-2.0, 0.0, 0.999, np.nextafter(one, np.float32(0)), 1.0, np.nextafter(one, np.float32(2)),
                   1.5, 100.0], jnp.float32)
    s = surrogate.spike(v)
    np.testing.assert_array_equal(np.asarray(s), [0, 0, 0, 0, 0, 1, 1, 1])
    assert s.dtype == jnp.float32 and s.shape == v.shape


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_forward_does_not_depend_on_surrogate_and_uses_threshold(name):
    v = jnp.array([[0.2, 0.5, 0.5000001], [0.7, -1.0, 3.0]], jnp.float32)
    s = surrogate.spike(v, threshold=0.5, surrogate=name, width=0.3)
    np.testing.assert_array_equal(np.asarray(s), [[0, 0, 1], [1, 0, 1]])


def test_forward_keeps_float64_dtype():
    with jax.enable_x64(True):
        v = jnp.array([0.5, 1.0, 1.0 + 1e-12], jnp.float64)
        s = surrogate.spike(v)
        assert s.dtype == jnp.float64
        np.testing.assert_array_equal(np.asarray(s), [0, 0, 1])


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("width", [0.4, 0.25])
def test_gradient_equals_closed_formula(name, width):
    grad = jax.vmap(jax.grad(lambda v: surrogate.spike(v, 1.0, name, width)))(jnp.asarray(V))
    expected = EXPECTED[name](V.astype(np.float64) - 1.0, width)
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_gradient_is_centred_at_the_threshold(name):
    threshold, width = -0.7, 0.5
    v = V - 1.0 + threshold  # same offsets from the threshold as V has from 1
    grad = jax.grad(lambda v: surrogate.spike(v, threshold, name, width).sum())(jnp.asarray(v))
    np.testing.assert_allclose(np.asarray(grad), EXPECTED[name](V.astype(np.float64) - 1.0, width),
                               rtol=2e-5, atol=1e-6)


def test_gaussian_default_peak_value_from_spec():
    # SPEC 1.2: 1 / (sqrt(2 pi) * 0.4) = 0.99736 at v = 1; the default surrogate is the Gaussian, sigma 0.4.
    g = jax.grad(lambda v: surrogate.spike(v))(jnp.float32(1.0))
    assert abs(float(g) - 0.99736) < 1e-5
    assert abs(float(g) - 1.0 / (2.506628 * 0.4)) < 1e-6
    # and it is the maximum: a little off the threshold on either side is smaller.
    g_side = jax.vmap(jax.grad(surrogate.spike))(jnp.array([0.9, 1.1], jnp.float32))
    assert np.all(np.asarray(g_side) < float(g))


def test_gradient_scales_the_incoming_cotangent():
    v = jnp.array([0.6, 1.0, 1.3, 2.0], jnp.float32)
    cot = jnp.array([2.0, -3.0, 0.5, 7.0], jnp.float32)
    out, vjp = jax.vjp(surrogate.spike, v)
    (g,) = vjp(cot)
    np.testing.assert_array_equal(np.asarray(out), [0, 0, 1, 1])
    np.testing.assert_allclose(np.asarray(g), np.asarray(cot) * _gaussian(np.asarray(v, np.float64) - 1, 0.4),
                               rtol=2e-6)


@pytest.mark.parametrize("name", ["gaussian", "atan", "triangle"])
def test_normalised_surrogates_integrate_to_one(name):
    # Independent property: the surrogate of a unit step integrates to ~1 (a smoothed Dirac delta).
    x = np.linspace(-60, 60, 120_001, dtype=np.float32) + 1.0
    g = np.asarray(jax.vmap(jax.grad(lambda v: surrogate.spike(v, 1.0, name, 0.4)))(jnp.asarray(x)), np.float64)
    integral = np.trapezoid(g, x.astype(np.float64))
    # atan has heavy 1/x^2 tails: the truncation at |x| = 60 leaves 2 * 2w / (pi^2 * 60) ~ 2.7e-3 outside.
    assert abs(integral - 1.0) < (4e-3 if name == "atan" else 1e-4), integral


def test_fast_sigmoid_is_the_unnormalised_superspike_form():
    # The docstring's SuperSpike form 1/(1+|x|/w)^2 peaks at 1 (not 1/w) and integrates to 2w, not 1.
    g = jax.grad(lambda v: surrogate.spike(v, 1.0, "fast_sigmoid", 0.25))(jnp.float32(1.0))
    assert float(g) == pytest.approx(1.0)


def test_unknown_surrogate_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="sigmoidd"):
        surrogate.spike(jnp.ones(3), 1.0, "sigmoidd", 0.4)


def test_works_under_jit_and_vmap():
    rng = np.random.default_rng(0)
    v = jnp.asarray(rng.uniform(0, 2, size=(3, 5)).astype(np.float32))  # B=3, N=5
    eager = surrogate.spike(v)
    jitted = jax.jit(surrogate.spike)(v)
    vmapped = jax.vmap(surrogate.spike)(v)
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(eager))
    np.testing.assert_array_equal(np.asarray(vmapped), np.asarray(eager))
    np.testing.assert_array_equal(np.asarray(eager), (np.asarray(v) > 1.0).astype(np.float32))

    grad_fn = jax.grad(lambda v: (surrogate.spike(v, 1.0, "atan", 0.3) * jnp.arange(5.0)).sum())
    g_jit = jax.jit(grad_fn)(v)
    g_vmap = jax.vmap(grad_fn)(v)  # per-row gradients, the same numbers
    expected = _atan(np.asarray(v, np.float64) - 1.0, 0.3) * np.arange(5.0)
    np.testing.assert_allclose(np.asarray(g_jit), expected, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(g_vmap), expected, rtol=2e-6, atol=1e-7)


def test_gradient_is_not_the_true_derivative_of_the_forward():
    # Heaviside's true derivative is 0 almost everywhere; the surrogate must replace it.
    g = jax.grad(lambda v: surrogate.spike(v))(jnp.float32(0.8))
    assert float(g) == pytest.approx(math.exp(-0.04 / 0.32) / (2.506628 * 0.4), rel=1e-6)
