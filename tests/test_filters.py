"""filters.py against scipy.signal.lfilter (per element, along time), a plain Python loop and SPEC 1.16.

Layout under test: x [T, B, *F], coefficients of shape F (one per feature element, shared across the batch).
T, B and the feature sizes are all distinct so that a time/batch/feature mix-up cannot pass.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal

from iirsnn_jax import filters

T, B = 13, 3
SHAPES = [(5,), (4, 7, 2)]  # FC features N=5 and an image (H, W, C)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _rng(seed):
    return np.random.default_rng(seed)


def _dual_exp_coeffs(rng, shape):
    # Distinct per element; stable (poles inside the unit circle) but not of dual-exponential form.
    return (rng.uniform(0.3, 1.1, shape), rng.uniform(-0.45, -0.05, shape), rng.uniform(0.1, 0.9, shape))


def _elements(shape):
    return list(np.ndindex(*shape))


# ----------------------------------------------------------------------------------------------------------
# Independent routes
# ----------------------------------------------------------------------------------------------------------


def _lfilter_per_element(x, b_of, a_of, zi_of=None):
    """Runs scipy.signal.lfilter along time for every (batch, feature) element with that feature's b, a."""
    x = np.asarray(x, np.float64)
    y = np.empty_like(x)
    for bi in range(x.shape[1]):
        for f in _elements(x.shape[2:]):
            b, a = b_of(f), a_of(f)
            if zi_of is None:
                y[(slice(None), bi, *f)] = signal.lfilter(b, a, x[(slice(None), bi, *f)])
            else:
                y[(slice(None), bi, *f)], _ = signal.lfilter(b, a, x[(slice(None), bi, *f)], zi=zi_of(bi, f))
    return y


def _loop_dual_exp(x, a1, a2, b1, y1=None, y2=None):
    """SPEC 1.3 literally: y[t] = a1 y[t-1] + a2 y[t-2] + b1 x[t], one Python float at a time."""
    t_len, batch = x.shape[:2]
    y = np.zeros(x.shape)
    for bi in range(batch):
        for f in _elements(x.shape[2:]):
            p1 = 0.0 if y1 is None else float(y1[(bi, *f)])
            p2 = 0.0 if y2 is None else float(y2[(bi, *f)])
            for t in range(t_len):
                cur = float(a1[f]) * p1 + float(a2[f]) * p2 + float(b1[f]) * float(x[(t, bi, *f)])
                y[(t, bi, *f)] = cur
                p1, p2 = cur, p1
    return y


def _loop_low_pass(x, a1, y1=None):
    t_len, batch = x.shape[:2]
    y = np.zeros(x.shape)
    for bi in range(batch):
        for f in _elements(x.shape[2:]):
            p = 0.0 if y1 is None else float(y1[(bi, *f)])
            for t in range(t_len):
                p = float(a1[f]) * p + float(x[(t, bi, *f)])
                y[(t, bi, *f)] = p
    return y


def _loop_output_filter(x, dm, ds, v0, m0=None, s0=None):
    t_len, batch = x.shape[:2]
    y = np.zeros(x.shape)
    m_out, s_out = np.zeros(x.shape[1:]), np.zeros(x.shape[1:])
    for bi in range(batch):
        for f in _elements(x.shape[2:]):
            m = 0.0 if m0 is None else float(m0[(bi, *f)])
            s = 0.0 if s0 is None else float(s0[(bi, *f)])
            for t in range(t_len):
                m = float(dm[f]) * m + float(x[(t, bi, *f)])
                s = float(ds[f]) * s + float(x[(t, bi, *f)])
                y[(t, bi, *f)] = float(v0) * (m - s)
            m_out[(bi, *f)], s_out[(bi, *f)] = m, s
    return y, m_out, s_out


def _impulse(length=40):
    x = np.zeros((length, 1, 1), np.float32)
    x[0] = 1.0
    return jnp.asarray(x)


