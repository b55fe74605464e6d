"""convolution.conv2d: values and both gradients against lax.conv_general_dilated's own autodiff (float64); the
kernel gradient from native/conv_layout.py's layouts bit for bit equal to XLA's."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iirsnn_jax import convolution
from iirsnn_jax.native import conv_layout, library

needs_kernels = pytest.mark.skipif(jax.default_backend() != "cpu" or not library.available(),
                                   reason="the CPU kernel library")


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


@needs_kernels
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("shape", [(13, 5, 3, 7), (16, 4, 4, 8), (1, 1, 1, 1), (9, 2, 3, 17), (24, 3, 2, 16)])
def test_the_layouts_are_the_transposes(dtype, shape):
    """Full 8 x 8 tiles, edges in frames and in channels, a single element."""
    with jax.enable_x64(dtype == jnp.float64):
        x = jax.random.normal(jax.random.key(1), shape, dtype)
        np.testing.assert_array_equal(jax.jit(conv_layout.batch_last)(x), jnp.transpose(x, (3, 1, 2, 0)))
        np.testing.assert_array_equal(jax.jit(conv_layout.batch_inside)(x), jnp.transpose(x, (1, 2, 0, 3)))


@needs_kernels
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("n,c_in,c_out,k,padding", [(13, 3, 5, 3, 1), (16, 8, 16, 3, 1), (4, 1, 5, 5, 2),
                                                     (6, 4, 3, 3, 0)])
def test_the_kernel_gradient_from_the_layouts_is_xlas_bit_for_bit(dtype, n, c_in, c_out, k, padding):
    with jax.enable_x64(dtype == jnp.float64):
        keys = jax.random.split(jax.random.key(3), 3)
        frames = jax.random.normal(keys[0], (n, 9, 7, c_in), dtype)
        kernel = jax.random.normal(keys[1], (k, k, c_in, c_out), dtype)
        ct = jax.random.normal(keys[2], _xla_conv(frames, kernel, 1, padding).shape, dtype)

        def gradients(conv):
            return jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g))(frames, kernel, ct)

        native = gradients(lambda x, w: convolution.conv2d(x, w, 1, padding, dtype, "native"))
        xla = gradients(lambda x, w: convolution.conv2d(x, w, 1, padding, dtype, "xla"))
        expected = gradients(lambda x, w: _xla_conv(x, w, 1, padding))
        np.testing.assert_array_equal(native[1], expected[1])
        np.testing.assert_array_equal(xla[1], expected[1])
        np.testing.assert_array_equal(native[0], xla[0])  # the input gradient does not depend on the option
        if c_in > convolution.FEW_INPUT_CHANNELS:
            np.testing.assert_array_equal(native[0], expected[0])


@needs_kernels
def test_the_layouts_replace_xlas_transposes_only_with_the_native_option():
    frames, kernel = jnp.ones((8, 6, 6, 4)), jnp.ones((3, 3, 4, 8))
    for option, calls in (("native", 2), ("xla", 0)):
        grad = jax.jit(jax.grad(lambda w: jnp.sum(convolution.conv2d(frames, w, 1, 1, jnp.float32, option) ** 2)))
        assert grad.lower(kernel).as_text().count(conv_layout.TARGET) == calls, option
