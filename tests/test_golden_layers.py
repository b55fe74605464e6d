"""shared/golden/layers.npz: every single layer's output and vector-Jacobian products, in float64."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from golden_files import golden_path
from iirsnn_jax import layers, layout


@pytest.fixture(scope="module")
def golden():
    with np.load(golden_path("layers.npz")) as data:
        return {k: data[k] for k in data.files}


def _vjp(layer, x, cotangent):
    """(output, d<output, ct>/d input, d<output, ct>/d params) of a layer over a time-major input."""
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def run(params, x):
        return nnx.merge(graphdef, params, rest)(x)[0]

    out, pullback = jax.vjp(run, params, x)
    grad_params, grad_x = pullback(cotangent)
    return out, grad_x, {path[-1]: v[...] for path, v in nnx.to_flat_state(grad_params)}


def _time_major(x, order="hw"):
    return jnp.moveaxis(jnp.asarray(layout.from_reference_signal(x, order)), 1, 0)


def _reference_layout(x, order="hw"):
    return layout.to_reference_signal(np.moveaxis(np.asarray(x), 0, 1), order)


def _assert_close(ours, theirs, name):
    scale = np.abs(theirs).max()
    err = np.abs(np.asarray(ours) - theirs).max()
    assert err <= 1e-9 * max(scale, 1e-300), f"{name}: max error {err:.3e} (scale {scale:.3e})"


def test_dual_exp_iir_layer(golden):
    with jax.enable_x64(True):
        g = {k[4:]: v for k, v in golden.items() if k.startswith("iir/")}
        layer = layers.DualExpFilter((5, 5, 3), 4.0, 1.0, dtype=jnp.float64, param_dtype=jnp.float64)
        for name in ("alpha_1", "alpha_2", "beta_1"):
            getattr(layer, name).set_value(jnp.asarray(g[f"param/dual_exp_iir_cell.{name}"].transpose(1, 2, 0)))
        out, grad_x, grads = _vjp(layer, _time_major(g["input"]), _time_major(g["cotangent"]))
        _assert_close(_reference_layout(out), g["output"], "output")
        _assert_close(_reference_layout(grad_x), g["grad_input"], "grad_input")
        for name in ("alpha_1", "alpha_2", "beta_1"):
            _assert_close(np.asarray(grads[name]).transpose(2, 0, 1), g[f"grad/dual_exp_iir_cell.{name}"], name)


def test_first_order_low_pass_layer(golden):
    with jax.enable_x64(True):
        g = {k[8:]: v for k, v in golden.items() if k.startswith("lowpass/")}
        layer = layers.LowPassFilter((6,), 4.0, dtype=jnp.float64, param_dtype=jnp.float64)
        layer.alpha_1.set_value(jnp.asarray(g["param/first_order_low_pass_cell.alpha_1"]))
        out, grad_x, grads = _vjp(layer, _time_major(g["input"]), _time_major(g["cotangent"]))
        _assert_close(_reference_layout(out), g["output"], "output")
        _assert_close(_reference_layout(grad_x), g["grad_input"], "grad_input")
        _assert_close(grads["alpha_1"], g["grad/first_order_low_pass_cell.alpha_1"], "alpha_1")


@pytest.mark.parametrize("prefix, membrane_filter", [("neuron", False), ("neuron_membrane", True)])
def test_spiking_dense_layer(golden, prefix, membrane_filter):
    with jax.enable_x64(True):
        g = {k[len(prefix) + 1:]: v for k, v in golden.items() if k.startswith(prefix + "/")}
        layer = layers.SpikingDense(16, 8, tau_m=4.0, membrane_filter=membrane_filter, dtype=jnp.float64,
                                    param_dtype=jnp.float64, rngs=nnx.Rngs(0))
        layer.kernel.set_value(jnp.asarray(g["param/neuron_cell.weight.weight"].T))
        layer.bias.set_value(jnp.asarray(g["param/neuron_cell.weight.bias"]))
        for name in ("reset_decay", "reset_v", "decay_v"):
            getattr(layer, name).set_value(jnp.asarray(g[f"param/neuron_cell.{name}"][0]))
        layer.surrogate_width = float(g["param/neuron_cell.sigma"])
        out, grad_x, grads = _vjp(layer, _time_major(g["input"]), _time_major(g["cotangent"]))
        np.testing.assert_array_equal(_reference_layout(out), g["output"])
        assert 0 < g["output"].mean() < 1, "the golden layer must spike sometimes"
        _assert_close(_reference_layout(grad_x), g["grad_input"], "grad_input")
        _assert_close(np.asarray(grads["kernel"]).T, g["grad/weight"], "weight")
        _assert_close(grads["bias"], g["grad/bias"], "bias")
