"""SpikingNetwork behaviour users rely on: carried state, dropout modes, input checks, jit."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iirsnn_jax import experiments, models


@pytest.fixture(scope="module")
def small():
    cfg = experiments.load_config("snn_mlp_1_non_zero")
    cfg.model.layers = "F N(20) D F N(5)"
    cfg.model.input_shape = (12,)
    model = models.build_model(cfg.model, seed=0)
    x = jax.random.uniform(jax.random.key(0), (3, 9, 12)) * 20  # B=3, T=9, N=12: distinct sizes
    return model, x


def test_zero_state_equals_no_state(small):
    model, x = small
    a, b = model(x), model(x, state=model.initial_state(3))
    np.testing.assert_array_equal(a.spikes, b.spikes)


def test_carried_state_continues_the_sequence(small):
    """Two calls with the state carried equal one call on the concatenated sequence (SPEC 2.2)."""
    model, x = small
    full = model(jnp.concatenate([x, x], axis=1))
    first = model(x)
    second = model(x, state=first.state)
    assert full.layer_spikes["dense1"].mean() > 0.05 and full.spikes.sum() > 0
    np.testing.assert_array_equal(full.spikes[:, 9:], second.spikes)
    assert not np.array_equal(second.spikes, first.spikes), "the carried state must change the output"


def test_no_gradient_flows_into_the_carried_state(small):
    model, x = small
    state = model(x).state
    grads = jax.grad(lambda s: model(x, state=s).layer_spikes["dense1"].sum())(state)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))


def test_dropout_only_with_a_key(small):
    model, x = small
    eval_a, eval_b = model(x), model(x)
    np.testing.assert_array_equal(eval_a.spikes, eval_b.spikes)
    train_1 = model(x, key=jax.random.key(1)).layer_spikes
    train_2 = model(x, key=jax.random.key(2)).layer_spikes
    # dropout sits between dense1 and axon2: dense1 is unaffected, everything after differs between keys.
    np.testing.assert_array_equal(train_1["dense1"], eval_a.layer_spikes["dense1"])
    assert not np.array_equal(train_1["dense2"], train_2["dense2"])


def test_wrong_input_size_is_a_clear_error(small):
    model, _ = small
    with pytest.raises(ValueError, match=r"\(12,\)"):
        model(jnp.zeros((2, 5, 13)))


def test_images_feed_a_flat_network_row_major(small):
    model, x = small
    np.testing.assert_array_equal(model(x.reshape(3, 9, 3, 4, 1)).spikes, model(x).spikes)


def test_jit_matches_eager(small):
    model, x = small
    from flax import nnx

    graphdef, state = nnx.split(model)
    jitted = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x).spikes)
    np.testing.assert_array_equal(jitted(state, x), model(x).spikes)


def test_unknown_spatial_order_is_rejected():
    cfg = experiments.load_config("snn_mlp_1")
    cfg.model.reference_spatial_order = "yx"
    with pytest.raises(ValueError, match="reference_spatial_order"):
        models.build_model(cfg.model)
