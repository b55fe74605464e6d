"""A frame held for T steps (HeldInput, the "copy" encoding) against the same frame repeated T times.

The repeated array runs every filter recurrence over the whole batch; the held frame runs the first filter as
its step response times the frame. In float64 both routes must give the same spikes and, to rounding, the same
states and gradients (the golden check also runs both: tests/test_golden_networks.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from iirsnn_jax import experiments, layers, models
from iirsnn_jax.held_input import HeldInput, as_sequence


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _frame(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(0.0, 3.0, shape))


@pytest.mark.parametrize("make", [
    lambda: layers.DualExpFilter((5,), 6.0, 2.0, dtype=jnp.float64, param_dtype=jnp.float64),
    lambda: layers.LowPassFilter((5,), 4.0, dtype=jnp.float64, param_dtype=jnp.float64)])
@pytest.mark.parametrize("length", [1, 2, 7])
def test_held_filter_equals_the_filter_of_the_repeated_frame(make, length):
    layer = make()
    rng = np.random.default_rng(1)  # per-element coefficients, as trained filters have
    for name in ("alpha_1", "alpha_2", "beta_1"):
        if hasattr(layer, name):
            getattr(layer, name)[...] = getattr(layer, name)[...] * rng.uniform(0.9, 1.1, 5)
    frame = _frame((3, 5))
    cotangent = _frame((length, 3, 5), seed=2)
    graphdef, params = nnx.split(layer, nnx.Param)

    def run(params, held):
        filt = nnx.merge(graphdef, params)
        y, state = (filt.held(frame, length) if held
                    else filt(jnp.broadcast_to(frame, (length, *frame.shape))))
        return jnp.sum(y * cotangent) + sum(jnp.sum(s * (k + 2)) for k, s in enumerate(state)), (y, state)

    (_, (y_held, s_held)), g_held = jax.value_and_grad(run, has_aux=True)(params, True)
    (_, (y_rep, s_rep)), g_rep = jax.value_and_grad(run, has_aux=True)(params, False)
    np.testing.assert_allclose(y_held, y_rep, rtol=1e-13, atol=1e-13)
    assert type(s_held) is type(s_rep)
    for a, b in zip(s_held, s_rep):  # with length 1, y[T-2] is the zero initial state
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    for a, b in zip(jax.tree.leaves(g_held), jax.tree.leaves(g_rep)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.fixture
def held_calls(monkeypatch):
    """How many times a network took the step-response route (layers.SynapseFilter.held)."""
    calls = []
    original = layers.SynapseFilter.held
    monkeypatch.setattr(layers.SynapseFilter, "held", lambda self, *a: calls.append(1) or original(self, *a))
    return calls


def _network(layer_string, remat="none"):
    cfg = experiments.load_config("snn_mlp_1")
    cfg.model.layers, cfg.model.input_shape = layer_string, (12,)
    cfg.model.dtype = cfg.model.param_dtype = "float64"
    cfg.model.remat, cfg.model.remat_chunk = remat, 3
    return models.build_model(cfg.model, seed=0)


@pytest.mark.parametrize("layer_string", ["F N(20) D F N(6)", "L N(20) D L N(6)"])
def test_network_on_a_held_frame_equals_the_repeated_input(layer_string, held_calls):
    """Forward (spikes of every layer, rates, final states) and gradients of every parameter, dropout on."""
    model = _network(layer_string)
    held = HeldInput(_frame((5, 4, 3)) * 4, 9)  # B=5, T=9, S=(4, 3): reshaped row-major to 12 features
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params, inputs):
        out = nnx.merge(graphdef, params, rest)(inputs, key=jax.random.key(3))
        weights = jnp.arange(1, out.spikes.shape[1] + 1)[None, :, None]
        return jnp.sum(out.spikes * weights) + sum(jnp.sum(r) for r in out.spike_rates.values()), out

    (la, a), ga = jax.value_and_grad(loss, has_aux=True)(params, held)
    assert len(held_calls) == 1, "the held frame must take the step-response route"
    (lb, b), gb = jax.value_and_grad(loss, has_aux=True)(params, held.repeated())
    assert len(held_calls) == 1
    assert a.layer_spikes["dense1"].mean() > 0.05 and a.spikes.sum() > 0, "a silent network proves nothing"
    for name in b.layer_spikes:
        np.testing.assert_array_equal(a.layer_spikes[name], b.layer_spikes[name], err_msg=name)
    np.testing.assert_allclose(la, lb, rtol=1e-14)
    for x, y in zip(jax.tree.leaves(a.state), jax.tree.leaves(b.state)):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)
    leaves_a, leaves_b = jax.tree.leaves(ga), jax.tree.leaves(gb)
    assert any(float(jnp.abs(g).max()) > 0 for g in leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ["no first filter", "carried state", "rematerialised"])
def test_a_held_frame_is_repeated_where_the_step_response_does_not_apply(case, held_calls):
    """A first layer that is not a filter, a non-zero first state and chunked rematerialisation each take the
    repeated frame: the outputs equal the repeated input's exactly."""
    layer_string = "N(20) D F N(6)" if case == "no first filter" else "F N(20) D F N(6)"
    model = _network(layer_string, remat="full" if case == "rematerialised" else "none")
    held = HeldInput(_frame((5, 12)) * 4, 9)
    state = None
    if case == "carried state":
        state = model(held.repeated()).state
        assert float(jnp.abs(state[0].y1).max()) > 0
    a, b = model(held, state=state), model(held.repeated(), state=state)
    assert not held_calls
    for name in b.layer_spikes:
        np.testing.assert_array_equal(a.layer_spikes[name], b.layer_spikes[name], err_msg=name)
    for x, y in zip(jax.tree.leaves(a.state), jax.tree.leaves(b.state)):
        np.testing.assert_array_equal(x, y)


def test_held_input_is_a_pytree_with_a_static_length():
    held = HeldInput(_frame((2, 3)), 4)
    assert held.shape == (2, 4, 3)
    assert jax.tree.leaves(held) == [held.frame]
    out = jax.jit(lambda h: HeldInput(h.frame * 2, h.length))(held)  # the length survives jit as an int
    assert out.length == 4 and isinstance(out.length, int)
    np.testing.assert_array_equal(as_sequence(out), np.broadcast_to(np.asarray(held.frame)[:, None] * 2, (2, 4, 3)))
    plain = jnp.zeros((2, 4, 3))
    assert as_sequence(plain) is plain
