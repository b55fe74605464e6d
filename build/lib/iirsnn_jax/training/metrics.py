"""What a run reports: metrics.jsonl, TensorBoard scalars, and the summaries of summed step outputs.

Steps return sums over their batch (see steps.py); the loop adds them up on the device (accumulate.py) and
`summarize` turns the sums of an epoch into means: loss, accuracy (classifiers), and the spike rate of every
spiking layer (fraction of (neuron, step) slots that fire). Keys starting with "_" are the loop's own
bookkeeping, not metrics. Only process 0 writes files.

metrics.jsonl holds one JSON record per line. A record is appended as one whole line; a run that finds the
file's last line cut off (a crash mid-write) starts on a fresh line, and readers skip a damaged line, naming
it, instead of failing on it. In a bucket (gs://...), where objects cannot be appended to, each record
rewrites the object whole.

TensorBoard events of a bucket workdir are written to a local staging folder by tensorboardX and copied
whole into <workdir>/tensorboard/ through `etils.epath` after every record and at close (so they trail the
run by at most the records tensorboardX still had queued). When that copy fails (no credentials, no
write access), the run warns once and goes on without TensorBoard: metrics.jsonl is the run's record.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time

import jax
import numpy as np
from etils import epath

from iirsnn_jax.training.workdir import is_url

log = logging.getLogger("iirsnn_jax.training")


def summarize(total: dict) -> dict:
    """{"loss", "accuracy" (if any), "spike_rate/<layer>", "count"} from summed step outputs."""
    count = max(total.get("count", 0.0), 1.0)
    out = {"loss": total["loss_sum"] / count, "count": int(total.get("count", 0))}
    if "correct" in total:
        out["accuracy"] = total["correct"] / count
    for key, value in total.items():
        if key.startswith("spikes/"):
            out["spike_rate/" + key[len("spikes/"):]] = value / count
    return out


class _TensorBoard:
    """tensorboardX scalars in `folder`: written there directly when it is local; for a bucket URL written to
    a local staging folder and copied whole into `folder` by `sync` (see the module docstring)."""

    def __init__(self, folder: epath.Path):
        from tensorboardX import SummaryWriter

        self.folder = folder
        self._staging = tempfile.mkdtemp(prefix="iirsnn_tensorboard_") if is_url(folder) else None
        self._copied: dict[str, int] = {}  # staged file name -> size last copied
        self._writer = SummaryWriter(self._staging or os.fspath(folder))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self._writer.add_scalar(tag, value, step)

    def sync(self) -> None:
        """Flushes the events; a bucket folder receives every staged file that grew since the last copy."""
        self._writer.flush()
        if self._staging is None:
            return
        for name in sorted(os.listdir(self._staging)):
            data = (epath.Path(self._staging) / name).read_bytes()
            if self._copied.get(name) != len(data):
                (self.folder / name).write_bytes(data)
                self._copied[name] = len(data)

    def close(self) -> None:
        self._writer.close()  # writes what tensorboardX still had queued
        try:
            self.sync()
        finally:
            self.discard()

    def discard(self) -> None:
        """Stops writing; the staging folder (if any) is deleted without another copy."""
        self._writer.close()
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)


class MetricWriter:
    """Appends JSON lines to <workdir>/metrics.jsonl and mirrors the scalars to TensorBoard."""

    def __init__(self, workdir, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.path = epath.Path(workdir) / "metrics.jsonl"
        self._tensorboard = None
        self._fresh_line = False
        if self.enabled:
            self._tensorboard = self._guarded(lambda: _TensorBoard(epath.Path(workdir) / "tensorboard"))
            # A crash mid-write can leave the last line without its newline: start the next record on a new line.
            self._fresh_line = _ends_mid_line(self.path)

    def write(self, record: dict, step: int) -> None:
        """record: {"epoch", "split", "loss", ...}; numbers become TensorBoard scalars "<split>/<name>"."""
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), "step": int(step), **record}
        line = ("\n" if self._fresh_line else "") + json.dumps(record) + "\n"
        self._fresh_line = False
        if is_url(self.path):  # object stores cannot append: rewrite the object whole
            old = self.path.read_text() if self.path.exists() else ""
            self.path.write_text(old + line)
        else:
            with open(self.path, "a") as f:  # one write of whole lines
                f.write(line)
        if self._tensorboard is not None:
            board = self._tensorboard
            for key, value in record.items():
                if key not in ("time", "step", "epoch") and isinstance(value, (int, float, np.floating)):
                    board.add_scalar(f"{record.get('split', 'run')}/{key}", float(value), int(step))
            self._guarded(board.sync)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._guarded(self._tensorboard.close)
            self._tensorboard = None

    def _guarded(self, action):
        """action() for TensorBoard; in a bucket workdir a failure warns once and turns TensorBoard off."""
        if not is_url(self.path):
            return action()
        try:
            return action()
        except Exception as error:  # storage clients raise many kinds (auth, HTTP, OSError)
            log.warning("TensorBoard events cannot be written to %s (%s: %s); the run goes on without "
                        "TensorBoard, metrics.jsonl has every record", self.path.parent / "tensorboard",
                        type(error).__name__, str(error)[:200])
            board, self._tensorboard = self._tensorboard, None
            if board is not None:
                board.discard()
            return None


def _ends_mid_line(path: epath.Path) -> bool:
    """Whether a file exists and its last byte is not a newline (read alone: the file grows all run long)."""
    if not path.exists():
        return False
    size = path.stat().length
    if size == 0:
        return False
    with path.open("rb") as f:
        f.seek(size - 1)
        return f.read(1) != b"\n"


def read_metrics(workdir) -> list[dict]:
    """Every record of <workdir>/metrics.jsonl, in order; a damaged line is skipped with a warning naming it."""
    path = epath.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            log.warning("%s line %d is damaged and skipped: %.80r", path, number, line)
            continue
        records.append(record)
    return records
