"""Spiking Heidelberg Digits (SHD) and Spiking Speech Commands (SSC): HDF5 spike files, binned into frames.

On disk (tonic.datasets.SHD / SSC(save_to=ROOT) download and unzip to this layout; the official zips hold
the same .h5 files):
  <data.root>/SHD/shd_train.h5, shd_test.h5                 (also directly in <data.root>)
  <data.root>/SSC/ssc_train.h5, ssc_valid.h5, ssc_test.h5
Each file holds `labels` [N] (integers: 20 classes in SHD, 35 in SSC) and, per sample, `spikes/times`
(seconds, a float array of any length) and `spikes/units` (the channel 0..699 of each spike, same length).
Read with h5py; only these three datasets are used.

Binning: frame t of channel c counts the spikes of c with t * dt <= time < (t + 1) * dt, compared in float64
exactly as written, dt = data.bin_ms / 1000, for t < T = data.length; later spikes are dropped.
data.channel_pool = k sums groups of k neighbouring channels (700 -> 700 / k; k must divide 700).
data.encoding = "count" keeps the counts (uint8, saturating at 255), "or" clips them to 1.
Times that are negative or not finite, units outside 0..699, and times and units of different lengths are
corrupt samples (CorruptFileError naming the file and sample; data.skip_corrupt leaves them out).
Binned samples are cached as the event-camera datasets are (data/cache.py, data.cache).

Splits: SHD has no validation set: dev = a seeded 10 % of shd_train.h5 (data.dev_size samples if >= 0;
torch_randperm(n, data.split_seed), as the other sources), train the rest; SSC uses its own ssc_valid.h5.
Samples: input uint8 [B, T, 700 / k] (counts or 0/1), label int32 [B].
"""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import numpy as np

from iirsnn_jax.data import common
from iirsnn_jax.data.cache import FrameCache
from iirsnn_jax.data.common import CorruptFileError, DatasetNotFoundError
from iirsnn_jax.data.events import default_cache_dir

CHANNELS = 700
CLASSES = {"shd": 20, "ssc": 35}
FOLDERS = {"shd": ("SHD", "shd", "."), "ssc": ("SSC", "ssc", ".")}
FILES = {"shd": {"train": "shd_train.h5", "dev": "shd_train.h5", "test": "shd_test.h5"},
         "ssc": {"train": "ssc_train.h5", "dev": "ssc_valid.h5", "test": "ssc_test.h5"}}
DEV_FRACTION = 0.1  # SHD only
HOW_TO_GET = ("Get it with tonic (tonic.datasets.{cls}(save_to=ROOT, ...) downloads and unzips it to "
              "ROOT/{cls}/), or unzip the official {name}_*.h5.zip files into ROOT/{cls}/.")


def bin_spikes(times: np.ndarray, units: np.ndarray, length: int, dt: float, pool: int = 1) -> np.ndarray:
    """int64 [length, 700 / pool] spike counts of one sample (the rule of the module docstring); times and
    units must already be checked (finite, >= 0, units < 700)."""
    t, units = np.asarray(times, np.float64), np.asarray(units, np.int64)
    early = t < (length + 1) * dt  # the rest lie in frames > T (and could overflow the integer frame index)
    t, units = t[early], units[early]
    frame = np.floor(t / dt).astype(np.int64)
    # t / dt can round across a frame edge: move to the frame that satisfies the inequalities as written.
    frame -= frame * dt > t
    frame += (frame + 1) * dt <= t
    keep = frame < length
    channels = CHANNELS // pool
    flat = frame[keep] * channels + units[keep] // pool
    return np.bincount(flat, minlength=length * channels).reshape(length, channels)


