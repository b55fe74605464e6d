"""A split of an event-camera dataset (N-MNIST, DVS Gesture): files -> binned frames, cached on disk.

`EventSource` gets the file list and labels of one folder of the dataset (Train or Test, in the reference's
order), an `encode(path)` that parses one file and bins it ([T, H, W, C] bool or uint16 counts), and returns
batches, compact for the transfer to the device (device_encoding.py makes the network input there):
`input` bit-packed frames uint8 [B, ceil(T*H*W*C / 8)] (np.packbits of each flattened bool sample) or
uint16 counts [B, T, H, W, C], and `label` int32 [B].

train and dev both come from the training folder, split as the reference does (common.split_train_dev) over
the samples that remain after corrupt files are left out (only with data.skip_corrupt=True).
With data.cache (default) the first access parses every file of the folder once (progress bar) and later runs
read the cache; without it, every access parses its files again.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from iirsnn_jax.data import common
from iirsnn_jax.data.cache import FrameCache
from iirsnn_jax.data.common import CorruptFileError, log


def default_cache_dir(config) -> Path:
    """data.cache_dir, or <data.root>/iirsnn_cache when it is empty."""
    cache_dir = config.data.cache_dir
    return Path(cache_dir) if cache_dir else Path(config.data.root) / "iirsnn_cache"


class EventSource:
    """See the module docstring."""

    def __init__(self, config, split: str, *, name: str, files: Sequence[Path], labels: Sequence[int],
                 base: Path, encode: Callable[[Path], np.ndarray], shape: tuple, dtype, params: dict,
                 ref_dev: int, ref_total: int):
        common.check_split(split)
        self.name, self.split = name, split
        self.shape, self._encode, self.packed = tuple(shape), encode, np.dtype(dtype) == np.bool_
        files, labels = list(files), np.asarray(labels, np.int32)
        skip_corrupt = bool(config.data.skip_corrupt)
        if config.data.cache:
            cache = FrameCache.open_or_build(
                default_cache_dir(config), f"{name}-{base.name}", files, base, params, encode, shape, dtype,
                skip_corrupt=skip_corrupt, num_workers=int(config.data.num_workers),
                desc=f"{name} {base.name}: binning events once, then cached")
            self._cache, kept = cache, cache.kept
        else:
            self._cache = None
            kept = self._validate(files) if skip_corrupt else np.arange(len(files))
        self.skipped = len(files) - len(kept)
        self._files = [files[i] for i in kept]  # one entry per sample that can be read
        self._labels = labels[kept]
        self._rows = np.arange(len(kept))  # sample -> cache row (rows hold kept files in order)
        if split != "test":
            n = len(kept)
            n_dev = common.reference_dev_size(n, ref_dev, ref_total, int(config.data.dev_size))
            train, dev = common.split_train_dev(n, n_dev, int(config.data.split_seed))
            self._rows = train if split == "train" else dev
        self.num_examples = len(self._rows)

    def _validate(self, files):
        kept = []
        for i, f in enumerate(files):
            try:
                self._encode(f)
                kept.append(i)
            except CorruptFileError as e:
                log.warning("leaving out %s (%s)", e.path, e.reason)
        return np.asarray(kept, np.int64)

    def path(self, index: int) -> Path:
        """The file of split-local sample `index`."""
        return self._files[self._rows[index]]

    def get_batch(self, indices: np.ndarray, epoch: int = 0) -> dict[str, np.ndarray]:
        rows = self._rows[np.asarray(indices, np.int64)]
        if self._cache is not None:
            frames = self._cache.read(rows, unpack=False)
        elif self.packed:
            frames = np.zeros((len(rows), math.ceil(math.prod(self.shape) / 8)), np.uint8)
            for b, r in enumerate(rows):
                frames[b] = np.packbits(self._encode(self._files[r]).reshape(-1))
        else:
            frames = np.stack([self._encode(self._files[r]) for r in rows]) if len(rows) else \
                np.zeros((0, *self.shape), np.uint16)
        return {"input": frames, "label": self._labels[rows]}


def find_dir(root: Path, candidates: Sequence[str], folder: str, what: str, how: str) -> Path:
    """The first root/<candidate>/<folder> that is a directory, or a DatasetNotFoundError that lists them."""
    for c in candidates:
        if (root / c / folder).is_dir():
            return (root / c / folder)
    looked = "\n  ".join(str(root / c / folder) for c in candidates)
    raise common.DatasetNotFoundError(
        f"{what} not found: data.root is {str(root)!r} ({os.path.abspath(root)}); looked for the folder\n  "
        f"{looked}\n{how}\nNothing is downloaded automatically; point --config.data.root=DIR at the folder "
        "that holds the dataset.")
