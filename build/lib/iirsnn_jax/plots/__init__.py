"""Pictures of a trained run: `python -m iirsnn_jax.plots --workdir=DIR [--out=DIR/plots]`.

  make.py       make_plots(workdir, out): every figure that applies to the run; KINDS
  run.py        load_run(workdir): config, trained network (Orbax checkpoint), metrics, split batches
  rasters.py    spike rasters of input, hidden layers and output for a few samples
  synapses.py   learned IIR synapse filters: impulse responses and coefficients vs initial values
  recall.py     associative memory: corrupted input, recalled spikes, target for the ten patterns
  curves.py     loss / accuracy / spike rate per epoch from metrics.jsonl
  confusion.py  confusion matrix of a classifier
  common.py     headless fixed-size figures, captions, raster drawing
"""
from iirsnn_jax.plots.make import KINDS, applicable, make_plots
from iirsnn_jax.plots.run import TrainedRun, load_run

__all__ = ["KINDS", "applicable", "make_plots", "TrainedRun", "load_run"]
