"""Gradients in float64 against independent routes.

Spikes are discontinuous, so finite differences of the true loss cannot check surrogate gradients. Instead:
  (a) the filters alone are smooth (linear in x and polynomial in the coefficients): jax.grad vs central
      finite differences, w.r.t. input, every per-element coefficient and the initial state;
  (b) whole networks with the spike replaced by a smooth stand-in (forward sigmoid((v - threshold)/width),
      backward its true derivative): jax.grad w.r.t. every parameter and the input vs finite differences.
      This checks the BPTT structure (filters, weights, pooling, reset path r, time) end to end; a mutant
      neuron with a detached reset is shown to fail the same comparison;
  (c) the real surrogate through one neuron layer vs a hand-written numpy backward pass (BPTT through r,
      SPEC 1.7 / 6.15).
Every test here runs inside `jax.enable_x64(True)` (an autouse fixture), which is restored afterwards.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

import autodiff_neuron
from iirsnn_jax import experiments, filters, models, neurons, surrogate

T, B, N = 11, 2, 5


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _central_fd(f, flat, eps=1e-6):
    """Central differences of scalar f at every coordinate of the 1-D float64 vector flat, in one vmapped call."""
    eye = np.eye(flat.size)
    batched = jax.jit(jax.vmap(f))
    plus = np.asarray(batched(jnp.asarray(flat[None] + eps * eye)))
    minus = np.asarray(batched(jnp.asarray(flat[None] - eps * eye)))
    return (plus - minus) / (2 * eps)


def _check_against_fd(f, args, rtol=1e-6):
    """jax.grad of f(*args) w.r.t. every array in args vs central finite differences."""
    flat, unravel = ravel_pytree([jnp.asarray(a, jnp.float64) for a in args])
    flat_f = lambda v: f(*unravel(v))
    analytic = np.asarray(jax.grad(flat_f)(flat))
    numeric = _central_fd(flat_f, np.asarray(flat))
    scale = np.abs(analytic).max()
    assert scale > 0
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=rtol * scale)
    return analytic


# ----------------------------------------------------------------------------------------------------------
# (a) filters
# ----------------------------------------------------------------------------------------------------------


LENGTHS = [1, 2, 3, 11]  # T = 1 and 2: the final state (y[T-1], y[T-2]) reaches back into the initial state


@pytest.mark.parametrize("scan", ["sequential", "associative"])
@pytest.mark.parametrize("length", LENGTHS)
def test_dual_exp_iir_gradients_vs_fd(length, scan):
    rng = np.random.default_rng(40)
    x = rng.normal(size=(length, B, N))
    a1, a2, b1 = rng.uniform(0.3, 1.1, N), rng.uniform(-0.45, -0.05, N), rng.uniform(0.1, 0.9, N)
    y1, y2 = rng.normal(size=(B, N)), rng.normal(size=(B, N))
    w, wy = rng.normal(size=(length, B, N)), rng.normal(size=(B, N))

    def loss(x, a1, a2, b1, y1, y2):
        y, final = filters.dual_exp_iir(x, a1, a2, b1, filters.DualExpState(y1, y2), scan=scan)
        # y**2 makes the loss nonlinear in x; both parts of the final state carry a cotangent of their own
        return jnp.sum(w * y ** 2) + jnp.sum(wy * final.y2) + jnp.sum(wy ** 2 * final.y1)

    _check_against_fd(loss, (x, a1, a2, b1, y1, y2))


@pytest.mark.parametrize("scan", ["sequential", "associative"])
@pytest.mark.parametrize("length", LENGTHS)
def test_low_pass_gradients_vs_fd(length, scan):
    rng = np.random.default_rng(41)
    x, a1, y0 = rng.normal(size=(length, B, 4, 3, 2)), rng.uniform(0.2, 0.95, (4, 3, 2)), rng.normal(size=(B, 4, 3, 2))
    w, wy = rng.normal(size=x.shape), rng.normal(size=y0.shape)

    def loss(x, a1, y0):
        y, final = filters.first_order_low_pass(x, a1, filters.LowPassState(y0), scan=scan)
        return jnp.sum(w * jnp.sin(y)) + jnp.sum(wy * final.y1 ** 2)

    _check_against_fd(loss, (x, a1, y0))


@pytest.mark.parametrize("length", LENGTHS)
def test_batch_major_filter_gradients_vs_fd(length):
    # A network's first filter reads its batch-major input [B, T, *F] in place (time_axis=1).
    rng = np.random.default_rng(45)
    x = rng.normal(size=(B, length, N))
    a1, a2, b1 = rng.uniform(0.3, 1.1, N), rng.uniform(-0.45, -0.05, N), rng.uniform(0.1, 0.9, N)
    w = rng.normal(size=(length, B, N))

    def loss(x, a1, a2, b1):
        y, final = filters.dual_exp_iir(x, a1, a2, b1, time_axis=1)
        return jnp.sum(w * y ** 2) + jnp.sum(final.y2 * final.y1)

    _check_against_fd(loss, (x, a1, a2, b1))


def test_output_filter_gradients_vs_fd():
    rng = np.random.default_rng(42)
    x = rng.normal(size=(T, B, N))
    dm, ds, v0 = rng.uniform(0.6, 0.95, N), rng.uniform(0.1, 0.55, N), rng.uniform(1.5, 2.5, N)
    m0, s0 = rng.normal(size=(B, N)), rng.normal(size=(B, N))
    w = rng.normal(size=x.shape)

    def loss(x, dm, ds, v0, m0, s0):
        y, final = filters.dual_exp_output_filter(x, dm, ds, v0, filters.OutputFilterState(m0, s0))
        return jnp.sum(w * y ** 2) + jnp.sum(final.m * final.s)

    _check_against_fd(loss, (x, dm, ds, v0, m0, s0))


# ----------------------------------------------------------------------------------------------------------
# (b) whole networks with a smooth stand-in for the spike
# ----------------------------------------------------------------------------------------------------------


def _smooth_heaviside(v, threshold):
    return jax.nn.sigmoid((v - threshold) / SMOOTH_WIDTH)


def _smooth_slope(v, threshold, name, width):
    sig = jax.nn.sigmoid((v - threshold) / SMOOTH_WIDTH)
    return sig * (1.0 - sig) / SMOOTH_WIDTH


SMOOTH_WIDTH = 0.3


def _smooth_spike(monkeypatch):
    """The spike's two halves (surrogate.heaviside forward, surrogate.slope backward) become a sigmoid and its
    true derivative, everywhere: the hand-written scans of neurons.py and surrogate.spike call both."""
    monkeypatch.setattr(surrogate, "heaviside", _smooth_heaviside)
    monkeypatch.setattr(surrogate, "slope", _smooth_slope)


NETWORKS = {  # each spiking layer but the last shares its scan with the next filter (and dropout): neurons.py
    "dense": dict(layers="F N(4) F N(3)", input_shape=(5,)),
    "dense_associative": dict(layers="F N(4) F N(3)", input_shape=(5,), scan="associative"),
    "conv": dict(layers="F C(2,3,1,1) F P(2,2,1) flat F N(3)", input_shape=(6, 6, 1)),
    "lowpass_membrane_output": dict(layers="L N(4) D L N(3) O", input_shape=(5,), membrane_filter=True),
    "dropout": dict(layers="F N(6) D F N(3)", input_shape=(5,)),  # called with a key: masks drawn once
}


@functools.lru_cache(maxsize=None)
def _network_loss(name, seed=0):
    """(loss(flat_params, x), flat_params, x, unravel) for a float64 network; the loss weighs every output spike
    and, with an output filter, every filtered value, by fixed random numbers. Built once per name (x64 only).
    The spike function is looked up when the loss is traced, so a monkeypatched spike takes effect."""
    assert jax.config.jax_enable_x64
    cfg = experiments.load_config("snn_mlp_1").model
    for key, value in NETWORKS[name].items():
        setattr(cfg, key, value)
    cfg.dtype = cfg.param_dtype = "float64"
    cfg.surrogate_width = 0.3
    cfg.cpu_kernel = "xla"  # the monkeypatched spike is Python: the compiled CPU kernel has the real one
    model = models.build_model(cfg, seed=seed)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    flat, unravel = ravel_pytree(params)
    rng = np.random.default_rng(43 + seed)
    x = rng.uniform(0.0, 1.5, size=(B, T, *cfg.input_shape))
    n_out = model.output_shape[0]
    w_spikes = rng.normal(size=(B, T, n_out))
    w_filtered = rng.normal(size=(B, T, n_out))

    key = jax.random.key(7) if name == "dropout" else None

    def loss(flat_params, inputs):
        out = nnx.merge(graphdef, unravel(flat_params), rest)(inputs, key=key)
        total = jnp.sum(w_spikes * out.spikes)
        if out.filtered is not None:
            total = total + jnp.sum(w_filtered * out.filtered)
        return total

    return loss, np.asarray(flat), x, unravel


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_network_gradients_with_smooth_spike_vs_fd(name, monkeypatch):
    _smooth_spike(monkeypatch)
    loss, flat, x, unravel = _network_loss(name)
    # all parameters and the input at once
    n_p = flat.size
    both = np.concatenate([flat, x.ravel()])
    f = lambda v: loss(v[:n_p], v[n_p:].reshape(x.shape))
    analytic = np.asarray(jax.jit(jax.grad(f))(jnp.asarray(both)))
    numeric = _central_fd(f, both)
    scale = np.abs(analytic).max()
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6 * scale)
    # every parameter tensor and most inputs receive gradient (single elements may legitimately get none,
    # e.g. filter coefficients at positions max-pooling never selects)
    _assert_every_leaf_has_gradient(unravel(jnp.asarray(analytic[:n_p])))
    assert np.count_nonzero(analytic[n_p:]) > 0.9 * x.size


def _assert_every_leaf_has_gradient(grads):
    flat_state = nnx.to_flat_state(grads)
    assert len(flat_state) > 0
    for path, leaf in flat_state:
        value = np.asarray(leaf[...] if hasattr(leaf, "get_value") else leaf)
        assert np.all(np.isfinite(value)), path
        assert np.any(value != 0), f"no gradient reaches {path}"


def test_detached_reset_fails_the_fd_comparison(monkeypatch):
    # The check above can fail for the right reason: cut the gradient through r and it no longer matches.
    _smooth_spike(monkeypatch)
    loss, flat, x, _ = _network_loss("dense")
    numeric = _central_fd(lambda p: loss(p, x), flat)
    good = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(flat), x))
    np.testing.assert_allclose(good, numeric, rtol=1e-6, atol=1e-6 * np.abs(good).max())
    # the autodiff route of the spiking scan is right too, until its reset is detached
    monkeypatch.setattr(neurons, "spiking_scan", autodiff_neuron.autodiff_scan)
    same = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(flat), x))
    np.testing.assert_allclose(same, numeric, rtol=1e-6, atol=1e-6 * np.abs(good).max())
    monkeypatch.setattr(neurons, "spiking_scan", functools.partial(autodiff_neuron.autodiff_scan, detach_reset=True))
    bad = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(flat), x))
    assert np.abs(bad - numeric).max() > 1e-3 * np.abs(numeric).max()


@pytest.mark.parametrize("name", ["dense", "conv"])
def test_real_surrogate_reaches_every_parameter(name):
    loss, flat, x, unravel = _network_loss(name)
    g = jax.jit(jax.grad(loss))(jnp.asarray(flat), x)
    _assert_every_leaf_has_gradient(unravel(g))


# ----------------------------------------------------------------------------------------------------------
# (c) the real surrogate through one neuron layer vs a hand-written BPTT in numpy
# ----------------------------------------------------------------------------------------------------------

SURROGATE_DERIVATIVE = {
    "gaussian": lambda x, w: np.exp(-(x ** 2) / (2 * w ** 2)) / (2.506628 * w),
    "atan": lambda x, w: (1.0 / w) / (1.0 + (np.pi * x / (2 * w)) ** 2) / 2,
}


def _numpy_bptt(current, c, v_init, r_init, *, reset_decay, reset_v, decay_v, membrane_filter, name, width):
    """Forward SPEC 1.7 and backward by hand for L = sum_t c[t] s[t]; returns dL/dI, dL/dv[-1], dL/dr[-1].

    v[t] = (decay_v v[t-1]) + I[t] - r[t-1];  s[t] = H(v[t] - 1) with ds/dv := g(v - 1);
    r[t] = reset_decay r[t-1] + reset_v s[t].
    Adjoints, with gv[T] = gr[T] = 0:
      gr[t] = reset_decay gr[t+1] - gv[t+1]            (r[t] enters r[t+1] and, negated, v[t+1])
      gs[t] = c[t] + reset_v gr[t]
      gv[t] = g(v[t] - 1) gs[t] + decay_v gv[t+1]      (last term only with the membrane filter)
      dL/dI[t] = gv[t];  dL/dv[-1] = decay_v gv[0] (membrane filter) ;  dL/dr[-1] = reset_decay gr[0] - gv[0].
    """
    steps = current.shape[0]
    g = SURROGATE_DERIVATIVE[name]
    mf = 1.0 if membrane_filter else 0.0
    v = np.zeros_like(current)
    v_prev, r_prev = v_init, r_init
    for t in range(steps):
        v[t] = mf * decay_v * v_prev + current[t] - r_prev
        s = (v[t] > 1.0).astype(np.float64)
        r_prev, v_prev = reset_decay * r_prev + reset_v * s, v[t]
    gv_next, gr_next = np.zeros_like(v_init), np.zeros_like(r_init)
    grad_i = np.zeros_like(current)
    for t in reversed(range(steps)):
        gr = reset_decay * gr_next - gv_next
        gs = c[t] + reset_v * gr
        gv = g(v[t] - 1.0, width) * gs + mf * decay_v * gv_next
        grad_i[t] = gv
        gv_next, gr_next = gv, gr
    return grad_i, mf * decay_v * gv_next, reset_decay * gr_next - gv_next


@pytest.mark.parametrize("membrane_filter", [False, True])
@pytest.mark.parametrize("name", sorted(SURROGATE_DERIVATIVE))
def test_neuron_bptt_matches_hand_written_backward(membrane_filter, name):
    steps, batch, n = 17, 2, 3
    rng = np.random.default_rng(44)
    current = rng.uniform(0.3, 2.2, size=(steps, batch, n))
    c = rng.normal(size=(steps, batch, n))
    v_init, r_init = rng.uniform(-0.5, 0.5, (batch, n)), rng.uniform(0.0, 1.5, (batch, n))
    reset_decay, reset_v, decay_v = math.exp(-1 / 4), 1.0, math.exp(-1 / 4)
    width = 0.4

    def loss(current, v_init, r_init):
        s, _ = neurons.spiking_neuron(current, neurons.NeuronState(v_init, r_init), reset_decay=reset_decay,
                                      reset_v=reset_v, decay_v=decay_v, membrane_filter=membrane_filter,
                                      surrogate_name=name, surrogate_width=width)
        return jnp.sum(c * s)

    got = jax.grad(loss, argnums=(0, 1, 2))(jnp.asarray(current), jnp.asarray(v_init), jnp.asarray(r_init))
    expected = _numpy_bptt(current, c, v_init, r_init, reset_decay=reset_decay, reset_v=reset_v, decay_v=decay_v,
                           membrane_filter=membrane_filter, name=name, width=width)
    for g_jax, g_np in zip(got, expected):
        np.testing.assert_allclose(np.asarray(g_jax), g_np, rtol=1e-6, atol=1e-9)
    # the recurrent paths matter here: the purely local gradient g(v[t] - 1) c[t] is clearly different
    v = _potentials(current, v_init, r_init, reset_decay, decay_v, membrane_filter)
    local = SURROGATE_DERIVATIVE[name](v - 1.0, width) * c
    assert np.abs(expected[0] - local).max() > 1e-2


def _potentials(current, v_init, r_init, reset_decay, decay_v, membrane_filter):
    v = np.zeros_like(current)
    v_prev, r_prev = v_init, r_init
    for t in range(current.shape[0]):
        v[t] = (decay_v * v_prev if membrane_filter else 0.0) + current[t] - r_prev
        r_prev, v_prev = reset_decay * r_prev + (v[t] > 1.0), v[t]
    return v


def test_x64_is_on_here_only():
    assert jnp.zeros(1).dtype == jnp.float64  # the autouse fixture; it is restored after each test
