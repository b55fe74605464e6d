"""The conv layers' 2-D convolution over NHWC frames, with faster gradients on CPU.

The input gradient of a convolution is itself a convolution, from C_out channels down to C_in. With C_in = 1
(MNIST) or 2 (event cameras' polarities) XLA on CPU runs it at a tenth of its usual rate: snn_conv_1_mnist's
first layer takes 17-18 ms for it. Here it is a matmul and k*k shifted sums instead:

    P[n, h, w, a, b, c] = sum_o ct[n, h, w, o] * kernel[a, b, c, o]        ([N*H*W, C_out] x [C_out, k*k*C_in])
    ct_x[n, i, j, c]    = sum_{a, b} P[n, i + p - a, j + p - b, a, b, c]    (zero outside the output)

8.6 against 17.4 ms for [800, 28, 28, 32] -> 1 channel, 13 against 29 ms for 2 channels. The same sums in
another order: equal to XLA's gradient to float rounding.

The kernel gradient is XLA's convolution of the frames, batch innermost ([C_in, H, W, N]), by the cotangent,
batch between pixels and channels ([H', W', N, C_out]). With the CPU kernels (model.cpu_kernel = "native") those
two layouts come from native/conv_layout.py instead of XLA's transposes, which took 105-110 ms of
snn_conv_1_mnist's 944 ms step: the same convolution of the same arrays, so the same gradient bit for bit. Only a
CPU lowering takes these routes; GPUs and TPUs run XLA's own gradients.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from iirsnn_jax.native import conv_layout, library

# Input channels up to which the input gradient is a matmul and shifted sums; measured at 1 and 2. P holds
# k*k*C_in values per output pixel, so with many input channels XLA's own convolution is the better route.
FEW_INPUT_CHANNELS = 2


def conv2d(frames, kernel, stride: int, padding: int, result_dtype, cpu_kernel: str = "native"):
    """frames [N, H, W, C_in], kernel [k, k, C_in, C_out] (HWIO) -> [N, H', W', C_out] in result_dtype; symmetric
    zero padding, dilation 1. cpu_kernel: model.cpu_kernel ("native": the kernel gradient's layouts from the
    CPU kernel library)."""
    if stride == 1 and frames.dtype == kernel.dtype == result_dtype:
        few = kernel.shape[2] <= FEW_INPUT_CHANNELS
        layouts = library.usable(cpu_kernel, frames)
        if few or layouts:
            return _stride_one_conv(frames, kernel, padding, few, layouts)
    return _conv(frames, kernel, stride, padding, result_dtype)


def _conv(frames, kernel, stride, padding, result_dtype):
    return jax.lax.conv_general_dilated(frames, kernel, (stride, stride), [(padding, padding)] * 2,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        preferred_element_type=result_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _stride_one_conv(frames, kernel, padding: int, few: bool, layouts: bool):
    return _conv(frames, kernel, 1, padding, frames.dtype)


def _stride_one_fwd(frames, kernel, padding, few, layouts):
    return _stride_one_conv(frames, kernel, padding, few, layouts), (frames, kernel)


def _stride_one_bwd(padding, few, layouts, residuals, ct):
    frames, kernel = residuals
    by_xla = functools.partial(_kernel_gradient_by_xla, padding)
    ct_kernel = (library.on_cpu(functools.partial(_kernel_gradient_from_layouts, padding), by_xla, frames, kernel, ct)
                 if layouts else by_xla(frames, kernel, ct))
    by_convolution = functools.partial(_input_gradient_by_convolution, padding)
    # measured on CPU only; accelerators keep XLA's convolution (a [.., k, k, C_in] product would also tile
    # badly on a TPU)
    ct_frames = (library.on_cpu(functools.partial(_input_gradient_by_products, padding), by_convolution, frames,
                                kernel, ct)
                 if few else by_convolution(frames, kernel, ct))
    return ct_frames, ct_kernel


def _kernel_gradient_by_xla(padding, frames, kernel, ct):
    return jax.vjp(lambda k: _conv(frames, k, 1, padding, frames.dtype), kernel)[1](ct)[0]


def _kernel_gradient_from_layouts(padding, frames, kernel, ct):
    # the convolution XLA's own gradient runs: batch C_in, a window of H' x W' pixels, contracting over N;
    # out [C_in, k, k, C_out]
    gradient = jax.lax.conv_general_dilated(conv_layout.batch_last(frames), conv_layout.batch_inside(ct), (1, 1),
                                            [(padding, padding)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.transpose(gradient, (1, 2, 0, 3))


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


_stride_one_conv.defvjp(_stride_one_fwd, _stride_one_bwd)
