"""The conv layers' 2-D convolution over NHWC frames, with a faster input gradient for one or two input channels.

The input gradient of a convolution is itself a convolution, from C_out channels down to C_in. With C_in = 1
(MNIST) or 2 (event cameras' polarities) XLA on CPU runs it at a tenth of its usual rate: snn_conv_1_mnist's
first layer takes 17-18 ms for it. Here it is a matmul and k*k shifted sums instead:

    P[n, h, w, a, b, c] = sum_o ct[n, h, w, o] * kernel[a, b, c, o]        ([N*H*W, C_out] x [C_out, k*k*C_in])
    ct_x[n, i, j, c]    = sum_{a, b} P[n, i + p - a, j + p - b, a, b, c]    (zero outside the output)

8.6 against 17.4 ms for [800, 28, 28, 32] -> 1 channel, 13 against 29 ms for 2 channels. The same sums in
another order: equal to XLA's gradient to float rounding. The kernel gradient is XLA's. Only a CPU lowering
takes this route; GPUs and TPUs run XLA's convolution.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from iirsnn_jax.native import library

# Input channels up to which the input gradient is a matmul and shifted sums; measured at 1 and 2. P holds
# k*k*C_in values per output pixel, so with many input channels XLA's own convolution is the better route.
FEW_INPUT_CHANNELS = 2


def conv2d(frames, kernel, stride: int, padding: int, result_dtype):
    """frames [N, H, W, C_in], kernel [k, k, C_in, C_out] (HWIO) -> [N, H', W', C_out] in result_dtype; symmetric
    zero padding, dilation 1."""
    if stride == 1 and kernel.shape[2] <= FEW_INPUT_CHANNELS and frames.dtype == kernel.dtype == result_dtype:
        return _few_channel_conv(frames, kernel, padding)
    return _conv(frames, kernel, stride, padding, result_dtype)


def _conv(frames, kernel, stride, padding, result_dtype):
    return jax.lax.conv_general_dilated(frames, kernel, (stride, stride), [(padding, padding)] * 2,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        preferred_element_type=result_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _few_channel_conv(frames, kernel, padding: int):
    return _conv(frames, kernel, 1, padding, frames.dtype)


def _few_channel_fwd(frames, kernel, padding):
    return _few_channel_conv(frames, kernel, padding), (frames, kernel)


def _few_channel_bwd(padding, residuals, ct):
    frames, kernel = residuals
    _, kernel_vjp = jax.vjp(lambda k: _conv(frames, k, 1, padding, frames.dtype), kernel)
    (ct_kernel,) = kernel_vjp(ct)
    # measured on CPU only; accelerators keep XLA's convolution (a [.., k, k, C_in] product would also tile
    # badly on a TPU)
    ct_frames = library.on_cpu(functools.partial(_input_gradient_by_products, padding),
                               functools.partial(_input_gradient_by_convolution, padding), frames, kernel, ct)
    return ct_frames, ct_kernel


def _input_gradient_by_products(padding, frames, kernel, ct):
    k, height, width = kernel.shape[0], frames.shape[1], frames.shape[2]
    products = jnp.einsum("nhwo,abco->nhwabc", ct, kernel)
    # padded by k - 1 on each side, output row h sits at h + k - 1: input row i takes rows i + p - a + k - 1
    products = jnp.pad(products, ((0, 0), (k - 1, k - 1), (k - 1, k - 1), (0, 0), (0, 0), (0, 0)))
    return sum(products[:, padding - a + k - 1:padding - a + k - 1 + height,
                        padding - b + k - 1:padding - b + k - 1 + width, a, b]
               for a in range(k) for b in range(k))


def _input_gradient_by_convolution(padding, frames, kernel, ct):
    _, frames_vjp = jax.vjp(lambda x: _conv(x, kernel, 1, padding, frames.dtype), frames)
    return frames_vjp(ct)[0]


_few_channel_conv.defvjp(_few_channel_fwd, _few_channel_bwd)
