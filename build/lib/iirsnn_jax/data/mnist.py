"""MNIST from a TFDS data_dir or from the IDX files, encoded as the reference (SPEC 2.1, 2.3, 4.1).

Where (data.root, data.source = auto | tfds | idx):
  tfds: <root>/mnist/<version>/ as `tfds build mnist --data_dir=<root>` (or tfds.load) writes it; <root>
        may be a bucket (gs://...). Read without TensorFlow (tfds_reader.py), back in the IDX order.
  idx:  train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte
        (each possibly .gz) in <root>, <root>/MNIST/raw (torchvision's layout, the reference's ./data) or
        <root>/mnist.
  auto: tfds if <root> holds a prepared mnist (or is a bucket), else idx.
Splits: train = 50000 and dev = 10000 of the 60000 training images by the reference's random_split (seed 42,
the reference's own dev set), test = the official 10000.
Batches (what the host hands to the device): input uint8 pixels [B, 28, 28], label int32 [B]. The device
makes the network input [B, T, 28, 28, 1] (device_encoding.py): "copy" (data.encoding): float32 pixel/255
at every step; "poisson": uint8 spikes with P = pixel/255 per step, fresh at every access.
Augmentation (data.augment, the reference's crop + rotation) on train; the reference also augmented dev
(SPEC 6.7), which data.augment_dev=True replicates. It runs on the device (device_augment.py), or here with
Pillow when data.augment_on = "host_pillow" (augment.py, keyed by seed, split, epoch, index).
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from iirsnn_jax.data import augment, common, tfds_reader
from iirsnn_jax.data.common import CorruptFileError, DatasetNotFoundError, log

IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_DIRS = (".", "MNIST/raw", "mnist", "MNIST")
# The first labels of the official files: proof that a TFDS copy was put back in the IDX order.
KNOWN_FIRST_LABELS = {"train": (5, 0, 4, 1, 9, 2, 1, 3, 1, 4), "test": (7, 2, 1, 0, 4, 1, 4, 9, 5, 9)}
HOW_TO_GET = ("Get MNIST with TFDS (`tfds build mnist --data_dir=ROOT` on a machine with network), or put the "
              "four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
              "t10k-labels-idx1-ubyte.gz, from the MNIST distribution or any mirror) in ROOT.")


IDX_KINDS = {1: "a labels file (1 dimension)", 3: "an images file (3 dimensions)"}


def read_idx(path: Path, ndim: int | None = None) -> np.ndarray:
    """An IDX file (optionally gzipped) as a uint8 array of `ndim` dimensions if given; CorruptFileError names
    it if it is damaged or of the other IDX type (images for labels or the other way round)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise CorruptFileError(path, f"cannot be read ({e})") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise CorruptFileError(path, "not an unsigned-byte IDX file (bad magic number)")
    if ndim is not None and data[3] != ndim:
        found = IDX_KINDS.get(data[3], f"an IDX file of {data[3]} dimensions")
        raise CorruptFileError(path, f"wrong IDX type: the magic number says {found}, expected {IDX_KINDS[ndim]}")
    ndim = data[3]
    head = 4 + 4 * ndim
    if len(data) < head:
        raise CorruptFileError(path, "truncated header")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(data) - head != size:
        raise CorruptFileError(path, f"truncated or padded: {len(data) - head} data bytes for shape {shape}")
    return np.frombuffer(data, np.uint8, offset=head).reshape(shape)


def _find_idx(root: Path, name: str) -> Path | None:
    for d in IDX_DIRS:
        for suffix in ("", ".gz"):
            if (root / d / (name + suffix)).is_file():
                return root / d / (name + suffix)
    return None


def _find_tfds(root: str):
    """<root>/mnist/<newest version>/ (or root itself) holding a prepared TFDS mnist, else None."""
    from etils import epath

    root_path = epath.Path(root)
    if (root_path / "dataset_info.json").exists():
        return root_path
    found = [d for d in (root_path / "mnist").glob("*") if (d / "dataset_info.json").exists()] \
        if (root_path / "mnist").exists() else []
    if not found:
        return None
    return max(found, key=lambda d: tuple(int(v) if v.isdigit() else 0 for v in d.name.split(".")))