def _open(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise CorruptFileError(path, f"not a readable HDF5 file ({e})") from None


class SpikeFile:
    """One HDF5 file: its labels, and the spikes of sample i, read inside `reading()`. The file is open only
    there (an open HDF5 file cannot be replaced); h5py serialises calls from several threads."""

    def __init__(self, path: Path, classes: int):
        self.path = path
        with _open(path) as f:
            missing = [k for k in ("spikes/times", "spikes/units", "labels") if k not in f]
            if missing:
                raise CorruptFileError(path, f"no dataset {', '.join(missing)}; an SHD/SSC file holds "
                                       "spikes/times, spikes/units and labels")
            labels, n_times, n_units = np.asarray(f["labels"][()]), len(f["spikes/times"]), len(f["spikes/units"])
        if labels.ndim != 1 or not len(labels) == n_times == n_units:
            raise CorruptFileError(path, f"labels {labels.shape}, spikes/times ({n_times},) and spikes/units "
                                   f"({n_units},) must have one entry per sample")
        if len(labels) and (labels.min() < 0 or labels.max() >= classes or
                            not np.array_equal(labels, np.round(labels))):
            raise CorruptFileError(path, f"labels must be integers in 0..{classes - 1}, found "
                                   f"{labels.min()}..{labels.max()}")
        self.labels = labels.astype(np.int32)
        self._lock, self._users, self._handle = threading.Lock(), 0, None

    def __len__(self) -> int:
        return len(self.labels)

    @contextlib.contextmanager
    def reading(self):
        """Keeps the file open for the spikes() calls inside; nested and concurrent uses share one handle."""
        with self._lock:
            if not self._users:
                self._handle = _open(self.path)
            self._users += 1
        try:
            yield self
        finally:
            with self._lock:
                self._users -= 1
                if not self._users:
                    self._handle.close()
                    self._handle = None

    def spikes(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(times float64 [S], units int64 [S]) of sample i; CorruptFileError if they cannot be spikes."""
        if self._handle is None:
            raise RuntimeError("SpikeFile.spikes() is called inside `with file.reading():`")
        times = np.asarray(self._handle["spikes/times"][i], np.float64)
        units = np.asarray(self._handle["spikes/units"][i], np.int64)
        where = f"sample {i}: "
        if times.shape != units.shape or times.ndim != 1:
            raise CorruptFileError(self.path, f"{where}{times.shape} spike times but {units.shape} units")
        if len(times) and not (np.isfinite(times).all() and times.min() >= 0):
            raise CorruptFileError(self.path, f"{where}spike times must be finite and >= 0 (seconds)")
        if len(units) and (units.min() < 0 or units.max() >= CHANNELS):
            raise CorruptFileError(self.path, f"{where}units {units.min()}..{units.max()} outside 0..699")
        return times, units


class SampleRef(os.PathLike):
    """Sample `index` of an HDF5 file, path-like so that FrameCache fingerprints (size, mtime) the file
    that holds it and builds the cache row by row as for one file per sample."""

    def __init__(self, file: SpikeFile, index: int):
        self.file, self.index = file, index

    def __fspath__(self) -> str:
        return str(self.file.path)

    def __str__(self) -> str:
        return f"{self.file.path}[sample {self.index}]"


class SpeechSource:
    """One split of SHD or SSC; see the module docstring."""

    def __init__(self, config, split: str):
        common.check_split(split)
        name = config.data.name
        if name not in CLASSES:
            raise ValueError(f"speech.py reads data.name 'shd' or 'ssc', got {name!r}")
        self.name, self.split, self.num_classes = name, split, CLASSES[name]
        self.length, self.dt = int(config.data.length), float(config.data.bin_ms) / 1000.0
        self.pool, self.encoding = int(config.data.channel_pool), config.data.encoding
        if self.length < 1 or self.dt <= 0:
            raise ValueError(f"data.length={self.length} and data.bin_ms={config.data.bin_ms} must be positive")
        if self.pool < 1 or CHANNELS % self.pool:
            raise ValueError(f"data.channel_pool={self.pool} must divide the {CHANNELS} channels")
        if self.encoding not in ("count", "or"):
            raise ValueError(f"{name} supports data.encoding 'count' or 'or', got {self.encoding!r}")
        self.shape = (self.length, CHANNELS // self.pool)
        self.file = SpikeFile(find_file(Path(config.data.root), name, FILES[name][split]), CLASSES[name])
        refs = [SampleRef(self.file, i) for i in range(len(self.file))]
        if config.data.cache:
            params = {"source": name, "encoding": self.encoding, "length": self.length, "dt": self.dt,
                      "pool": self.pool}
            with self.file.reading():
                self._cache = FrameCache.open_or_build(
                    default_cache_dir(config), f"{name}-{self.file.path.stem}", refs, self.file.path.parent,
                    params, self.encode, self.shape, np.bool_ if self.encoding == "or" else np.uint8,
                    skip_corrupt=bool(config.data.skip_corrupt), num_workers=int(config.data.num_workers),
                    desc=f"{name} {self.file.path.name}: binning spikes once, then cached")
            kept = self._cache.kept
        else:
            self._cache, kept = None, self._readable(refs, bool(config.data.skip_corrupt))
        self._samples = kept  # file index of each readable sample (cache row r holds kept[r])
        self._rows = np.arange(len(kept))
        if name == "shd" and split != "test":
            n_dev = int(config.data.dev_size)
            n_dev = round(DEV_FRACTION * len(kept)) if n_dev < 0 else n_dev
            if not 0 <= n_dev < max(len(kept), 1):
                raise ValueError(f"data.dev_size={n_dev} must leave training samples out of {len(kept)}")
            train, dev = common.split_train_dev(len(kept), n_dev, int(config.data.split_seed))
            self._rows = train if split == "train" else dev
        self.num_examples = len(self._rows)

    def encode(self, ref: SampleRef) -> np.ndarray:
        """The frames [T, 700 / k] of one sample: bool ("or") or uint8 counts saturating at 255 ("count")."""
        counts = bin_spikes(*self.file.spikes(ref.index), self.length, self.dt, self.pool)
        return counts > 0 if self.encoding == "or" else np.minimum(counts, 255).astype(np.uint8)

    def _readable(self, refs, skip_corrupt: bool) -> np.ndarray:
        if not skip_corrupt:
            return np.arange(len(refs))
        kept = []
        with self.file.reading():
            for ref in refs:
                try:
                    self.file.spikes(ref.index)
                    kept.append(ref.index)
                except CorruptFileError as e:
                    common.log.warning("leaving out %s (%s)", ref, e.reason)
        return np.asarray(kept, np.int64)

    def get_batch(self, indices: np.ndarray, epoch: int = 0) -> dict[str, np.ndarray]:
        rows = self._rows[np.asarray(indices, np.int64)]
        if self._cache is not None:
            frames = self._cache.read(rows)
        else:
            with self.file.reading():
                frames = np.stack([self.encode(SampleRef(self.file, int(self._samples[r]))) for r in rows]) \
                    if len(rows) else np.zeros((0, *self.shape), np.uint8)
        return {"input": frames.view(np.uint8) if frames.dtype == np.bool_ else frames,
                "label": self.file.labels[self._samples[rows]]}


def find_file(root: Path, name: str, filename: str) -> Path:
    """root/<folder>/<filename> for the first of the dataset's folders that holds it."""
    for folder in FOLDERS[name]:
        if (root / folder / filename).is_file():
            return root / folder / filename
    looked = "\n  ".join(str(root / folder / filename) for folder in FOLDERS[name])
    how = HOW_TO_GET.format(cls=name.upper(), name=name)
    raise DatasetNotFoundError(
        f"{name.upper()} not found: data.root is {str(root)!r} ({os.path.abspath(root)}); looked for\n  {looked}"
        f"\n{how}\nNothing is downloaded automatically; point --config.data.root=DIR at the folder that holds "
        "the dataset.")


def source(config, split: str) -> SpeechSource:
    return SpeechSource(config, split)
