"""The UEA/UCR time-series classification archive (.ts files), read offline with sktime's file reader.

data.name = "uea", data.dataset = "<Problem>" (e.g. "JapaneseVowels"). Files, first found wins:
  <data.root>/<Problem>/<Problem>_TRAIN.ts and _TEST.ts    (the archive's zips unpack to this)
  <data.root>/Multivariate_ts/<Problem>/...,  <data.root>/Univariate_ts/<Problem>/...
  the copy that sktime ships (JapaneseVowels, BasicMotions, GunPoint, ...), without any data.root.
Only `sktime.datasets.load_from_tsfile` is called: it reads the one path it is given. sktime's archive loader
(load_UCR_UEA_dataset) downloads a missing problem, so it is never used; nothing is ever downloaded.

Preprocessing, per sample (a series of T_i steps and C channels):
  1. channel standardisation, (x - mean_c) / std_c, with the statistics of the train split only (every
     real step of the samples left after dev is held out; NaN steps ignored, std 0 counts as 1);
  2. missing values (NaN in the file) become 0, the channel's train mean;
  3. data.upsample = k repeats every step k times (SNN layers need more steps than 7..29 to integrate);
  4. zeros after the end up to T = data.length steps; longer series are cut at T (logged). Zeros and not
     a mask: after standardisation 0 is the channel's mean, and a zero input drives no synaptic current, so
     the network only relaxes after the series ends; the spike-count readout and the loss need no per-step
     mask, and every batch keeps one shape.
Labels: the train file's class names, sorted (numerically when all are numbers), numbered 0..K-1.
Dev: a seeded, stratified part of the train file (the archive has none): data.dev_size samples, -1 for
10 % of it, drawn per class in proportion (largest remainders), seeded by data.split_seed.

Samples: input float32 [B, T, C], label int32 [B].
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from iirsnn_jax.data import common
from iirsnn_jax.data.common import CorruptFileError, DatasetNotFoundError, log

LAYOUTS = (".", "Multivariate_ts", "Univariate_ts")
DEV_FRACTION = 0.1


def shipped_dir() -> Path:
    """The folder of the problems that sktime ships (one sub-folder each)."""
    import sktime

    return Path(sktime.__file__).parent / "datasets" / "data"


def find_problem(root, problem: str) -> Path:
    """The folder that holds <problem>_TRAIN.ts and <problem>_TEST.ts; see the module docstring."""
    if not problem:
        raise ValueError("data.dataset must name a problem of the UEA/UCR archive, e.g. 'JapaneseVowels'")
    candidates = [Path(root) / layout / problem for layout in LAYOUTS] + [shipped_dir() / problem]
    for folder in candidates:
        if (folder / f"{problem}_TRAIN.ts").is_file() and (folder / f"{problem}_TEST.ts").is_file():
            return folder
    looked = "\n  ".join(str(c / f"{problem}_TRAIN.ts") for c in candidates)
    shipped = sorted(p.name for p in shipped_dir().iterdir() if p.is_dir())
    raise DatasetNotFoundError(
        f"UEA/UCR problem {problem!r} not found; looked for\n  {looked}\n(and the _TEST.ts beside it). "
        f"Problems that need no data.root: {', '.join(shipped)}. For others, unzip the archive's problem "
        "into --config.data.root=DIR (DIR/<Problem>/<Problem>_TRAIN.ts). Nothing is downloaded.")


@functools.lru_cache(maxsize=8)
def read_ts(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """(series, class names) of one .ts file: series[i] float64 [T_i, C] (trailing NaNs cut), names [N] str."""
    from sktime.datasets import load_from_tsfile

    try:
        frame, names = load_from_tsfile(str(path), return_data_type="nested_univ")
    except (OSError, ValueError, IndexError, TypeError) as e:  # sktime's parser reports format errors so
        raise CorruptFileError(path, f"not a readable .ts file: {e}") from None
    series = []
    for i, row in enumerate(frame.itertuples(index=False)):
        lengths = {len(s) for s in row}
        if len(lengths) != 1:
            raise CorruptFileError(path, f"sample {i}: its channels have different lengths {sorted(lengths)}")
        x = np.stack([np.asarray(s, np.float64) for s in row], axis=-1)  # [T_i, C]
        real = np.flatnonzero(~np.isnan(x).all(axis=1))
        x = x[: real[-1] + 1] if len(real) else x[:0]  # some archive files pad unequal series with NaN
        if len(x) == 0:
            raise CorruptFileError(path, f"sample {i} has no values")
        series.append(x)
    if not series:
        raise CorruptFileError(path, "no samples")
    return series, np.asarray(names).astype(str)


def class_names(names: np.ndarray) -> list[str]:
    """Sorted distinct class names, numerically when every name is a number ("2" before "10")."""
    distinct = sorted(set(names.tolist()))
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return distinct


def stratified_dev(labels: np.ndarray, n_dev: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, dev indices), both sorted: n_dev samples drawn per class in proportion to its size
    (floor of the quota, then one more for the largest remainders), a seeded permutation within each class."""
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n_dev / len(labels)
    take = np.floor(quota).astype(np.int64)
    take[np.argsort(-(quota - take), kind="stable")[: n_dev - int(take.sum())]] += 1
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5EA])))
    dev = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)])
    dev = np.sort(dev.astype(np.int64))
    return np.setdiff1d(np.arange(len(labels)), dev), dev