# ----------------------------------------------------------------------------------------------------------
# dual_exp_iir
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_dual_exp_iir_matches_lfilter_per_element(shape):
    rng = _rng(1)
    x = rng.normal(size=(T, B, *shape)).astype(np.float32)
    a1, a2, b1 = (c.astype(np.float32) for c in _dual_exp_coeffs(rng, shape))
    y, _ = filters.dual_exp_iir(jnp.asarray(x), jnp.asarray(a1), jnp.asarray(a2), jnp.asarray(b1))
    assert y.shape == (T, B, *shape) and y.dtype == jnp.float32
    expected = _lfilter_per_element(x, lambda f: [b1[f]], lambda f: [1.0, -a1[f], -a2[f]])
    np.testing.assert_allclose(np.asarray(y), expected, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_dual_exp_iir_nonzero_state_matches_loop_and_lfilter_zi(shape):
    rng = _rng(2)
    x = rng.normal(size=(T, B, *shape)).astype(np.float32)
    a1, a2, b1 = (c.astype(np.float32) for c in _dual_exp_coeffs(rng, shape))
    y1 = rng.normal(size=(B, *shape)).astype(np.float32)
    y2 = rng.normal(size=(B, *shape)).astype(np.float32)
    y, final = filters.dual_exp_iir(jnp.asarray(x), jnp.asarray(a1), jnp.asarray(a2), jnp.asarray(b1),
                                    filters.DualExpState(jnp.asarray(y1), jnp.asarray(y2)))
    loop = _loop_dual_exp(x, a1, a2, b1, y1, y2)
    np.testing.assert_allclose(np.asarray(y), loop, rtol=2e-5, atol=2e-6)
    # lfilter with the initial conditions built from the past outputs (y[-1], y[-2]) by scipy's lfiltic.
    zi = lambda bi, f: signal.lfiltic([b1[f]], [1.0, -a1[f], -a2[f]], y=[y1[(bi, *f)], y2[(bi, *f)]])
    expected = _lfilter_per_element(x, lambda f: [b1[f]], lambda f: [1.0, -a1[f], -a2[f]], zi)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=2e-5, atol=2e-6)
    # The final state is (y[T-1], y[T-2]).
    np.testing.assert_allclose(np.asarray(final.y1), loop[-1], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(np.asarray(final.y2), loop[-2], rtol=2e-5, atol=2e-6)


def test_dual_exp_iir_state_carry_equals_one_long_run():
    rng = _rng(3)
    x = jnp.asarray(rng.normal(size=(T, B, 5)).astype(np.float32))
    a1, a2, b1 = (jnp.asarray(c.astype(np.float32)) for c in _dual_exp_coeffs(rng, (5,)))
    whole, _ = filters.dual_exp_iir(x, a1, a2, b1)
    first, state = filters.dual_exp_iir(x[:6], a1, a2, b1)
    second, _ = filters.dual_exp_iir(x[6:], a1, a2, b1, state)
    np.testing.assert_allclose(np.concatenate([first, second]), np.asarray(whole), rtol=1e-6, atol=1e-7)


def test_dual_exp_iir_scalar_coefficients_broadcast():
    rng = _rng(4)
    x = jnp.asarray(rng.normal(size=(T, B, 4, 7, 2)).astype(np.float32))
    a1, a2, b1 = filters.dual_exp_coefficients(4.0, 1.0)
    y_scalar, _ = filters.dual_exp_iir(x, a1, a2, b1)
    full = lambda c: jnp.full((4, 7, 2), c, jnp.float32)
    y_full, _ = filters.dual_exp_iir(x, full(a1), full(a2), full(b1))
    np.testing.assert_allclose(np.asarray(y_scalar), np.asarray(y_full), rtol=1e-6, atol=1e-7)
    expected = signal.lfilter([b1], [1.0, -a1, -a2], np.asarray(x, np.float64), axis=0)
    np.testing.assert_allclose(np.asarray(y_scalar), expected, rtol=2e-5, atol=2e-6)


def test_dual_exp_iir_float64_is_tight(x64):
    rng = _rng(5)
    x = rng.normal(size=(T, B, 5))
    a1, a2, b1 = _dual_exp_coeffs(rng, (5,))
    y0, y1 = rng.normal(size=(B, 5)), rng.normal(size=(B, 5))
    y, _ = filters.dual_exp_iir(jnp.asarray(x), jnp.asarray(a1), jnp.asarray(a2), jnp.asarray(b1),
                                filters.DualExpState(jnp.asarray(y0), jnp.asarray(y1)))
    assert y.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(y), _loop_dual_exp(x, a1, a2, b1, y0, y1), rtol=1e-12, atol=1e-13)


