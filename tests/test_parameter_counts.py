"""Trainable parameter counts of the thirteen reference networks against SPEC 1.15's table.

Networks are built abstractly with nnx.eval_shape (same constructor code, no random initialisation), which
makes the big conv nets free; two are also built for real to check both routes count the same.
"""
import os

import jax
import pytest
from flax import nnx

from iirsnn_jax import experiments, layers, models

# SPEC 1.15: (total, IIR/L coefficients, weights and biases)
SPEC_COUNTS = {
    "mlp_1": (653_362, 5_352, 648_010),
    "mlp_2": (649_794, 1_784, 648_010),
    "conv_1_mnist": (2_065_882, 389_616, 1_676_266),
    "conv_1_nmnist": (1_986_786, 591_576, 1_395_210),
    "conv_1_gesture": (2_118_155, 475_392, 1_642_763),
    "associative_memory": (506_000, 4_500, 501_500),
}
BASE = {  # experiment -> row of SPEC 1.15 (variants share their base network)
    "associative_memory": "associative_memory",
    "snn_mlp_1": "mlp_1", "snn_mlp_1_non_zero": "mlp_1", "snn_mlp_1_poisson_input": "mlp_1",
    "snn_mlp_2": "mlp_2", "snn_mlp_2_poisson_input": "mlp_2",
    "snn_conv_1_mnist": "conv_1_mnist", "snn_conv_1_mnist_poisson_input": "conv_1_mnist",
    "snn_conv_1_nmnist": "conv_1_nmnist",
    "snn_conv_1_gesture": "conv_1_gesture", "snn_conv_1_gesture_30": "conv_1_gesture",
    "snn_conv_1_gesture_max": "conv_1_gesture", "snn_conv_1_gesture_avg": "conv_1_gesture",
}


def _abstract(model_cfg):
    return nnx.eval_shape(lambda: models.build_model(model_cfg))


def _filter_param_count(model):
    return sum(leaf.size for name in model.layer_names
               if isinstance(getattr(model, name), (layers.DualExpFilter, layers.LowPassFilter))
               for leaf in jax.tree.leaves(nnx.state(getattr(model, name), nnx.Param)))


def test_every_reference_experiment_is_covered():
    assert set(experiments.REFERENCE_EXPERIMENTS) == set(BASE)
    assert len(experiments.REFERENCE_EXPERIMENTS) == 13


@pytest.mark.parametrize("name", experiments.REFERENCE_EXPERIMENTS)
def test_trainable_count_equals_spec_table(name):
    total, iir, weights = SPEC_COUNTS[BASE[name]]
    assert total == iir + weights  # the SPEC row is self-consistent
    model = _abstract(experiments.load_config(name).model)
    assert models.count_trainable_parameters(model) == total
    assert _filter_param_count(model) == iir


@pytest.mark.parametrize("name", ["snn_mlp_1", pytest.param("snn_conv_1_nmnist", marks=pytest.mark.slow)])
def test_real_build_counts_the_same(name):
    model = models.build_model(experiments.load_config(name).model)
    assert models.count_trainable_parameters(model) == SPEC_COUNTS[BASE[name]][0]


@pytest.mark.parametrize("name", ["snn_mlp_1", "snn_mlp_2", "snn_conv_1_nmnist", "snn_conv_1_gesture",
                                  "associative_memory"])
def test_frozen_coefficients_are_not_counted(name):
    cfg = experiments.load_config(name).model
    cfg.train_coefficients = False
    total, iir, weights = SPEC_COUNTS[BASE[name]]
    model = _abstract(cfg)
    assert models.count_trainable_parameters(model) == weights
    # the coefficients still exist, as frozen constants of the full per-element shape
    first_filter = getattr(model, model.layer_names[0])
    assert isinstance(first_filter.alpha_1, layers.Constant)
    assert first_filter.alpha_1.shape == tuple(cfg.input_shape)


def test_frozen_constants_are_never_counted():
    # Reset constants and the output filter are frozen (SPEC 1.15): the associative net's count is weights +
    # IIR only, and its OutputFilter holds no Param.
    model = _abstract(experiments.load_config("associative_memory").model)
    assert not nnx.state(model.output_filter, nnx.Param)
    constants = {path for path, _ in nnx.to_flat_state(nnx.state(model.dense1, layers.Constant))}
    params = {path for path, _ in nnx.to_flat_state(nnx.state(model.dense1, nnx.Param))}
    assert {("reset_decay",), ("reset_v",), ("decay_v",)} <= constants
    assert params == {("kernel",), ("bias",)}


def test_without_bias_only_the_biases_disappear():
    cfg = experiments.load_config("snn_mlp_1").model
    cfg.train_bias = False
    assert models.count_trainable_parameters(_abstract(cfg)) == 653_362 - (500 + 500 + 10)


@pytest.mark.skipif(os.environ.get("JAX_ENABLE_X64", "").lower() in ("1", "true"), reason="x64 requested globally")
def test_float64_mode_did_not_leak_from_other_test_modules():
    # test_gradients.py runs in float64 inside a context manager; nothing may stay switched on after it.
    assert not jax.config.jax_enable_x64
