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


@pytest.mark.parametrize("layers, shape, passes", [
    ("F N(20) D F N(12) D F N(5)", (12,), ((0,), (1, 2, 3), (4, 5, 6), (7,))),
    ("F C(3,3,1,1) F P(2,2,1) F C(4,3,1,1) F P(2,2,0) flat F N(5)", (6, 6, 2),
     ((0,), (1, None, 2, 3), (4,), (5, None, 6, 7), (8,), (9,), (10,))),
    ("F C(3,3,1,1) F P(3,3,0) flat F N(5)", (6, 6, 2), ((0,), (1, None, 2), (3,), (4,), (5,), (6,))),  # 3x3 pool
])
def test_fused_passes_equal_the_layers_one_by_one(layers, shape, passes):
    """A spiking layer, its dropout and the next filter run as one scan; the layers' own calls, one after the
    other (spikes as an array in between), give the same spikes, states and, to float rounding, gradients."""
    from flax import nnx

    cfg = experiments.load_config("snn_mlp_1")
    cfg.model.layers, cfg.model.input_shape = layers, shape
    model = models.build_model(cfg.model, seed=1)
    for layer in model.layers:  # fire on a short input
        if hasattr(layer, "kernel"):
            layer.kernel[...] = layer.kernel[...] * 4.0
    assert model.passes == passes
    x = jax.random.uniform(jax.random.key(2), (3, 7, *shape)) * 2
    key = jax.random.key(4)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def fused(params):
        out = nnx.merge(graphdef, params, rest)(x, key=key)
        return jnp.sum(out.spikes * jnp.arange(5.0)), out

    def one_by_one(params):
        net = nnx.merge(graphdef, params, rest)
        h, states = jnp.moveaxis(x, 1, 0), []
        for index, layer in enumerate(net.layers):
            h, state = layer(h, key=jax.random.fold_in(key, index))
            states.append(state)
        return jnp.sum(jnp.moveaxis(h, 0, 1) * jnp.arange(5.0)), (jnp.moveaxis(h, 0, 1), states)

    (value, out), grads = jax.value_and_grad(fused, has_aux=True)(params)
    (value_1, (spikes_1, states_1)), grads_1 = jax.value_and_grad(one_by_one, has_aux=True)(params)
    assert 0 < float(out.spikes.mean()) < 1
    np.testing.assert_array_equal(out.spikes, spikes_1)
    jax.tree.map(np.testing.assert_array_equal, out.state, tuple(states_1))
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_1)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(1e-30, float(np.abs(b).max())))
    assert any(float(np.abs(g).max()) > 0 for g in jax.tree.leaves(grads))
