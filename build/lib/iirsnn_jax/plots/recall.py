"""Associative-memory recall: corrupted input, recalled output spikes and target, for each of the ten patterns.

Patterns are [N=300 neurons, T=300 steps] binary images (iirsnn_jax/data/patterns.py): neuron index down,
time step across, as in SPEC 3.1. For each pattern k one sample of the split with label k (the one whose
input lost most of the pattern, among the first 200) is shown as three images in one column: the corrupted
input the network received, the output spikes it produced, and the target (the pattern delayed by 4
steps). The column title gives the per-sample MSE of the filtered output against the filtered target (the
training loss).
"""
from __future__ import annotations

import numpy as np
from etils import epath

from iirsnn_jax.data import patterns
from iirsnn_jax.plots import common
from iirsnn_jax.plots.run import TrainedRun

ROWS = (("input", "corrupted input", "tab:gray"), ("spikes", "recalled output spikes", "tab:blue"),
        ("target", "target (delayed pattern)", "black"))


def removed_spikes(inputs: np.ndarray, labels: np.ndarray, tolerance: int = 2) -> np.ndarray:
    """int [B]: spikes of each sample's pattern with no input spike within +-tolerance steps on the same
    neuron, i.e. what a removed block or removed rows took away (jitter moves spikes by about 1 step).

    inputs: [B, T, N] corrupted inputs; labels: [B] pattern indices."""
    x = np.asarray(inputs) > 0
    near = x.copy()
    for shift in range(1, tolerance + 1):  # dilate along time
        near[:, shift:] |= x[:, :-shift]
        near[:, :-shift] |= x[:, shift:]
    pattern = np.swapaxes(patterns.make_patterns()[np.asarray(labels)], 1, 2) > 0  # [B, T, N]
    return np.sum(pattern & ~near, axis=(1, 2))


def one_per_pattern(run: TrainedRun, split: str = "dev", search: int = 200) -> dict[int, dict]:
    """{pattern k: {"input", "spikes", "target", "filtered", "filtered_target" [T, N], "index", "removed"}}.

    For each pattern, the sample among the first `search` of the split whose input lost the most pattern
    spikes (`removed_spikes`; the first one on ties), so that the figure shows recall from a damaged input."""
    best: dict[int, dict] = {}
    seen = 0
    for batch in run.batches(split):
        rows = np.flatnonzero(batch["mask"])[:max(search - seen, 0)]
        seen += len(rows)
        removed = removed_spikes(batch["input"][rows], batch["label"][rows])
        for r, score in zip(rows, removed):
            k = int(batch["label"][r])
            if k not in best or score > best[k]["removed"]:
                best[k] = {"removed": int(score), "index": int(batch["index"][r]),
                           **{key: np.asarray(batch[key][r]) for key in ("input", "target", "filtered_target")}}
        if seen >= search:
            break
    if best:
        order = sorted(best)
        out = run.forward(np.stack([best[k]["input"] for k in order]))
        for i, k in enumerate(order):
            best[k].update(spikes=np.asarray(out.spikes[i]), filtered=np.asarray(out.filtered[i]))
    return best


def _spike_image(ax, x: np.ndarray, colour: str) -> None:
    """x: [T, N] spikes, drawn as an image with neuron index down and time step across."""
    t, n = np.nonzero(x > 0)
    ax.scatter(t, n, s=0.6, marker="s", c=colour, linewidths=0, rasterized=True)
    ax.set_xlim(-0.5, x.shape[0] - 0.5)
    ax.set_ylim(x.shape[1] - 0.5, -0.5)
    ax.set_aspect("equal")


def plot(run: TrainedRun, out, split: str = "dev", prefix: str = "") -> list[common.Written]:
    """One figure: 3 rows (input, output, target) x 10 columns (patterns)."""
    if run.config.data.name != "patterns":
        raise ValueError(f"{run.name} is not an associative-memory run (data.name {run.config.data.name!r})")
    samples = one_per_pattern(run, split)
    count = len(patterns.NAMES)
    caption = ("Rows: the corrupted input (jitter, a removed block or rows, noise), the spikes of the output layer, "
               "the target (pattern delayed 4 steps). MSE: filtered output vs filtered target, as the loss.")
    fig = common.new_figure(1.75 * count + 0.7, 3 * 1.75 + 0.9, caption)
    axes = fig.subplots(len(ROWS), count, squeeze=False, sharex=True, sharey=True)
    for k in range(count):
        sample = samples.get(k)
        for row, (key, label, colour) in enumerate(ROWS):
            ax = axes[row, k]
            ax.tick_params(labelsize=7)
            if sample is None:
                ax.text(0.5, 0.5, f"no {split} sample\nof pattern {k}", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8)
                continue
            _spike_image(ax, sample[key], colour)
            if row == 0:
                mse = float(np.mean((sample["filtered"] - sample["filtered_target"]) ** 2))
                ax.set_title(f"{k} {patterns.NAMES[k]} ({split} {sample['index']})\n{sample['removed']} spikes "
                             f"removed\nMSE {mse:.4f}", fontsize=8.5)
            if row == len(ROWS) - 1:
                ax.set_xlabel("time step", fontsize=8)
            if k == 0:
                ax.set_ylabel(f"{label}\nneuron index", fontsize=8.5)
    fig.suptitle(f"{run.name}: recall of the ten patterns from corrupted inputs, checkpoint step {run.step}",
                 fontsize=12)
    return [common.save(fig, epath.Path(out) / f"{prefix}recall_patterns_{split}.png")]
