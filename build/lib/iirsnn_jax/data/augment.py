"""The reference's MNIST augmentation (SPEC 4.1), with Pillow's resampling as torchvision 0.8.1 used it.

torchvision: RandomApply([RandomResizedCrop(28, scale=(0.85, 1), ratio=(3/4, 4/3), bilinear),
RandomRotation(15, nearest, fill 0), Compose(crop, rotation)], p=0.5): with probability 0.5 an image goes
through crop -> rotate -> crop -> rotate, otherwise it is unchanged. torchvision applied these to PIL images
with `img.crop(...).resize((28, 28), BILINEAR)` and `img.rotate(angle, NEAREST, fillcolor=0)`; we make the
same Pillow calls, so given the same random parameters the output is torchvision's bit for bit. The
parameters are drawn as torchvision draws them, from a numpy Generator instead of the torch RNG.

Where it runs (data.augment_on): "device" (default), device_augment.py inside the jitted step; "host_pillow",
this file on the host (per sample Python and Pillow: thousands of samples/s), to check parity.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

SCALE = (0.85, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
DEGREES = 15.0
APPLY_PROB = 0.5
AUGMENT_ON = ("device", "host_pillow")


def augment_on(config) -> str:
    """data.augment_on, checked."""
    where = config.data.augment_on
    if where not in AUGMENT_ON:
        raise ValueError(f"data.augment_on must be one of {AUGMENT_ON}, got {where!r}")
    return where


def augmented_splits(config) -> tuple[str, ...]:
    """The splits whose samples are augmented: train when data.augment, and dev too with data.augment_dev
    (the reference augmented dev by accident, SPEC 6.7); never test."""
    if not config.data.augment:
        return ()
    return ("train", "dev") if config.data.augment_dev else ("train",)


def crop_params(rng: np.random.Generator, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, h, w) of RandomResizedCrop.get_params: 10 tries, then the central-crop fallback."""
    area = height * width
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(RATIO):
        w, h = width, int(round(width / min(RATIO)))
    elif in_ratio > max(RATIO):
        h, w = height, int(round(height * max(RATIO)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(image: Image.Image, top: int, left: int, h: int, w: int) -> Image.Image:
    """torchvision F.resized_crop on a PIL image: crop, then bilinear resize back to the input size."""
    return image.crop((left, top, left + w, top + h)).resize(image.size, Image.BILINEAR)


def rotate(image: Image.Image, angle: float) -> Image.Image:
    """torchvision F.rotate on a PIL image: counter-clockwise by `angle` degrees about the centre,
    nearest neighbour, same size, fill 0."""
    return image.rotate(angle, Image.NEAREST, expand=False, fillcolor=0)


def reference_augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 [H, W] -> uint8 [H, W]: unchanged with probability 1/2, else crop, rotate, crop, rotate."""
    if rng.random() >= APPLY_PROB:  # torchvision RandomApply: `if self.p < torch.rand(1): return img`
        return image
    pil = Image.fromarray(image)
    for _ in range(2):  # [t1, t2, Compose(t1, t2)] applied in sequence
        pil = resized_crop(pil, *crop_params(rng, pil.height, pil.width))
        pil = rotate(pil, rng.uniform(-DEGREES, DEGREES))
    return np.asarray(pil)
