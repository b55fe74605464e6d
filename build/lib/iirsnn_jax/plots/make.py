"""All figures of a trained workdir: `make_plots(workdir, out)` picks those that apply to the run.

  rasters    spike rasters of the input and every spiking layer (classifiers and associative memory)
  filters    learned synapse filters: impulse responses and coefficient histograms (networks with F or L)
  recall     corrupted input, recalled spikes and target for the ten patterns (associative memory)
  curves     loss, accuracy and spike rates per epoch from metrics.jsonl
  confusion  confusion matrix on a split (classifiers)
"""
from __future__ import annotations

import logging
from typing import Sequence

from etils import epath

from iirsnn_jax.plots import common, confusion, curves, rasters, recall, synapses
from iirsnn_jax.plots.run import TrainedRun, load_run

KINDS = ("rasters", "filters", "recall", "curves", "confusion")
log = logging.getLogger("iirsnn_jax.plots")


def applicable(run: TrainedRun) -> tuple[str, ...]:
    """The kinds of figure that make sense for this run."""
    kinds = ["rasters"]
    if synapses.filter_layers(run):
        kinds.append("filters")
    if run.config.data.name == "patterns":
        kinds.append("recall")
    kinds.append("curves")
    if run.is_classifier:
        kinds.append("confusion")
    return tuple(kinds)


def make_plots(workdir: epath.PathLike, out: epath.PathLike | None = None, *, kinds: Sequence[str] | None = None,
               checkpoint: str = "best", split: str = "dev", samples: int = 3,
               prefix: str = "") -> list[common.Written]:
    """Writes the PNGs of `kinds` (default: every applicable kind) to out (default workdir/plots).

    Returns what was written (path and pixel size). Raises ValueError for an unknown or inapplicable kind.
    """
    workdir = epath.Path(workdir)
    out = workdir / "plots" if out is None else epath.Path(out)
    run = load_run(workdir, checkpoint)
    if run.step is None:
        log.warning("no %r checkpoint in %s: figures show the network at initialisation", checkpoint, workdir)
    possible = applicable(run)
    kinds = possible if kinds is None else tuple(kinds)
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown figure {kind!r}; expected some of {KINDS}")
        if kind not in possible:
            raise ValueError(f"figure {kind!r} does not apply to {run.name}; possible: {possible}")
    written: list[common.Written] = []
    for kind in kinds:
        if kind == "rasters":
            written += rasters.plot(run, out, samples=samples, split=split, prefix=prefix)
        elif kind == "filters":
            written += synapses.plot(run, out, prefix=prefix)
        elif kind == "recall":
            written += recall.plot(run, out, split=split, prefix=prefix)
        elif kind == "curves":
            written += curves.plot(run, out, prefix=prefix)
        else:
            written += confusion.plot(run, out, split=split, prefix=prefix)
        log.info("%s: %s", kind, ", ".join(str(w.path) for w in written))
    return written
