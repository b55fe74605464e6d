"""Batching of any source: seeded epoch order, per-process slices, padding, background prefetch.

Batches are made ahead of use by a pool of data.num_workers threads (0: up to 4), at most data.prefetch
batches ahead, and handed out in order; a batch's content never depends on which thread made it. An epoch
whose first batch took under INLINE_BELOW_S to make (a gather from memory: digits, MNIST) makes the others
in the consumer's thread: there the pool's hand-offs cost more host time than the batches (about 0.08 ms
against 0.01 ms a batch), and on a 2-core CPU that time is taken from the step.

`build(config, split)` returns a `Pipeline`; `pipeline.epoch(e)` iterates the batches of epoch e. Every batch
is a dict of numpy arrays with this process's share of a global batch of `batch_size` samples
(b = batch_size / process_count), compact: the host only gathers, and the device makes the network input
[b, T, *S] inside the jitted step (device_encoding.make_input_fn: copy over T, Poisson spikes, augmentation,
unpacking of event bits):
  input   MNIST uint8 pixels [b, 28, 28]; digits float32 [b, 8, 8]; N-MNIST and gesture "or" packed bits
          uint8 [b, ceil(T*H*W*2 / 8)]; gesture "max"/"avg" uint16 counts [b, T, H, W, 2]; the associative
          memory uint8 [b, T, 300]; time series as their sources give them
  label   int32 [b]
  mask    bool [b]     False on padding rows (the last batch of an epoch, see below)
  index   int32 [b]    split-local sample index, -1 on padding rows
  split, epoch  int32 [b]   the split (common.SPLITS position) and the epoch: with index, they name each
                       row's random draws (Poisson, augmentation) on the device
  target, filtered_target  float32 [b, T, 300]   (associative memory only)
Order: a permutation of the split seeded by (config.seed, split, epoch) when shuffling (train by default),
else 0..n-1. Global batch j holds order[j*B:(j+1)*B]; process p takes rows [p*b, (p+1)*b) of it, so the
processes of a multi-host run read disjoint slices and together see every sample once.
Remainder: drop_remainder drops the last partial batch (default: data.drop_remainder for train, never for
dev/test); otherwise it is padded to full size with mask False rows (zeros), so every batch has one shape
(one compilation) and evaluation covers every sample: weight losses and accuracies by `mask`.
"""
from __future__ import annotations

import collections
import concurrent.futures
import math
import os
import time
from typing import Iterator

import numpy as np

from iirsnn_jax.data import common

INLINE_BELOW_S = 2.5e-4
SOURCES = ("mnist", "nmnist", "gesture", "patterns", "digits", "uea", "shd", "ssc")


def make_source(config, split: str):
    """The Source of `split` for config.data.name (see common.Source)."""
    name = config.data.name
    common.check_split(split)
    if name == "mnist":
        from iirsnn_jax.data import mnist as module
    elif name == "nmnist":
        from iirsnn_jax.data import nmnist as module
    elif name == "gesture":
        from iirsnn_jax.data import gesture as module
    elif name == "patterns":
        from iirsnn_jax.data import patterns as module
    elif name == "digits":
        from iirsnn_jax.data import digits as module
    elif name == "uea":
        from iirsnn_jax.data import uea as module
    elif name in ("shd", "ssc"):
        from iirsnn_jax.data import speech as module
    else:
        raise ValueError(f"data.name must be one of {SOURCES}, got {name!r}")
    return module.source(config, split)


