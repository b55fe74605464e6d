"""What a run reports: metrics.jsonl, TensorBoard scalars, and the summaries of summed step outputs.

Steps return sums over their batch (see steps.py); `summarize` turns the sums of an epoch into means:
loss, accuracy (classifiers), and the spike rate of every spiking layer (fraction of (neuron, step) slots
that fire). Only process 0 writes files.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np


def add_sums(total: dict | None, sums: dict) -> dict:
    """Adds the step sums (device or host scalars) to a running total of host floats."""
    sums = {k: float(v) for k, v in jax.device_get(sums).items()}
    if total is None:
        return sums
    return {k: total.get(k, 0.0) + v for k, v in sums.items()}


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


class MetricWriter:
    """Appends JSON lines to <workdir>/metrics.jsonl and mirrors the scalars to TensorBoard."""

    def __init__(self, workdir: str | Path, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.path = Path(workdir) / "metrics.jsonl"
        self._tensorboard = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            self._tensorboard = SummaryWriter(str(Path(workdir) / "tensorboard"))

    def write(self, record: dict, step: int) -> None:
        """record: {"epoch", "split", "loss", ...}; numbers become TensorBoard scalars "<split>/<name>"."""
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), "step": int(step), **record}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key not in ("time", "step", "epoch") and isinstance(value, (int, float, np.floating)):
                self._tensorboard.add_scalar(f"{record.get('split', 'run')}/{key}", float(value), int(step))
        self._tensorboard.flush()

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()


def read_metrics(workdir: str | Path) -> list[dict]:
    """Every record of <workdir>/metrics.jsonl, in order."""
    path = Path(workdir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
