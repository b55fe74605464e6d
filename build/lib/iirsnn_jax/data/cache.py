"""On-disk cache of encoded event frames: parse every file once, read a memory map afterwards.

Parsing tens of thousands of event files costs minutes; reading the binned frames back costs milliseconds.
`FrameCache.open_or_build` computes `encode(path)` for every file of a list (with a progress bar and a thread
pool), stores the results in one .npy file and a .json beside it, and memory-maps the .npy on later runs.

Layout: rows of the .npy are samples in file-list order, minus files skipped as corrupt. Boolean frames are
stored bit-packed (np.packbits, 8 values a byte: 8.7 kB an N-MNIST sample at T = 30), counts as uint16.
The file name holds a hash of the file list (relative paths, sizes, mtimes) and of the encoding, so a
changed dataset or encoding builds a new cache instead of reading a stale one. The .json is written last,
through a rename, and is the mark of a complete cache; concurrent builders each write their own temporary
file and the last rename wins, which is harmless because their contents are equal.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from iirsnn_jax.data.common import CorruptFileError, log

CACHE_VERSION = 1
_CHUNK = 256  # files handed to the thread pool at a time: bounds the memory held by finished results


def fingerprint(files: Sequence[Path], base: Path, params: dict) -> str:
    h = hashlib.sha1(json.dumps({"version": CACHE_VERSION, **params}, sort_keys=True).encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.relpath(f, base)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class FrameCache:
    """Encoded frames of a list of files: `read(rows)` -> [len(rows), *shape] (uint8 0/1 when packed), or
    with unpack=False the stored rows as they are (packed: uint8 [len(rows), ceil(prod(shape) / 8)])."""

    def __init__(self, array: np.ndarray, shape: tuple, packed: bool, kept: np.ndarray, skipped: list):
        self.array, self.shape, self.packed = array, tuple(shape), packed
        self.kept = kept  # file-list index of each row
        self.skipped = skipped  # [(path, reason)] of files left out as corrupt

    def read(self, rows: np.ndarray, unpack: bool = True) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        # Read the memory map in ascending order (sequential disk access), then restore the asked order.
        order = np.argsort(rows, kind="stable")
        data = np.empty((len(rows), *self.array.shape[1:]), self.array.dtype)
        data[order] = self.array[rows[order]]
        if not self.packed or not unpack:
            return data
        count = math.prod(self.shape)
        # Unpacking the flat buffer is several times faster than np.unpackbits(axis=1); rows are whole bytes.
        bits = np.unpackbits(data.reshape(-1)).reshape(len(rows), -1)
        if bits.shape[1] != count:
            bits = bits[:, :count]
        return bits.reshape(len(rows), *self.shape)

    @classmethod
    def open_or_build(cls, cache_dir, name: str, files: Sequence[Path], base: Path, params: dict,
                      encode: Callable[[Path], np.ndarray], shape: tuple, dtype, *, skip_corrupt: bool,
                      num_workers: int = 0, desc: str = "") -> "FrameCache":
        """Open the cache of (files, params) in cache_dir, building it first if it is missing."""
        cache_dir = Path(cache_dir)
        stem = cache_dir / f"{name}-{fingerprint(files, base, params)}"
        meta_path, data_path = stem.with_suffix(".json"), stem.with_suffix(".npy")
        if meta_path.is_file() and data_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta["skipped"] and not skip_corrupt:
                first = meta["skipped"][0]
                raise CorruptFileError(first[0], f"{first[1]} ({len(meta['skipped'])} corrupt files in the "
                                       f"dataset; set data.skip_corrupt=True to leave them out)")
            array = np.load(data_path, mmap_mode="r")[: meta["num_rows"]]
            return cls(array, shape, meta["packed"], np.asarray(meta["kept"], np.int64),
                       [tuple(s) for s in meta["skipped"]])
        return cls._build(stem, files, base, params, encode, shape, np.dtype(dtype), skip_corrupt,
                          num_workers, desc)

    @classmethod
    def _build(cls, stem, files, base, params, encode, shape, dtype, skip_corrupt, num_workers, desc):
        from tqdm import tqdm  # only the first pass needs it

        stem.parent.mkdir(parents=True, exist_ok=True)
        packed = dtype == np.bool_
        row_shape = (math.ceil(math.prod(shape) / 8),) if packed else tuple(shape)
        tmp = stem.parent / f"{stem.name}.tmp-{os.getpid()}.npy"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8 if packed else dtype,
                                        shape=(max(len(files), 1), *row_shape))

        def work(path):
            try:
                frames = encode(path)
            except CorruptFileError as e:
                return e
            if packed:
                return np.packbits(frames.reshape(-1))
            return frames.astype(dtype, copy=False)

        workers = num_workers or min(8, os.cpu_count() or 1)
        kept, skipped = [], []
        log.info("building the frame cache %s from %d files (first pass only)", stem, len(files))
        try:
            with concurrent.futures.ThreadPoolExecutor(workers) as pool, \
                    tqdm(total=len(files), desc=desc or f"caching {stem.name}", unit="file") as bar:
                for start in range(0, len(files), _CHUNK):
                    chunk = files[start:start + _CHUNK]
                    for i, result in enumerate(pool.map(work, chunk), start):
                        if isinstance(result, CorruptFileError):
                            if not skip_corrupt:
                                raise result
                            skipped.append((str(files[i]), result.reason))
                        else:
                            out[len(kept)] = result
                            kept.append(i)
                    bar.update(len(chunk))
            out.flush()
            del out
            os.replace(tmp, stem.with_suffix(".npy"))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if skipped:
            log.warning("left out %d corrupt files of %d (data.skip_corrupt=True); first: %s: %s",
                        len(skipped), len(files), *skipped[0])
        meta = {"version": CACHE_VERSION, "params": params, "packed": bool(packed), "num_rows": len(kept),
                "kept": kept, "skipped": skipped, "files": [os.path.relpath(f, base) for f in files]}
        meta_tmp = stem.parent / f"{stem.name}.tmp-{os.getpid()}.json"
        meta_tmp.write_text(json.dumps(meta))
        os.replace(meta_tmp, stem.with_suffix(".json"))
        array = np.load(stem.with_suffix(".npy"), mmap_mode="r")[: len(kept)]
        return cls(array, shape, packed, np.asarray(kept, np.int64), skipped)
