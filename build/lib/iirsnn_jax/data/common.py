"""What every data source shares: errors, the reference's train/dev split, per-sample random keys.

Splits are "train", "dev" and "test". The reference makes dev with `torch.utils.data.random_split(train_set,
[n_train, n_dev], generator=torch.Generator().manual_seed(42))`: train = perm[:n_train], dev = perm[n_train:],
perm = torch.randperm(n). `torch_randperm` reproduces torch's CPU randperm bit for bit (the Fisher-Yates loop
of ATen's randperm_cpu over torch's mt19937, which numpy's legacy MT19937 seeding equals), so with the full
dataset in the reference's file order our dev set is the reference's dev set.

Randomness is keyed by (seed, split, epoch, sample index, stream), independent of batch size, order and
process count, so any sample of any epoch can be recomputed alone (data/inspect.py does that): on the host
(pattern corruption, the Pillow augmentation) by `sample_rng`, one numpy Generator per sample and access; on
the device (Poisson spikes, the default augmentation) by jax keys folded from the same numbers
(device_encoding.sample_keys). STREAMS numbers the streams for both.
"""
from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from iirsnn_jax.errors import UserError

log = logging.getLogger("iirsnn_jax.data")

SPLITS = ("train", "dev", "test")
# Independent random streams of one sample; a stream's number must never change once released.
STREAMS = {"order": 0, "poisson": 1, "augment": 2, "corrupt": 3}


class DatasetNotFoundError(UserError, FileNotFoundError):
    """The dataset is not where `data.root` points. The message says what was looked for and how to get it."""


class CorruptFileError(UserError, ValueError):
    """A data file is truncated, empty, misplaced or holds impossible values. `path` names the file."""

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


class Source(Protocol):
    """A split of a dataset that returns whole batches of encoded samples.

    `get_batch(indices, epoch)` takes split-local sample indices [B] and returns numpy arrays with a leading
    batch axis: `input` [B, T, *S] and `label` int32 [B] (patterns add `target`, `filtered_target`
    [B, T, 300] float32). Sample `i` of epoch `e` is the same whatever batch it is fetched in.
    """

    name: str
    split: str
    num_examples: int

    def get_batch(self, indices: np.ndarray, epoch: int) -> dict[str, np.ndarray]: ...


def check_split(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return SPLITS.index(split)


def sample_rng(seed: int, split: str, epoch: int, index: int, stream: str) -> np.random.Generator:
    """The Generator of one (seed, split, epoch, sample index, stream); see the module docstring."""
    entropy = [int(seed) & 0xFFFFFFFF, check_split(split), int(epoch), int(index), STREAMS[stream]]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def epoch_order(seed: int, split: str, epoch: int, n: int, shuffle: bool) -> np.ndarray:
    """The order in which epoch `epoch` visits the n samples of a split: a seeded permutation or 0..n-1."""
    if not shuffle:
        return np.arange(n)
    entropy = [int(seed) & 0xFFFFFFFF, check_split(split), int(epoch), STREAMS["order"]]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy))).permutation(n)


def torch_randperm(n: int, seed: int) -> np.ndarray:
    """torch.randperm(n, generator=torch.Generator().manual_seed(seed)) on the CPU, exactly.

    ATen (randperm_cpu, n < 2^32/20): r = arange(n); for i < n-1: z = mt() % (n-i); swap r[i], r[i+z],
    where mt() is one 32-bit output of mt19937 initialised by init_genrand(seed mod 2^32).
    """
    bits = np.random.MT19937()
    bits._legacy_seeding(int(seed) & 0xFFFFFFFF)  # init_genrand, as torch's at::mt19937(seed)
    draws = bits.random_raw(max(n - 1, 0)).tolist()
    r = list(range(n))
    for i, u in enumerate(draws):
        z = i + u % (n - i)
        r[i], r[z] = r[z], r[i]
    return np.asarray(r, dtype=np.int64)


def reference_dev_size(n: int, ref_dev: int, ref_total: int, dev_size: int = -1) -> int:
    """Samples held out for dev from a training set of n. dev_size < 0: the reference's count (ref_dev of
    ref_total), scaled down for a partial dataset: min(ref_dev, round(n * ref_dev / ref_total))."""
    if dev_size >= 0:
        if dev_size >= n and n > 0:
            raise ValueError(f"data.dev_size={dev_size} leaves no training sample out of {n}")
        return int(dev_size)
    return int(min(ref_dev, round(n * ref_dev / ref_total)))


def split_train_dev(n: int, n_dev: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """random_split(range(n), [n - n_dev, n_dev], generator seeded `seed`): (train indices, dev indices)."""
    perm = torch_randperm(n, seed)
    return perm[: n - n_dev], perm[n - n_dev:]

