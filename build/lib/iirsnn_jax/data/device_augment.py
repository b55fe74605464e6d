"""The reference's MNIST augmentation (SPEC 4.1) as pure JAX functions of one image, run on the device.

The transforms of augment.py (torchvision 0.8.1 on Pillow), with the same distributions of their random
parameters, drawn from a JAX key instead of the torch RNG: with probability 1/2 the image is unchanged, else
RandomResizedCrop(scale 0.85-1, ratio 3/4-4/3, bilinear) -> RandomRotation(+-15 deg, nearest, fill 0), twice.

Given the same parameters the output is Pillow's, because the arithmetic is Pillow's:
  resized_crop: Pillow's separable resize, a horizontal then a vertical pass, each rounded to uint8, with
    its coefficients (triangle filter on pixel centres, renormalised at the edges, 22-bit fixed point)
    tabulated below in float64 for every crop size exactly as Pillow computes them;
  rotate: Pillow's nearest-neighbour affine transform in 16.16 fixed point about the image centre.
One difference remains: the rotation's fixed-point coefficients come from float32 cos/sin here (float64 in
Pillow), so a pixel whose source position falls within about 1e-4 px of a pixel edge can take the neighbour
(tests/test_data_device.py measures how often).
Images are uint8 [H, W]; callers vmap over a batch.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from iirsnn_jax.data.augment import APPLY_PROB, DEGREES, RATIO, SCALE

_FRACTION_BITS = 22  # Pillow's PRECISION_BITS for 8-bit images: 32 - 8 - 2


@functools.lru_cache(maxsize=None)
def resize_coefficients(out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's bilinear coefficients that resize n = 1..out_size pixels to out_size (upscaling only).

    Returns (source indices int32 [out_size + 1, out_size, 2], fixed-point weights int32 [out_size + 1,
    out_size, 2]): output pixel j of a crop of n pixels is the weighted sum of crop pixels index[n, j];
    row n = 0 is unused. Pillow's precompute_coeffs: centre c = (j + 0.5) * n / out_size, taps
    x = int(c - 0.5) .. int(c + 1.5) - 1 inside [0, n), weight 1 - |x - c + 0.5|, divided by their sum,
    then int(0.5 + w * 2^22).
    """
    index = np.zeros((out_size + 1, out_size, 2), np.int32)
    weight = np.zeros((out_size + 1, out_size, 2), np.int32)
    for n in range(1, out_size + 1):
        scale = n / out_size
        for j in range(out_size):
            centre = (j + 0.5) * scale
            lo = max(int(centre - 1.0 + 0.5), 0)
            taps = min(int(centre + 1.0 + 0.5), n) - lo
            w = [max(0.0, 1.0 - abs(x + lo - centre + 0.5)) for x in range(taps)]
            total = sum(w)
            w = [v / total if total else v for v in w]
            if taps > 2:
                raise AssertionError(f"{taps} taps: resize_coefficients only upscales")
            for k in range(2):
                index[n, j, k] = min(lo + k, n - 1)
                weight[n, j, k] = int(0.5 + w[k] * (1 << _FRACTION_BITS)) if k < taps else 0
    return index, weight


def _round_to_uint8(fixed: jax.Array) -> jax.Array:
    """Pillow's clip8: a fixed-point sum, rounded half up, clipped to 0..255."""
    return jnp.clip((fixed + (1 << (_FRACTION_BITS - 1))) >> _FRACTION_BITS, 0, 255)


def _resize_matrix(size: int, start, length) -> jax.Array:
    """int32 [size, size]: row j holds the fixed-point weights of output pixel j over the input pixels, for a
    crop of `length` pixels from `start` resized to `size`."""
    index, weight = (jnp.asarray(a)[length] for a in resize_coefficients(size))  # [size, 2] taps
    hit = (start + index)[..., None] == jnp.arange(size)  # [size, 2, size]
    return jnp.sum(jnp.where(hit, weight[..., None], 0), axis=1)


def resized_crop(image: jax.Array, top, left, height, width) -> jax.Array:
    """uint8 [H, W] -> uint8 [H, W]: crop (top, left, height, width), bilinear resize back to [H, W], as
    torchvision's F.resized_crop on a PIL image (`img.crop(box).resize(size, BILINEAR)`).

    Each pass is an integer matrix product with a weight matrix of two taps a row: exact, and a chain of
    them compiles well (chained gathers ran 5x slower on CPU)."""
    rows, cols = image.shape
    dot = functools.partial(jnp.einsum, preferred_element_type=jnp.int32)
    across = _round_to_uint8(dot("ri,ji->rj", image.astype(jnp.int32), _resize_matrix(cols, left, width)))
    down = dot("ir,rj->ij", _resize_matrix(rows, top, height), across)  # [H, W] of every row, then the crop's
    return _round_to_uint8(down).astype(jnp.uint8)