def _read_tfds(builder_dir, split: str) -> tuple[np.ndarray, np.ndarray]:
    examples, info = tfds_reader.read_split(builder_dir, split)
    images = np.stack([np.asarray(e["image"]).reshape(28, 28) for e in examples]).astype(np.uint8)
    labels = np.asarray([int(e["label"]) for e in examples], np.int64)
    if not info.disable_shuffling:
        position = tfds_reader.canonical_order(split, len(labels))
        images, labels = images[position], labels[position]
        known = KNOWN_FIRST_LABELS[split]
        if len(labels) in (60000, 10000) and tuple(labels[:len(known)]) != known:
            log.warning("TFDS mnist %s: could not restore the IDX order; the dev split is not the reference's",
                        split)
    return images, labels


def load_arrays(config, folder: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 28, 28] and int64 labels [N] of "train" (60000) or "test" (10000), in IDX order."""
    root, how = str(config.data.root), config.data.source
    if how not in ("auto", "tfds", "idx"):
        raise ValueError(f"data.source must be auto, tfds or idx, got {how!r}")
    if how != "idx":
        tfds_dir = _find_tfds(root)
        if tfds_dir is not None:
            return _read_tfds(tfds_dir, folder)
    if how != "tfds" and "://" not in root:
        paths = [_find_idx(Path(root), n) for n in IDX_FILES[folder]]
        if all(p is not None for p in paths):
            images, labels = read_idx(paths[0], ndim=3), read_idx(paths[1], ndim=1)
            if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (len(images),):
                raise CorruptFileError(paths[0], f"images {images.shape} and labels {labels.shape} do not match")
            return images, labels.astype(np.int64)
    looked = []
    if how != "idx":
        looked.append(f"a TFDS-prepared mnist in {root}/mnist/<version>/ (dataset_info.json)")
    if how != "tfds":
        looked += [f"{os.path.normpath(os.path.join(root, d, n))}[.gz]" for d in IDX_DIRS for n in IDX_FILES[folder]]
    raise DatasetNotFoundError(f"MNIST {folder} set not found (data.source={how!r}); looked for:\n  " +
                               "\n  ".join(looked) + f"\n{HOW_TO_GET}\nNothing is downloaded automatically; "
                               "point --config.data.root=DIR at the folder that holds it.")


class MnistSource:
    """One split of MNIST, encoded; see the module docstring."""

    name = "mnist"

    def __init__(self, config, split: str, images: np.ndarray | None = None, labels: np.ndarray | None = None):
        common.check_split(split)
        self.split, self.seed = split, int(config.seed)
        if config.data.encoding not in ("copy", "poisson"):
            raise ValueError(f"MNIST supports data.encoding 'copy' or 'poisson', got {config.data.encoding!r}")
        if images is None:
            images, labels = load_arrays(config, "test" if split == "test" else "train")
        if split != "test":
            n_dev = common.reference_dev_size(len(images), 10000, 60000, int(config.data.dev_size))
            train, dev = common.split_train_dev(len(images), n_dev, int(config.data.split_seed))
            keep = train if split == "train" else dev
            images, labels = images[keep], labels[keep]
        self.images, self.labels = images, labels.astype(np.int32)
        self.augment = split in augment.augmented_splits(config)
        self.augment_on_host = self.augment and augment.augment_on(config) == "host_pillow"
        self.num_examples = len(self.images)

    def get_batch(self, indices: np.ndarray, epoch: int = 0) -> dict[str, np.ndarray]:
        indices = np.asarray(indices, np.int64)
        images = self.images[indices]
        if self.augment_on_host and len(indices):
            images = np.stack([augment.reference_augment(img, common.sample_rng(self.seed, self.split, epoch, i,
                                                                                  "augment"))
                               for img, i in zip(images, indices)])
        return {"input": images, "label": self.labels[indices]}


def source(config, split: str) -> MnistSource:
    return MnistSource(config, split)
