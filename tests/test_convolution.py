"""convolution.conv2d: values and both gradients against lax.conv_general_dilated's own autodiff (float64)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iirsnn_jax import convolution


def _xla_conv(frames, kernel, stride, padding):
    return jax.lax.conv_general_dilated(frames, kernel, (stride, stride), [(padding, padding)] * 2,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("c_in,k,stride,padding", [(1, 3, 1, 1), (2, 3, 1, 1), (1, 5, 1, 2), (2, 3, 1, 0),
                                                   (1, 2, 1, 1), (1, 3, 1, 3), (1, 3, 2, 1), (3, 3, 1, 1)])
def test_conv2d_and_gradients_equal_xla(c_in, k, stride, padding):
    with jax.enable_x64():
        keys = jax.random.split(jax.random.key(0), 3)
        frames = jax.random.normal(keys[0], (4, 9, 7, c_in), jnp.float64)
        kernel = jax.random.normal(keys[1], (k, k, c_in, 5), jnp.float64)
        expected_out, expected_vjp = jax.vjp(lambda x, w: _xla_conv(x, w, stride, padding), frames, kernel)
        out, vjp = jax.vjp(lambda x, w: convolution.conv2d(x, w, stride, padding, jnp.float64), frames, kernel)
        ct = jax.random.normal(keys[2], out.shape, jnp.float64)
        np.testing.assert_allclose(out, expected_out, rtol=1e-13, atol=1e-13)
        for got, want in zip(vjp(ct), expected_vjp(ct)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_few_input_channels_take_the_product_route():
    # the input gradient of a 1-channel conv is no convolution in the program: only the kernel gradient is
    frames, kernel = jnp.ones((2, 6, 6, 1)), jnp.ones((3, 3, 1, 4))
    grad = jax.jit(jax.grad(lambda x, w: jnp.sum(convolution.conv2d(x, w, 1, 1, jnp.float32) ** 2), argnums=0))
    assert grad.lower(frames, kernel).compile().as_text().count("convolution(") == 1  # the forward conv
    grad_both = jax.jit(jax.grad(lambda x, w: jnp.sum(_xla_conv(x, w, 1, 1) ** 2), argnums=0))
    assert grad_both.lower(frames, kernel).compile().as_text().count("convolution(") == 2
    # a GPU or TPU program keeps XLA's input-gradient convolution (lowered here, not compiled)
    for platform in ("cuda", "tpu"):
        text = grad.trace(frames, kernel).lower(lowering_platforms=(platform,)).as_text()
        assert text.count("stablehlo.convolution") == 2
