"""Export a trained run (a train.py workdir) to a NIR file, and check a NIR file against the run.

`export_run` restores a checkpoint with plots.run.load_run and writes `to_nir(model)` with nir.write.
`check_run` reads the file back with nir.read, imports it with `from_nir`, and runs both networks on the
first samples of a split (evaluation mode, zero initial state), comparing every spiking layer's spikes.
"""
from __future__ import annotations

import collections
from pathlib import Path

import nir
import numpy as np

from iirsnn_jax.nir import compare
from iirsnn_jax.nir.export import to_nir
from iirsnn_jax.nir.importer import from_nir
from iirsnn_jax.plots.run import TrainedRun, load_run


def export_run(workdir: str | Path, out: str | Path, *, checkpoint: str = "best", approximate: bool = False,
               dt: float = 1.0) -> tuple[nir.NIRGraph, TrainedRun]:
    """Writes checkpoint `checkpoint` of the run in workdir to the NIR file `out`; returns (graph, run)."""
    run = load_run(workdir, checkpoint)
    graph = to_nir(run.model, dt=dt, approximate=approximate)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    nir.write(out, graph)
    return graph, run


def node_types(graph: nir.NIRGraph) -> dict[str, int]:
    """How many nodes of each NIR type the graph holds."""
    return dict(sorted(collections.Counter(type(n).__name__ for n in graph.nodes.values()).items()))


def check_run(path: str | Path, workdir: str | Path | TrainedRun, *, checkpoint: str = "best", samples: int = 256,
              split: str = "dev", dt: float = 1.0) -> tuple[compare.Agreement, int, nir.NIRGraph]:
    """Spike agreement between the NIR file at `path` (re-imported) and the run, on the first `samples`
    samples of `split`; returns (agreement, samples compared, graph read)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no NIR file at {path}")
    graph = nir.read(path)
    imported = from_nir(graph, dt=dt)
    run = workdir if isinstance(workdir, TrainedRun) else load_run(workdir, checkpoint)
    ours, theirs = compare.jitted_forward(run.model), compare.jitted_forward(imported)
    size = min(int(samples), int(run.config.train.eval_batch_size or run.config.train.batch_size))
    result, seen = compare.Agreement(), 0
    for batch in run.batches(split, batch_size=size):
        keep = np.asarray(batch["mask"], bool)
        keep &= np.cumsum(keep) <= samples - seen
        if not keep.any():
            break
        result.add(compare.agreement(ours(batch["input"]), theirs(batch["input"]), keep))
        seen += int(keep.sum())
    return result, seen, graph