# ----------------------------------------------------------------------------------------------------------
# first_order_low_pass
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_low_pass_matches_lfilter_and_loop(shape):
    rng = _rng(6)
    x = rng.normal(size=(T, B, *shape)).astype(np.float32)
    a1 = rng.uniform(0.2, 0.95, shape).astype(np.float32)
    y, _ = filters.first_order_low_pass(jnp.asarray(x), jnp.asarray(a1))
    assert y.shape == (T, B, *shape)
    expected = _lfilter_per_element(x, lambda f: [1.0], lambda f: [1.0, -a1[f]])
    np.testing.assert_allclose(np.asarray(y), expected, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(np.asarray(y), _loop_low_pass(x, a1), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_low_pass_nonzero_state(shape):
    rng = _rng(7)
    x = rng.normal(size=(T, B, *shape)).astype(np.float32)
    a1 = rng.uniform(0.2, 0.95, shape).astype(np.float32)
    y0 = rng.normal(size=(B, *shape)).astype(np.float32)
    y, final = filters.first_order_low_pass(jnp.asarray(x), jnp.asarray(a1), filters.LowPassState(jnp.asarray(y0)))
    loop = _loop_low_pass(x, a1, y0)
    np.testing.assert_allclose(np.asarray(y), loop, rtol=2e-5, atol=2e-6)
    zi = lambda bi, f: signal.lfiltic([1.0], [1.0, -a1[f]], y=[y0[(bi, *f)]])
    expected = _lfilter_per_element(x, lambda f: [1.0], lambda f: [1.0, -a1[f]], zi)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(np.asarray(final.y1), loop[-1], rtol=2e-5, atol=2e-6)


def test_low_pass_constants_and_dc_gain():
    # SPEC 1.4: alpha_1 = e^{-1/4} = 0.7788007, DC gain 1 / (1 - alpha_1) = 4.5208.
    a1 = math.exp(-1.0 / 4.0)
    assert abs(a1 - 0.7788007) < 1e-7
    y, _ = filters.first_order_low_pass(jnp.ones((200, 1, 1), jnp.float32), a1)
    assert abs(float(y[-1, 0, 0]) - 4.5208) < 1e-4
    h, _ = filters.first_order_low_pass(_impulse(20), a1)
    np.testing.assert_allclose(np.asarray(h).ravel(), a1 ** np.arange(20), rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------
# dual_exp_output_filter
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_output_filter_matches_single_rational_transfer_function(shape):
    # Independent route: v0 (1/(1 - dm z^-1) - 1/(1 - ds z^-1)) = v0 (dm - ds) z^-1 / ((1 - dm z^-1)(1 - ds z^-1)),
    # i.e. ONE lfilter with b = [0, v0 (dm - ds)], a = [1, -(dm + ds), dm ds], instead of two traces.
    rng = _rng(8)
    x = rng.normal(size=(T, B, *shape)).astype(np.float32)
    dm = rng.uniform(0.6, 0.95, shape).astype(np.float32)
    ds = rng.uniform(0.1, 0.55, shape).astype(np.float32)
    v0 = 2.1165349
    y, _ = filters.dual_exp_output_filter(jnp.asarray(x), jnp.asarray(dm), jnp.asarray(ds), v0)
    b_of = lambda f: [0.0, v0 * (float(dm[f]) - float(ds[f]))]
    a_of = lambda f: [1.0, -(float(dm[f]) + float(ds[f])), float(dm[f]) * float(ds[f])]
    expected = _lfilter_per_element(x, b_of, a_of)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=2e-5, atol=5e-6)
    np.testing.assert_allclose(np.asarray(y[0]), 0.0, atol=1e-6)  # x[0] cancels in m - s at step 0


@pytest.mark.parametrize("shape", SHAPES)
def test_output_filter_nonzero_state_matches_loop(shape):
    rng = _rng(9)
    x = rng.normal(size=(T, B, *shape)).astype(np.float32)
    dm = rng.uniform(0.6, 0.95, shape).astype(np.float32)
    ds = rng.uniform(0.1, 0.55, shape).astype(np.float32)
    m0 = rng.normal(size=(B, *shape)).astype(np.float32)
    s0 = rng.normal(size=(B, *shape)).astype(np.float32)
    v0 = np.float32(1.7)
    y, final = filters.dual_exp_output_filter(jnp.asarray(x), jnp.asarray(dm), jnp.asarray(ds), v0,
                                              filters.OutputFilterState(jnp.asarray(m0), jnp.asarray(s0)))
    loop, m_end, s_end = _loop_output_filter(x, dm, ds, v0, m0, s0)
    np.testing.assert_allclose(np.asarray(y), loop, rtol=2e-5, atol=5e-6)
    np.testing.assert_allclose(np.asarray(final.m), m_end, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(np.asarray(final.s), s_end, rtol=2e-5, atol=2e-6)
    # and through lfilter: each trace is a first-order filter started from lfiltic's zi.
    m_zi = lambda bi, f: signal.lfiltic([1.0], [1.0, -dm[f]], y=[m0[(bi, *f)]])
    s_zi = lambda bi, f: signal.lfiltic([1.0], [1.0, -ds[f]], y=[s0[(bi, *f)]])
    m = _lfilter_per_element(x, lambda f: [1.0], lambda f: [1.0, -dm[f]], m_zi)
    s = _lfilter_per_element(x, lambda f: [1.0], lambda f: [1.0, -ds[f]], s_zi)
    np.testing.assert_allclose(np.asarray(y), float(v0) * (m - s), rtol=2e-5, atol=5e-6)


# ----------------------------------------------------------------------------------------------------------
# SPEC 1.16 constants and golden kernels
# ----------------------------------------------------------------------------------------------------------

SPEC_CONSTANTS = {  # (dm, ds, alpha_1, alpha_2, beta_1, v0): float32 values of the reference
    (4.0, 1.0): (0.7788007, 0.3678794, 1.1466801, -0.2865048, 0.4109213, 2.1165349),
    (8.0, 2.0): (0.8824969, 0.6065307, 1.4890275, -0.5352614, 0.2759662, 2.1165349),
}
SPEC_IIR_IMPULSE = {
    (4.0, 1.0): [.410921, .471195, .422579, .349564, .279767, .220651, .172862, .135000],
    (8.0, 2.0): [.275966, .410921, .464159, .471195, .453176, .422579, .386664, .349564],
}
SPEC_IIR_STEP = {  # t = 0..4 and t = 24
    (4.0, 1.0): [.41092, .88212, 1.30470, 1.65426, 1.93403, 2.93204],
    (8.0, 2.0): [.27597, .68689, 1.15105, 1.62224, 2.07542, 5.63894],
}
SPEC_DC_GAIN = {(4.0, 1.0): 2.9388, (8.0, 2.0): 5.9689}
SPEC_OUTPUT_IMPULSE = {
    (4.0, 1.0): [0, .869729, .997301, .894404, .739864, .592136, .467016, .365868],
    (8.0, 2.0): [0, .584092, .869729, .982409, .997302, .959164, .894404, .818389],
}
TAUS = sorted(SPEC_CONSTANTS)


@pytest.mark.parametrize("taus", TAUS)
def test_coefficients_equal_spec_constants(taus):
    dm, ds, a1, a2, b1, v0 = SPEC_CONSTANTS[taus]
    # SPEC's numbers are float32 computations: allow about one float32 ulp.
    np.testing.assert_allclose(filters.dual_exp_coefficients(*taus), (a1, a2, b1), rtol=0, atol=3e-7)
    assert abs(filters.dual_exp_peak_normaliser(*taus) - v0) < 3e-7
    assert abs(math.exp(-1 / taus[0]) - dm) < 1e-7 and abs(math.exp(-1 / taus[1]) - ds) < 1e-7


@pytest.mark.parametrize("taus", TAUS)
def test_iir_impulse_response_spec_table_and_closed_form(taus):
    a1, a2, b1 = filters.dual_exp_coefficients(*taus)
    h, _ = filters.dual_exp_iir(_impulse(40), a1, a2, b1)
    h = np.asarray(h).ravel()
    np.testing.assert_allclose(h[:8], SPEC_IIR_IMPULSE[taus], rtol=0, atol=1e-6)
    dm, ds = math.exp(-1 / taus[0]), math.exp(-1 / taus[1])
    k = np.arange(40)
    np.testing.assert_allclose(h, dm ** (k + 1) - ds ** (k + 1), rtol=1e-5, atol=1e-7)
    # unnormalised: the peak is about 0.47, not 1 (SPEC 6.2)
    assert abs(h.max() - 0.471195) < 1e-6


@pytest.mark.parametrize("taus", TAUS)
def test_iir_step_response_spec_table_and_dc_gain(taus):
    a1, a2, b1 = filters.dual_exp_coefficients(*taus)
    y, _ = filters.dual_exp_iir(jnp.ones((300, 1, 1), jnp.float32), a1, a2, b1)
    y = np.asarray(y).ravel()
    np.testing.assert_allclose(y[[0, 1, 2, 3, 4, 24]], SPEC_IIR_STEP[taus], rtol=0, atol=1e-5)
    assert abs(y[-1] - SPEC_DC_GAIN[taus]) < 1e-4
    assert abs(b1 / (1 - a1 - a2) - SPEC_DC_GAIN[taus]) < 1e-4


@pytest.mark.parametrize("taus", TAUS)
def test_output_filter_impulse_spec_table_and_peak(taus):
    dm, ds = math.exp(-1 / taus[0]), math.exp(-1 / taus[1])
    v0 = filters.dual_exp_peak_normaliser(*taus)
    a, _ = filters.dual_exp_output_filter(_impulse(60), dm, ds, v0)
    a = np.asarray(a).ravel()
    np.testing.assert_allclose(a[:8], SPEC_OUTPUT_IMPULSE[taus], rtol=0, atol=1.5e-6)
    # the discrete kernel samples the continuous one, whose peak is 1: its own peak is just below 1.
    assert 0.997 < a.max() <= 1.0
    # SPEC 1.5: the IIR kernel is the axon kernel advanced one step and divided by v0.
    b, _ = filters.dual_exp_iir(_impulse(60), *filters.dual_exp_coefficients(*taus))
    np.testing.assert_allclose(np.asarray(b).ravel()[:-1], a[1:] / v0, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("taus", TAUS + [(5.0, 3.0), (20.0, 1.5)])
def test_peak_normaliser_makes_continuous_kernel_peak_one(taus):
    tau_m, tau_s = taus
    v0 = filters.dual_exp_peak_normaliser(tau_m, tau_s)
    t_star = tau_m * tau_s * math.log(tau_m / tau_s) / (tau_m - tau_s)
    kernel = lambda t: v0 * (np.exp(-t / tau_m) - np.exp(-t / tau_s))
    assert kernel(t_star) == pytest.approx(1.0, abs=1e-12)
    t = np.linspace(0, 10 * tau_m, 200_001)
    assert 1.0 - 1e-6 < kernel(t).max() <= 1.0 + 1e-12  # grid spacing 2e-4 * tau_m
    assert abs(t[np.argmax(kernel(t))] - t_star) < 1e-3


@pytest.mark.parametrize("fn", ["dual_exp_iir", "first_order_low_pass", "dual_exp_output_filter"])
def test_pure_filters_promote_event_input(fn):
    # SPEC 1.1: event inputs (N-MNIST, gesture) are bool; the first filter's float coefficients promote them.
    events = np.random.default_rng(10).random((T, B, 5)) < 0.3
    args = {"dual_exp_iir": filters.dual_exp_coefficients(4.0, 1.0),
            "first_order_low_pass": (math.exp(-0.25),),
            "dual_exp_output_filter": (math.exp(-0.25), math.exp(-1.0), 2.0)}[fn]
    y, _ = getattr(filters, fn)(jnp.asarray(events), *args)
    y_float, _ = getattr(filters, fn)(jnp.asarray(events, jnp.float32), *args)
    assert jnp.issubdtype(y.dtype, jnp.floating)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_float), rtol=1e-6)