class Pipeline:
    """Batches of one split for one process; see the module docstring."""

    def __init__(self, source, *, batch_size: int, seed: int, shuffle: bool, drop_remainder: bool,
                 process_index: int = 0, process_count: int = 1, prefetch: int = 2, workers: int = 0):
        if batch_size % process_count:
            raise ValueError(f"batch size {batch_size} is not divisible by the {process_count} processes")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} not in [0, {process_count})")
        self.source, self.batch_size, self.seed = source, int(batch_size), int(seed)
        self.shuffle, self.drop_remainder, self.prefetch = shuffle, drop_remainder, int(prefetch)
        self.workers = int(workers) or min(4, os.cpu_count() or 1)
        self.process_index, self.process_count = process_index, process_count
        self.local_batch_size = self.batch_size // process_count
        n = source.num_examples
        self.num_batches = n // self.batch_size if drop_remainder else math.ceil(n / self.batch_size)

    @property
    def num_examples(self) -> int:
        return self.source.num_examples

    def local_indices(self, epoch: int) -> list[np.ndarray]:
        """Per batch, this process's split-local sample indices [b] with -1 for padding rows."""
        order = common.epoch_order(self.seed, self.source.split, epoch, self.num_examples, self.shuffle)
        padded = np.full(self.num_batches * self.batch_size, -1, np.int64)
        used = min(len(order), len(padded))
        padded[:used] = order[:used]
        batches = padded.reshape(self.num_batches, self.process_count, self.local_batch_size)
        return list(batches[:, self.process_index])

    def make_batch(self, indices: np.ndarray, epoch: int) -> dict[str, np.ndarray]:
        return make_batch(self.source, indices, epoch)

    def epoch(self, epoch: int = 0, start_batch: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """The batches of `epoch` from batch `start_batch` on (to resume a run mid-epoch: the batches are
        those an uninterrupted epoch yields there), made up to `prefetch` batches ahead by background threads
        unless the first one was quick to make (see the module docstring)."""
        work = self.local_indices(epoch)[start_batch:]
        if not work:
            return
        started = time.perf_counter()
        first = self.make_batch(work[0], epoch)
        inline = self.prefetch <= 0 or time.perf_counter() - started < INLINE_BELOW_S
        yield first
        if inline:
            for indices in work[1:]:
                yield self.make_batch(indices, epoch)
            return
        yield from _prefetched(lambda i: self.make_batch(i, epoch), work[1:], self.prefetch, self.workers)

    def __iter__(self):
        return self.epoch(0)

    def __len__(self):
        return self.num_batches


def make_batch(source, indices: np.ndarray, epoch: int) -> dict[str, np.ndarray]:
    """The batch of `source` (see the module docstring) that holds split-local samples `indices` [b] of
    `epoch`, with padding rows (index -1) zero-filled and masked."""
    indices = np.asarray(indices)
    mask = indices >= 0
    real = source.get_batch(indices[mask], epoch)
    if mask.all():  # no padding: skip a copy of what can be hundreds of MB (gesture)
        batch = dict(real)
    else:
        batch = {}
        for key, value in real.items():
            full = np.zeros((len(indices), *value.shape[1:]), value.dtype)
            full[mask] = value
            batch[key] = full
    batch["mask"], batch["index"] = mask, indices.astype(np.int32)
    batch["split"] = np.full(len(indices), common.check_split(source.split), np.int32)
    batch["epoch"] = np.full(len(indices), epoch, np.int32)
    return batch


def _prefetched(make, work, depth: int, workers: int):
    """Yield make(w) for w in work, in order, with up to `depth` batches being made ahead by `workers`
    threads (numpy, Pillow and file reads release the GIL). Errors are raised where the batch is consumed."""
    pool = concurrent.futures.ThreadPoolExecutor(max(1, workers), thread_name_prefix="iirsnn-data")
    pending: collections.deque = collections.deque()
    try:
        for w in work:
            pending.append(pool.submit(make, w))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # also when the consumer stops early: drop what was not started
        try:
            pool.shutdown(wait=False, cancel_futures=True)
        except Exception:  # a generator finalised while the interpreter exits finds its modules gone
            pass


def build(config, split: str, *, batch_size: int | None = None, shuffle: bool | None = None,
          drop_remainder: bool | None = None, process_index: int | None = None,
          process_count: int | None = None, prefetch: int | None = None) -> Pipeline:
    """The Pipeline of `split` ("train", "dev" or "test") of config.data; see the module docstring.

    Defaults: batch_size = config.train.batch_size (the global batch), shuffle for train only,
    drop_remainder = data.drop_remainder for train and False otherwise, process index and count from jax,
    prefetch = data.prefetch.
    """
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    train = split == "train"
    return Pipeline(
        make_source(config, split),
        batch_size=int(config.train.batch_size if batch_size is None else batch_size),
        seed=int(config.seed),
        shuffle=train if shuffle is None else shuffle,
        drop_remainder=(train and bool(config.data.drop_remainder)) if drop_remainder is None
        else drop_remainder,
        process_index=process_index, process_count=process_count,
        prefetch=int(config.data.prefetch) if prefetch is None else prefetch,
        workers=int(config.data.num_workers))