def channel_statistics(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std [C] over every non-NaN step of `series`; std 0 (a constant channel) -> 1."""
    steps = np.concatenate(series, axis=0)
    mean, std = np.nanmean(steps, axis=0), np.nanstd(steps, axis=0)
    return mean, np.where((std > 0) & np.isfinite(std), std, 1.0)


def to_frames(series: list[np.ndarray], mean, std, upsample: int, length: int) -> np.ndarray:
    """float32 [N, length, C]: standardised, NaN -> 0, each step repeated `upsample` times, zeros after the
    end, cut at `length`."""
    out = np.zeros((len(series), length, len(mean)), np.float32)
    for i, x in enumerate(series):
        z = np.nan_to_num((x - mean) / std, nan=0.0)
        z = np.repeat(z, upsample, axis=0)[:length]
        out[i, : len(z)] = z
    return out


class UEASource:
    """One split of a UEA/UCR problem, held in memory as float32 [N, T, C]; see the module docstring."""

    name = "uea"

    def __init__(self, config, split: str):
        common.check_split(split)
        self.split, self.problem = split, str(config.data.dataset)
        if config.data.encoding != "copy":
            raise ValueError(f"uea feeds the standardised series as they are: data.encoding must be 'copy', got "
                             f"{config.data.encoding!r}")
        upsample = int(config.data.upsample)
        if upsample < 1:
            raise ValueError(f"data.upsample must be >= 1 (steps each value is repeated), got {upsample}")
        folder = find_problem(config.data.root, self.problem)
        train_path, test_path = (folder / f"{self.problem}_{part}.ts" for part in ("TRAIN", "TEST"))
        train_x, train_names = read_ts(train_path)
        test_x, test_names = read_ts(test_path)
        self.path = test_path if split == "test" else train_path
        channels = {x.shape[1] for x in train_x + test_x}
        if len(channels) != 1:
            raise CorruptFileError(test_path, f"train and test series have different channel counts "
                                   f"{sorted(channels)}")
        self.classes = class_names(train_names)
        number = {name: k for k, name in enumerate(self.classes)}
        unknown = sorted(set(test_names.tolist()) - set(number))
        if unknown:
            raise CorruptFileError(test_path, f"classes {unknown} do not occur in {train_path.name}")
        train_labels = np.asarray([number[n] for n in train_names], np.int32)

        n_dev = int(config.data.dev_size)
        n_dev = round(DEV_FRACTION * len(train_x)) if n_dev < 0 else n_dev
        if not 0 <= n_dev < len(train_x):
            raise ValueError(f"data.dev_size={n_dev} must leave training samples out of {len(train_x)}")
        train_rows, dev_rows = stratified_dev(train_labels, n_dev, int(config.data.split_seed))
        mean, std = channel_statistics([train_x[i] for i in train_rows])

        longest = max(len(x) for x in train_x + test_x) * upsample
        length = int(config.data.length)
        if length < 1:
            raise ValueError(f"data.length={length} must be >= 1 (the longest {self.problem} series spans "
                             f"{longest} steps at data.upsample={upsample})")
        if length < longest:
            log.warning("%s: data.length=%d cuts series of up to %d steps (data.upsample=%d)", self.problem,
                        length, longest, upsample)
        if split == "test":
            self.rows = np.arange(len(test_x))  # the file's sample of each split-local index
            series, labels = test_x, np.asarray([number[n] for n in test_names], np.int32)
        else:
            self.rows = train_rows if split == "train" else dev_rows
            series, labels = [train_x[i] for i in self.rows], train_labels[self.rows]
        self.lengths = np.asarray([min(len(x) * upsample, length) for x in series], np.int32)  # real steps
        self.x, self.labels = to_frames(series, mean, std, upsample, length), labels
        self.num_examples = len(labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def get_batch(self, indices: np.ndarray, epoch: int = 0) -> dict[str, np.ndarray]:
        indices = np.asarray(indices, np.int64)
        return {"input": self.x[indices], "label": self.labels[indices]}


def source(config, split: str) -> UEASource:
    return UEASource(config, split)

