"""N-MNIST from the folder layout of tonic (or of the reference), binned as the reference (SPEC 2.4, 4.2).

On disk (tonic 1.7 extracts the official archives to this layout; the reference reads the same tree):
  <data.root>/NMNIST/Train/<digit>/<name>.bin    (tonic;  also <root>/N-MNIST/..., or <root>/Train/...)
  <data.root>/NMNIST/Test/<digit>/<name>.bin
Each .bin holds 5 bytes an event: x, y, then p = bit 7 of byte 2 and a 23-bit time in us
((byte2 & 0x7F) << 16 | byte3 << 8 | byte4). Samples are ordered digit 0..9, then by file name; the label
is the digit folder. Dot files and files not ending in .bin are ignored, as the reference does; a .bin
anywhere else (outside a digit folder, nested deeper) is a misplaced file and an error.

Network input uint8 0/1 [B, T, 34, 34, 2] (H = y, W = x, C = polarity), label int32 [B]; batches carry
the frames bit-packed, uint8 [B, 8670] at T = 30, and the device unpacks them (events.py, device_encoding.py).
Splits: train 50000 / dev 10000 out of Train with the reference's random_split (seed 42), test = Test.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from iirsnn_jax.data import encoding
from iirsnn_jax.data.common import CorruptFileError, DatasetNotFoundError
from iirsnn_jax.data.events import EventSource, find_dir

SENSOR = (34, 34)
LAYOUTS = ("NMNIST", "N-MNIST", ".")
HOW_TO_GET = ("Get it with tonic (tonic.datasets.NMNIST(save_to=ROOT, train=True/False) downloads and extracts "
              "it), or unzip the official Train.zip and Test.zip from the N-MNIST page into ROOT/NMNIST/.")


def read_events(path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, p, t_us) of one .bin file; CorruptFileError names the file if it cannot be a recording."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0:
        raise CorruptFileError(path, "empty file (no events)")
    if raw.size % 5:
        raise CorruptFileError(path, f"truncated: {raw.size} bytes is not a whole number of 5-byte events")
    ev = raw.reshape(-1, 5).astype(np.int64)
    x, y = ev[:, 0], ev[:, 1]
    if x.max() >= SENSOR[1] or y.max() >= SENSOR[0]:
        # The reference would index out of its 34x34 frame (y = 240 marks a timer overflow in other ATIS
        # recordings; N-MNIST has none).
        raise CorruptFileError(path, f"event at x={x.max()}, y={y.max()} outside the 34x34 sensor")
    p = ev[:, 2] >> 7
    t = ((ev[:, 2] & 0x7F) << 16) | (ev[:, 3] << 8) | ev[:, 4]
    return x, y, p, t


def encode_file(path, length: int) -> np.ndarray:
    """bool [T, 34, 34, 2] frames of one file (SPEC 4.2)."""
    return encoding.nmnist_or(*read_events(path), length, SENSOR)


def list_files(folder: Path) -> tuple[list[Path], list[int]]:
    """The .bin files of Train/ or Test/ in the reference's order, with their labels."""
    files, labels = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        rel = Path(dirpath).relative_to(folder)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        bins = sorted(f for f in filenames if f.endswith(".bin") and not f.startswith("."))
        if not bins:
            continue
        if len(rel.parts) != 1 or rel.name not in tuple("0123456789"):
            raise CorruptFileError(Path(dirpath) / bins[0], f"misplaced: N-MNIST files must lie in {folder}/<digit>/"
                                   " with <digit> one of 0..9; the label comes from that folder")
        files += [Path(dirpath) / f for f in bins]
        labels += [int(rel.name)] * len(bins)
    order = sorted(range(len(files)), key=lambda i: (labels[i], files[i].name))
    return [files[i] for i in order], [labels[i] for i in order]


def source(config, split: str) -> EventSource:
    encoding_name = config.data.encoding
    if encoding_name != "or":
        raise ValueError(f"N-MNIST supports data.encoding='or' (the reference's), got {encoding_name!r}")
    length = int(config.data.length)
    folder = find_dir(Path(config.data.root), LAYOUTS, "Test" if split == "test" else "Train", "N-MNIST",
                      HOW_TO_GET)
    files, labels = list_files(folder)
    if not files:
        raise DatasetNotFoundError(f"N-MNIST: no .bin files in {folder}/<digit>/. {HOW_TO_GET}")
    return EventSource(config, split, name="nmnist", files=files, labels=labels, base=folder,
                       encode=functools.partial(encode_file, length=length), shape=(length, *SENSOR, 2),
                       dtype=np.bool_, params={"source": "nmnist", "encoding": "or", "length": length},
                       ref_dev=10000, ref_total=60000)
