"""The two layouts of a convolution's kernel gradient on CPU, made by conv_layout.cc's kernel.

XLA computes the kernel gradient of an NHWC convolution as a convolution of the frames with the batch innermost
([C, H, W, N]) by the output cotangent with the batch between pixels and channels ([H', W', N, C_out]); its own
transposes into those layouts took 105-110 ms of snn_conv_1_mnist's 944 ms step, and with these the conv steps
run 1.03-1.04x faster (docs/performance.md). They return exactly jnp.transpose(x, (3, 1, 2, 0)) and
jnp.transpose(x, (1, 2, 0, 3)).
"""
from __future__ import annotations

import jax
import numpy as np

TARGET = "iirsnn_conv_layout"


def _call(x, batch_last: bool):
    n, h, w, c = x.shape
    shape = (c, h, w, n) if batch_last else (h, w, n, c)
    return jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct(shape, x.dtype), vmap_method="sequential")(
        x, frames=np.int64(n), pixels=np.int64(h * w), channels=np.int64(c), batch_last=batch_last)


def batch_last(x):
    """[N, H, W, C] -> [C, H, W, N]."""
    return _call(x, True)


def batch_inside(x):
    """[N, H, W, C] -> [H, W, N, C]."""
    return _call(x, False)
