"""scikit-learn's 8x8 digits: a dataset that ships with scikit-learn, for a first run on a fresh machine.

1797 images of 8x8 pixels with values 0..16 (sklearn.datasets.load_digits, no download). Fixed split of a
permutation (torch_randperm(1797, data.split_seed)): train 1257, dev 270, test 270.
Batches (what the host hands to the device): input float32 value/16 [B, 8, 8], label int32 [B]; the device
makes the network input [B, T, 8, 8, 1] (device_encoding.py): "copy" (data.encoding): the value at every
step; "poisson": uint8 spikes with P = value/16 per step, keyed by (seed, split, epoch, index).
"""
from __future__ import annotations

import functools

import numpy as np

from iirsnn_jax.data import common

SIZES = {"train": 1257, "dev": 270, "test": 270}


@functools.lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float32), digits.target.astype(np.int32)


def split_indices(split: str, seed: int = 42) -> np.ndarray:
    perm = common.torch_randperm(sum(SIZES.values()), seed)
    start = {"train": 0, "dev": SIZES["train"], "test": SIZES["train"] + SIZES["dev"]}[split]
    return perm[start:start + SIZES[split]]


class DigitsSource:
    name = "digits"

    def __init__(self, config, split: str):
        common.check_split(split)
        self.split = split
        if config.data.encoding not in ("copy", "poisson"):
            raise ValueError(f"digits supports data.encoding 'copy' or 'poisson', got {config.data.encoding!r}")
        images, labels = _load()
        keep = split_indices(split, int(config.data.split_seed))
        # float32, not uint8 0..16: 256 bytes a sample is nothing, and a batch of NaN (tests) stays NaN
        self.x = images[keep] / np.float32(16.0)  # [N, 8, 8] in [0, 1]
        self.labels = labels[keep]
        self.num_examples = len(keep)

    def get_batch(self, indices: np.ndarray, epoch: int = 0) -> dict[str, np.ndarray]:
        indices = np.asarray(indices, np.int64)
        return {"input": self.x[indices], "label": self.labels[indices]}


def source(config, split: str) -> DigitsSource:
    return DigitsSource(config, split)
