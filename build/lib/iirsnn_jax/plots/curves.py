"""Training curves from metrics.jsonl: loss, accuracy (classifiers) and spike rates per epoch.

Records are those of training/metrics.py: {"epoch", "split" in train/dev/test, "loss", "accuracy"?,
"spike_rate/<layer>", ...}. A resumed run can write an epoch twice; the last record of each (split, epoch)
wins. Test records (the best checkpoint, and any eval.py runs, which carry a "checkpoint" key) are drawn as
single markers at their epoch. Panels: loss (log scale when it spans more than a decade); accuracy for
classifiers; the dev spike rate of every spiking layer.
"""
from __future__ import annotations

import numpy as np
from etils import epath

from iirsnn_jax.plots import common
from iirsnn_jax.plots.run import TrainedRun


def per_epoch(records: list[dict], split: str) -> list[dict]:
    """Records of `split` written by the training loop (no "checkpoint" key), one per epoch, by epoch."""
    last = {}
    for r in records:
        if r.get("split") == split and "checkpoint" not in r and r.get("epoch") is not None:
            last[int(r["epoch"])] = r
    return [last[e] for e in sorted(last)]


def _series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [r for r in rows if key in r]
    return np.array([r["epoch"] for r in rows], float), np.array([r[key] for r in rows], float)


def _tests(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("split") == "test" and r.get("epoch") is not None]


def plot(run: TrainedRun, out, prefix: str = "") -> list[common.Written]:
    records = run.records
    train, dev = per_epoch(records, "train"), per_epoch(records, "dev")
    if not train and not dev:
        raise ValueError(f"{run.workdir / 'metrics.jsonl'} holds no train or dev records")
    loss_name = "cross-entropy on spike counts" if run.is_classifier else "MSE, filtered output vs target"
    panels = ["loss"] + (["accuracy"] if run.is_classifier else []) + ["rate"]
    caption = (f"From {run.workdir.name}/metrics.jsonl: mean over each epoch's training batches and over the whole "
               "dev split after the epoch; stars: test split with the best checkpoint.")
    fig = common.new_figure(4.3 * len(panels) + 0.4, 3.9, caption)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    epochs = max([r["epoch"] for r in train + dev] + [0])
    for ax, panel in zip(axes, panels):
        if panel == "rate":
            layers = sorted({k for r in dev + train for k in r if k.startswith("spike_rate/")},
                            key=lambda k: run.model.layer_names.index(k.split("/", 1)[1])
                            if k.split("/", 1)[1] in run.model.layer_names else 0)
            rows, split = (dev, "dev") if dev else (train, "train")
            for key in layers:
                ax.plot(*_series(rows, key), marker="o", ms=3, label=key.split("/", 1)[1])
            ax.set_ylabel("spikes per neuron per step")
            ax.set_title(f"{split} spike rate per layer", fontsize=10)
            values = np.concatenate([_series(rows, key)[1] for key in layers]) if layers else np.zeros(1)
            if values.max() > 0 and values[values > 0].min() < values.max() / 20:
                ax.set_yscale("symlog", linthresh=max(values[values > 0].min(), 1e-6))
        else:
            for split, rows in (("train", train), ("dev", dev)):
                e, v = _series(rows, panel)
                if len(e):
                    ax.plot(e, v, marker="o", ms=3.5, color=common.SPLIT_COLOURS[split], label=split)
            for r in _tests(records):
                if panel in r:
                    ax.plot([r["epoch"]], [r[panel]], marker="*", ms=11, ls="none", color=common.SPLIT_COLOURS["test"],
                            label=f"test ({r.get('checkpoint', '')} checkpoint): {r[panel]:.4g}")
            if panel == "loss":
                ax.set_ylabel(loss_name)
                _, values = _series(train + dev, "loss")
                if len(values) and values.min() > 0 and values.max() / values.min() > 10:
                    ax.set_yscale("log")
            else:
                ax.set_ylabel("accuracy (fraction correct)")
                ax.set_ylim(0.0, 1.02)
            ax.set_title(panel, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_xlim(-0.3, epochs + 0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5)
    fig.suptitle(f"{run.name}: training curves ({len(train)} epochs, batch {run.config.train.batch_size})", fontsize=12)
    return [common.save(fig, epath.Path(out) / f"{prefix}training_curves.png")]
