"""model.dtype = bfloat16: only the dense/conv operands are bfloat16; filters, neurons, their states,
coefficients and gradient accumulators stay float32 (issue 11, defect 6)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from iirsnn_jax import experiments, layers, models, surrogate

BF16_ROUNDOFF = 2.0 ** -9  # unit roundoff of bfloat16 (8 significant bits, round to nearest)


@pytest.mark.parametrize("layer_type", ["F", "L"])
def test_filter_layers_in_bfloat16_mode_compute_in_float32(layer_type):
    make = {"F": lambda **kw: layers.DualExpFilter((5, 3), 4.0, 1.0, **kw),
            "L": lambda **kw: layers.LowPassFilter((5, 3), 4.0, **kw)}[layer_type]
    low, full = make(dtype=jnp.bfloat16, param_dtype=jnp.bfloat16), make()
    coefficients = jax.tree.leaves(nnx.state(low, nnx.Param))
    assert coefficients and all(c.dtype == jnp.float32 for c in coefficients)
    assert bool(jnp.all(low.alpha_1[...] + 1e-4 != low.alpha_1[...]))  # a step of 1e-4 near 1.15 stays visible
    assert all(s.dtype == jnp.float32 for s in low.initial_state(2))
    x = jax.random.uniform(jax.random.key(0), (9, 2, 5, 3)).astype(jnp.bfloat16)
    y_low, state_low = low(x)
    y_full, state_full = full(x.astype(jnp.float32))
    assert y_low.dtype == jnp.float32
    np.testing.assert_array_equal(y_low, y_full)
    jax.tree.map(np.testing.assert_array_equal, state_low, state_full)


def test_spiking_layers_in_bfloat16_mode_keep_float32_neurons():
    layer = layers.SpikingDense(6, 4, tau_m=4.0, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16,
                                rngs=nnx.Rngs(params=0))
    assert layer.kernel[...].dtype == jnp.bfloat16  # weights follow param_dtype
    assert layer.reset_decay[...].dtype == jnp.float32
    assert all(s.dtype == jnp.float32 for s in layer.initial_state(3))
    spikes, state = layer(jnp.ones((5, 3, 6), jnp.float32) * 2)
    assert spikes.dtype == jnp.float32 and state.v.dtype == jnp.float32 and state.r.dtype == jnp.float32


def _loss_and_grads(dtype, x, labels):
    cfg = experiments.load_config("snn_mlp_1").model
    cfg.layers, cfg.input_shape, cfg.dtype = "F N(48) D F N(10)", (40,), dtype
    cfg.cpu_kernel = "xla"  # the smooth spike of the test below is monkeypatched Python
    model = models.build_model(cfg, seed=3)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params):
        out = nnx.merge(graphdef, params, rest)(x, key=jax.random.key(5))
        counts = out.spikes.astype(jnp.float32).sum(axis=1)
        return optax.softmax_cross_entropy_with_integer_labels(counts, labels).mean()

    return jax.value_and_grad(loss)(params)


def test_bfloat16_network_matches_float32_to_its_rounding(monkeypatch):
    """With a smooth spike (sigmoid forward, its derivative backward) the network is a smooth function of its
    currents, so bfloat16 operands change the loss and gradients by a small multiple of bfloat16's roundoff
    u = 2^-9: each operand of the two dense layers is rounded once (relative error <= u, 4 roundings on a
    path), the products accumulate in float32, and everything after the matmuls is float32. We allow 8u
    (1.6 %) on the loss and on each gradient tensor's norm-wise error. Had the filters run in bfloat16, their
    outputs would also be rounded at every one of the T steps and amplified by the DC gain (~2.9)."""
    monkeypatch.setattr(surrogate, "heaviside", lambda v, threshold: jax.nn.sigmoid((v - threshold) / 0.3))
    monkeypatch.setattr(surrogate, "slope", lambda v, threshold, name, width: jax.nn.sigmoid(
        (v - threshold) / 0.3) * (1 - jax.nn.sigmoid((v - threshold) / 0.3)) / 0.3)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0, 1, (16, 12, 40)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, 16))
    loss_low, grads_low = _loss_and_grads("bfloat16", x, labels)
    loss_full, grads_full = _loss_and_grads("float32", x, labels)
    tolerance = 8 * BF16_ROUNDOFF
    assert abs(float(loss_low) - float(loss_full)) <= tolerance * abs(float(loss_full))
    flat_low, flat_full = nnx.to_flat_state(grads_low), nnx.to_flat_state(grads_full)
    for (path, low), (_, full) in zip(flat_low, flat_full):
        low, full = np.asarray(low[...], np.float64), np.asarray(full[...], np.float64)
        assert low.dtype == full.dtype
        assert np.linalg.norm(full) > 0, path
        assert np.linalg.norm(low - full) <= tolerance * np.linalg.norm(full), path  # measured: at most 1.4u
    # the filter coefficients' gradients are float32 arrays (accumulated in float32)
    assert grads_low["axon1"]["alpha_1"][...].dtype == jnp.float32
