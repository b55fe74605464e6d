"""Confusion matrix of a classifier on a whole split: true class vs predicted class (most output spikes).

The prediction is argmax of the output spike counts over time, ties to the lowest class, exactly as the
accuracy of training/steps.py. Cells are coloured by the fraction of each true class and labelled with
counts.
"""
from __future__ import annotations

import numpy as np
from etils import epath

from iirsnn_jax.plots import common
from iirsnn_jax.plots.run import TrainedRun


def confusion_matrix(run: TrainedRun, split: str = "dev") -> np.ndarray:
    """int [C, C] counts over every sample of `split`: rows the true class, columns the predicted one."""
    classes = int(run.model.output_shape[-1])
    matrix = np.zeros((classes, classes), np.int64)
    for batch in run.batches(split):
        mask = np.asarray(batch["mask"], bool)
        counts = run.forward(batch["input"]).spikes.sum(axis=1)  # [B, C]
        predicted = np.argmax(counts, axis=-1)
        np.add.at(matrix, (np.asarray(batch["label"])[mask], predicted[mask]), 1)
    return matrix


def plot(run: TrainedRun, out, split: str = "dev", prefix: str = "") -> list[common.Written]:
    if not run.is_classifier:
        raise ValueError(f"{run.name} is not a classifier (train.loss {run.config.train.loss!r})")
    matrix = confusion_matrix(run, split)
    classes = matrix.shape[0]
    fractions = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = float(np.clip(0.45 * classes + 2.0, 5.0, 9.0))
    caption = f"Checkpoint step {run.step}; counts in the cells, colour = fraction of the row (true class)."
    fig = common.new_figure(side + 1.0, side, caption)
    ax = fig.subplots()
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="fraction of the true class")
    if classes <= 20:
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                        color="white" if fractions[i, j] > 0.55 else "black")
    ticks = np.arange(classes) if classes <= 20 else np.arange(0, classes, max(1, classes // 10))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xlabel("predicted class (most output spikes)")
    ax.set_ylabel("true class")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"{run.name}: {split} confusion matrix, accuracy {accuracy:.4f} ({matrix.sum()} samples)",
                 fontsize=11)
    return [common.save(fig, epath.Path(out) / f"{prefix}confusion_matrix_{split}.png")]
