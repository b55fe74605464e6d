"""DVS128 Gesture from tonic's folder layout, binned as the reference (SPEC 2.5, 4.3).

On disk (tonic 1.7 `DVSGesture(save_to=ROOT)` extracts its preprocessed archives to this layout):
  <data.root>/DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy   (also <root>/ibmGestureTrain/...)
  <data.root>/DVSGesture/ibmGestureTest/user<NN>_<lighting>/<label>.npy
Each .npy is one gesture: an [E, 4] array of events (x, y, p, t) with t in milliseconds (tonic cut the
recordings into gestures and reduced time to ms; it multiplies t by 1000, and so do we). The label 0..10 is
the file name, 10 = "other gestures"; 11 classes as the reference. Samples are ordered by user folder name,
then label (tonic's own order depends on the file system).

Encodings (data.encoding): "or" (snn_conv_1_gesture, _30): uint8 0/1 frames; "max" / "avg" (gesture_max,
gesture_avg): float32 frames, distinct active 1 ms slots per bin divided by the frame's max / sum.
Network input [B, T, 128, 128, 2] (H = y, W = x, C = polarity), label int32 [B]; batches carry the frames
bit-packed ("or") or as uint16 counts ("max", "avg"), and the device unpacks or normalises them
(events.py, device_encoding.py).
Splits: dev = 128 samples of ibmGestureTrain by the reference's random_split (seed 42), train = the rest;
test = ibmGestureTest. tonic holds 1077 train and 264 test gestures where the reference (spikingjelly
0.0.0.0.3) had 1056 and 288 (SPEC 4.3), so the samples and the dev split cannot be the reference's own.
"""
from __future__ import annotations

import functools
import os
import re
import threading
from pathlib import Path

import numpy as np

from iirsnn_jax.data import encoding
from iirsnn_jax.data.common import CorruptFileError, DatasetNotFoundError
from iirsnn_jax.data.events import EventSource, find_dir

SENSOR = (128, 128)
NUM_CLASSES = 11
LAYOUTS = ("DVSGesture", ".")
HOW_TO_GET = ("Get it with tonic (tonic.datasets.DVSGesture(save_to=ROOT, train=True/False) downloads and "
              "extracts ibmGestureTrain.tar.gz / ibmGestureTest.tar.gz into ROOT/DVSGesture/).")
_USER_DIR = re.compile(r"user\d+_\w+")
# np.load parses a .npy header with ast.literal_eval; with several threads parsing at once, CPython 3.11.7
# (and other releases before the fix of CPython gh-106905) can fail at random with "SystemError: AST
# constructor recursion depth mismatch". So the cache builder's threads load one file at a time; binning the
# events stays parallel.
_NPY_LOAD = threading.Lock()


def read_events(path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, p, t_us) of one tonic gesture file; CorruptFileError names the file if it is not one."""
    try:
        with _NPY_LOAD:
            ev = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise CorruptFileError(path, f"cannot be read as a .npy array ({e})") from e
    if ev.ndim != 2 or ev.shape[1] != 4:
        raise CorruptFileError(path, f"expected an [events, 4] array of (x, y, p, t), got shape {ev.shape}")
    if ev.shape[0] == 0:
        raise CorruptFileError(path, "no events")
    if ev.dtype.kind not in "iuf" or (ev.dtype.kind == "f" and not np.array_equal(ev, np.round(ev))):
        raise CorruptFileError(path, f"events must be integers, got dtype {ev.dtype} with fractions")
    x, y, p, t_ms = (ev[:, i].astype(np.int64) for i in range(4))
    if x.min() < 0 or y.min() < 0 or x.max() >= SENSOR[1] or y.max() >= SENSOR[0]:
        raise CorruptFileError(path, "event coordinates outside the 128x128 sensor")
    if p.min() < 0 or p.max() > 1:
        raise CorruptFileError(path, "polarity outside {0, 1}")
    return x, y, p, t_ms * 1000  # us, as tonic's DVSGesture.__getitem__


def encode_file(path, length: int, counts: bool) -> np.ndarray:
    """bool [T, 128, 128, 2] OR frames, or uint16 per-bin counts of active 1 ms slots (SPEC 2.5)."""
    events = read_events(path)
    if counts:
        return encoding.gesture_count(*events, length, SENSOR)
    return encoding.gesture_or(*events, length, SENSOR)


def list_files(folder: Path) -> tuple[list[Path], list[int]]:
    """The gesture files of ibmGestureTrain/ or ibmGestureTest/ ordered by user folder, then label."""
    files, labels = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(folder)
        npys = [f for f in filenames if f.endswith(".npy") and not f.startswith(".")]
        if not npys:
            continue
        if len(rel.parts) != 1 or not _USER_DIR.fullmatch(rel.name):
            raise CorruptFileError(Path(dirpath) / npys[0], f"misplaced: gesture files must lie in "
                                   f"{folder}/user<NN>_<lighting>/<label>.npy")
        found = []
        for f in npys:
            stem = f[:-4]
            if not stem.isdigit() or int(stem) >= NUM_CLASSES:
                raise CorruptFileError(Path(dirpath) / f, f"misplaced: the file name must be the label "
                                       f"0..{NUM_CLASSES - 1} followed by .npy")
            found.append((int(stem), Path(dirpath) / f))
        for label, path in sorted(found):
            files.append(path)
            labels.append(label)
    return files, labels


def source(config, split: str) -> EventSource:
    mode = config.data.encoding
    if mode not in ("or", "max", "avg"):
        raise ValueError(f"DVS Gesture supports data.encoding 'or', 'max' or 'avg', got {mode!r}")
    length, counts = int(config.data.length), mode != "or"
    folder = find_dir(Path(config.data.root), LAYOUTS, "ibmGestureTest" if split == "test" else
                      "ibmGestureTrain", "DVS128 Gesture", HOW_TO_GET)
    files, labels = list_files(folder)
    if not files:
        raise DatasetNotFoundError(f"DVS Gesture: no <label>.npy files in {folder}/user*/. {HOW_TO_GET}")
    return EventSource(config, split, name="gesture", files=files, labels=labels, base=folder,
                       encode=functools.partial(encode_file, length=length, counts=counts),
                       shape=(length, *SENSOR, 2), dtype=np.uint16 if counts else np.bool_,
                       params={"source": "gesture", "encoding": "count" if counts else "or", "length": length},
                       ref_dev=128, ref_total=1056)