def _fix16(v: jax.Array) -> jax.Array:
    """Pillow's FIX: floor(v * 65536 + 0.5) as int32."""
    return jnp.floor(v * 65536.0 + 0.5).astype(jnp.int32)


def rotate(image: jax.Array, angle) -> jax.Array:
    """uint8 [H, W] rotated counter-clockwise by `angle` degrees about (W/2, H/2), nearest neighbour, fill 0,
    as Pillow's `image.rotate(angle, NEAREST, fillcolor=0)` (its affine_fixed)."""
    rows, cols = image.shape
    theta = jnp.deg2rad(jnp.asarray(angle, jnp.float32))
    c, s = jnp.cos(theta), jnp.sin(theta)
    cx, cy = cols / 2.0, rows / 2.0
    # Pillow's inverse matrix (x_in, y_in) = (c x - s y + m2, s x + c y + m5), then sampled at pixel centres.
    m2 = cx - c * cx + s * cy
    m5 = cy - s * cx - c * cy
    a0, a1, a3, a4 = _fix16(c), _fix16(-s), _fix16(s), _fix16(c)
    a2, a5 = _fix16(m2 + 0.5 * c - 0.5 * s), _fix16(m5 + 0.5 * s + 0.5 * c)
    y, x = jnp.meshgrid(jnp.arange(rows, dtype=jnp.int32), jnp.arange(cols, dtype=jnp.int32), indexing="ij")
    x_in = (a2 + x * a0 + y * a1) >> 16
    y_in = (a5 + x * a3 + y * a4) >> 16
    inside = (x_in >= 0) & (x_in < cols) & (y_in >= 0) & (y_in < rows)
    picked = image[jnp.clip(y_in, 0, rows - 1), jnp.clip(x_in, 0, cols - 1)]
    return jnp.where(inside, picked, jnp.zeros_like(picked))


def _central_crop(height: int, width: int) -> tuple[int, int]:
    """torchvision's fallback after 10 failed tries: (h, w) of the central crop."""
    in_ratio = width / height
    if in_ratio < min(RATIO):
        return int(round(width / min(RATIO))), width
    if in_ratio > max(RATIO):
        return height, int(round(height * max(RATIO)))
    return height, width


def crop_params(key: jax.Array, height: int, width: int, tries: int = 10):
    """(top, left, h, w) int32 scalars of RandomResizedCrop.get_params: the first of `tries` draws of
    (area fraction ~ U(SCALE), log aspect ~ U(log RATIO)) whose rounded size fits, else the central crop."""
    k_scale, k_ratio, k_top, k_left = jax.random.split(key, 4)
    area = jax.random.uniform(k_scale, (tries,), minval=SCALE[0], maxval=SCALE[1]) * (height * width)
    aspect = jnp.exp(jax.random.uniform(k_ratio, (tries,), minval=math.log(RATIO[0]), maxval=math.log(RATIO[1])))
    w = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)  # round half to even, as Python's round
    h = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first, found = jnp.argmax(fits), jnp.any(fits)
    fallback_h, fallback_w = _central_crop(height, width)
    h = jnp.where(found, h[first], fallback_h)
    w = jnp.where(found, w[first], fallback_w)
    top = jnp.where(found, jax.random.randint(k_top, (), 0, height - h + 1), (height - fallback_h) // 2)
    left = jnp.where(found, jax.random.randint(k_left, (), 0, width - w + 1), (width - fallback_w) // 2)
    return top, left, h, w


def reference_augment(image: jax.Array, key: jax.Array) -> jax.Array:
    """uint8 [H, W] -> uint8 [H, W]: unchanged with probability 1/2, else crop, rotate, crop, rotate."""
    k_apply, *k_rounds = jax.random.split(key, 3)
    out = image
    for k in k_rounds:  # torchvision's RandomApply([t1, t2, Compose(t1, t2)]) applies them in sequence
        k_crop, k_angle = jax.random.split(k)
        out = resized_crop(out, *crop_params(k_crop, *image.shape))
        out = rotate(out, jax.random.uniform(k_angle, (), minval=-DEGREES, maxval=DEGREES))
    return jnp.where(jax.random.uniform(k_apply) < APPLY_PROB, out, image)
