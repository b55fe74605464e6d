"""Spike rasters: what the network sees and does on one sample, layer by layer.

One figure per sample of a split: the input [T, *S] on top, then the spikes [T, *F] of every spiking layer
in order, the last being the output. Time runs left to right in steps; neurons are numbered row-major in
our layout ((h, w, c) for conv layers). Classifiers mark the true class on the output raster and state the
predicted one (most output spikes); the associative memory overlays the (delayed) target spikes.
"""
from __future__ import annotations

import numpy as np
from etils import epath

from iirsnn_jax.plots import common
from iirsnn_jax.plots.run import TrainedRun


def sample_batch(run: TrainedRun, count: int, split: str = "dev") -> dict:
    """The first `count` samples of `split` (fewer if the split is smaller): the batch dict, mask applied."""
    batch = next(run.batches(split, batch_size=max(int(count), 1)))
    keep = np.asarray(batch["mask"], bool)
    return {k: np.asarray(v)[keep] for k, v in batch.items()}


def _panel_heights(sizes: list[int]) -> list[float]:
    """Panel heights in inches: larger layers get taller panels, within [1.2, 2.2]; layers of up to 16
    neurons 0.15 inch per neuron, so that every neuron's row and tick label can be read."""
    return [float(np.clip(0.4 + 0.15 * n if n <= 16 else 0.75 + 0.3 * np.log10(n), 1.2, 2.2)) for n in sizes]


def plot_sample(run: TrainedRun, batch: dict, out, row: int, out_batch=None, split: str = "dev",
                prefix: str = "") -> common.Written:
    """Raster figure of sample `row` of batch (input [B, T, *S]); out_batch: run.forward(batch["input"])."""
    out_batch = run.forward(batch["input"]) if out_batch is None else out_batch
    x = common.flat_neurons(np.asarray(batch["input"][row]))
    layers = [(name, common.flat_neurons(s[row])) for name, s in out_batch.layer_spikes.items()]
    label, index = int(batch["label"][row]), int(batch["index"][row])
    heights = _panel_heights([x.shape[1]] + [s.shape[1] for _, s in layers])
    caption = (f"Spike rasters of {run.name} ({run.config.model.layers}), checkpoint step {run.step}: one dot per "
               f"spike, time on x (steps), neuron index on y.")
    fig = common.new_figure(9.0, sum(heights) + 0.6, caption)
    axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights})
    note = common.draw_raster(axes[0], x, colour="tab:gray")
    axes[0].set_title(f"input: {x.shape[1]} values per step, sample shape {tuple(batch['input'].shape[2:])}",
                      fontsize=10, loc="left")
    axes[0].set_ylabel("input index" + note, fontsize=9)
    for k, (ax, (name, spikes)) in enumerate(zip(axes[1:], layers)):
        last = k == len(layers) - 1
        if last and not run.is_classifier and "target" in batch:  # where the recalled spikes should be
            t, n = np.nonzero(batch["target"][row])
            ax.scatter(t, n, s=6, marker="s", facecolors="none", edgecolors="tab:orange", linewidths=0.5,
                       label="target", rasterized=True)
        note = common.draw_raster(ax, spikes, colour="tab:blue" if last else "black")
        title = f"{name}{' (output)' if last else ''}: {spikes.shape[1]} neurons, {int(spikes.sum())} spikes, " \
                f"rate {spikes.mean():.3f} per neuron per step"
        if last and run.is_classifier:
            counts = spikes.sum(axis=0)
            predicted = int(np.argmax(counts))
            ax.axhspan(label - 0.5, label + 0.5, color="tab:green", alpha=0.25, lw=0)
            ax.set_yticks(range(spikes.shape[1]))
            ax.tick_params(axis="y", labelsize=7.5)
            title += f"; true class {label} (green), predicted {predicted} ({int(counts[predicted])} spikes)"
        elif last and "target" in batch:
            ax.legend(loc="upper right", fontsize=8, framealpha=0.8, markerscale=2)
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_ylabel("neuron index" + note, fontsize=9)
    axes[-1].set_xlabel("time step")
    what = f"class {label}" if run.is_classifier else f"pattern {label}"
    fig.suptitle(f"{run.name}: spikes of every layer, {split} sample {index} ({what})", fontsize=12)
    return common.save(fig, epath.Path(out) / f"{prefix}spike_raster_{split}{index}_{what.replace(' ', '')}.png")


def plot(run: TrainedRun, out, samples: int = 3, split: str = "dev", prefix: str = "") -> list[common.Written]:
    """One raster figure for each of the first `samples` samples of `split`."""
    batch = sample_batch(run, samples, split)
    out_batch = run.forward(batch["input"])
    return [plot_sample(run, batch, out, row, out_batch, split, prefix) for row in range(len(batch["label"]))]
