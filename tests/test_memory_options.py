"""The memory options change memory and time, never the result.

- model.remat / model.remat_chunk (iirsnn_jax/models.py): the network in chunks of time steps under
  jax.checkpoint gives the same spikes, losses and gradients as one pass over the whole sequence.
- train.microbatches (iirsnn_jax/training/steps.py): accumulating the gradient over slices of the batch
  gives the same update as the whole batch.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from iirsnn_jax import experiments, models
from iirsnn_jax.training import optimizer as optimizer_lib, steps

T, B = 12, 4


def _model_config(layers, input_shape, **model):
    config = experiments.load_config("snn_conv_1_nmnist").model
    config.layers, config.input_shape = layers, input_shape
    for key, value in model.items():
        setattr(config, key, value)
    return config


NETWORKS = {
    "conv_pool": ("F C(4,3,1,1) F P(2,2,1) F C(5,3,2,0) flat F N(6)", (6, 6, 2)),
    "dense_output_filter": ("F N(7) F N(3) O", (5,)),
}


def _build(config, seed):
    """The network with its weights scaled up, so that every layer fires on the short test input."""
    model = models.build_model(config, seed=seed)
    for layer in model.layers:
        if hasattr(layer, "kernel"):
            layer.kernel[...] = layer.kernel[...] * 6.0
    return model


def _loss_and_grads(model, x):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params):
        out = nnx.merge(graphdef, params, rest)(x)
        value = jnp.sum(out.spikes * jnp.arange(out.spikes.shape[-1]))
        if out.filtered is not None:
            value = value + jnp.sum(out.filtered ** 2)
        return value, out

    (value, out), grads = jax.value_and_grad(loss, has_aux=True)(params)
    return value, out, grads


@pytest.mark.parametrize("network", sorted(NETWORKS))
@pytest.mark.parametrize("remat,chunk", [("scans", 4), ("full", 3), ("full", 0)])
def test_rematerialised_network_equals_the_plain_one(network, remat, chunk):
    layers, shape = NETWORKS[network]
    x = (jax.random.uniform(jax.random.key(1), (B, T, *shape)) < 0.5).astype(jnp.float32) * 3.0
    plain = _build(_model_config(layers, shape), seed=2)
    chunked = _build(_model_config(layers, shape, remat=remat, remat_chunk=chunk), seed=2)
    value_a, out_a, grads_a = _loss_and_grads(plain, x)
    value_b, out_b, grads_b = _loss_and_grads(chunked, x)
    assert all(0.02 < float(rate.mean()) < 0.9 for rate in out_a.spike_rates.values()), out_a.spike_rates
    for name in out_a.layer_spikes:
        np.testing.assert_array_equal(out_a.layer_spikes[name], out_b.layer_spikes[name])
        np.testing.assert_allclose(out_a.spike_rates[name], out_b.spike_rates[name], rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), out_a.state, out_b.state)
    np.testing.assert_allclose(value_a, value_b, rtol=1e-6)
    flat_a, flat_b = jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)
    assert any(np.abs(g).max() > 0 for g in flat_a)
    for a, b in zip(flat_a, flat_b):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(a).max())


def test_spike_rates_are_the_mean_of_the_layer_spikes():
    layers, shape = NETWORKS["conv_pool"]
    x = (jax.random.uniform(jax.random.key(3), (B, T, *shape)) < 0.5).astype(jnp.float32) * 3.0
    out = _build(_model_config(layers, shape), seed=0)(x)
    for name, spikes in out.layer_spikes.items():
        np.testing.assert_allclose(out.spike_rates[name], np.asarray(spikes).reshape(B, -1).mean(axis=1), rtol=1e-6)


def test_remat_options_are_checked():
    layers, shape = NETWORKS["dense_output_filter"]
    with pytest.raises(ValueError, match="model.remat must be one of"):
        models.build_model(_model_config(layers, shape, remat="everything"))
    model = models.build_model(_model_config(layers, shape, remat="full", remat_chunk=5))
    with pytest.raises(ValueError, match="remat_chunk=5 must divide the sequence length T=12"):
        model(jnp.zeros((B, T, *shape)))


def _one_step(config, microbatches, batch):
    model = models.build_model(config.model, seed=4)
    optimizer = optimizer_lib.make_optimizer(config.train, steps_per_epoch=10)
    graphdef, state = steps.create_train_state(model, optimizer, batch["mask"].shape[0])
    step = jax.jit(steps.make_train_step(graphdef, optimizer, config.train.loss, 0, microbatches))
    return step(state, batch)


@pytest.mark.parametrize("preserve_state", [False, True])
def test_microbatches_give_the_same_update(preserve_state):
    config = experiments.load_config("test")
    config.model.layers = "F N(16) F N(10)"  # no dropout: its masks are drawn per microbatch
    config.model.preserve_state = preserve_state
    rng = np.random.default_rng(5)
    batch = {"input": rng.random((12, 6, 64), dtype=np.float32) * 2, "label": rng.integers(0, 10, 12).astype(np.int32),
             "mask": np.array([1.0] * 10 + [0.0] * 2, np.float32)}  # two padded rows
    whole, sums_whole = _one_step(config, 1, batch)
    parts, sums_parts = _one_step(config, 3, batch)
    assert float(sums_whole["loss_sum"]) > 0
    for key in sums_whole:
        np.testing.assert_allclose(sums_parts[key], sums_whole[key], rtol=1e-5, err_msg=key)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), whole.params, parts.params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-9), whole.opt_state, parts.opt_state)
    if preserve_state:
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), whole.carry, parts.carry)
        assert any(np.abs(np.asarray(c)).max() > 0 for c in jax.tree.leaves(parts.carry))


def test_microbatches_must_divide_the_batch():
    config = experiments.load_config("test")
    batch = {"input": np.zeros((10, 6, 64), np.float32), "label": np.zeros(10, np.int32), "mask": np.ones(10, np.float32)}
    with pytest.raises(ValueError, match="train.microbatches=3 must divide the batch size 10"):
        _one_step(config, 3, batch)
