"""Input pipelines of the reference experiments (SPEC sections 2, 3 and 4) and of the time-series tasks, read
offline from real files.

  build(config, split) -> Pipeline     batches of config.data.name for this process (pipeline.py), compact
  make_source(config, split) -> Source the samples of one split, batch by batch
  make_input_fn(config) -> fn(batch)   jittable: the network input [B, T, *S] of a batch, on the device
  DatasetNotFoundError, CorruptFileError

One file per source: mnist.py (TFDS or IDX), nmnist.py, gesture.py (tonic layouts), patterns.py
(associative memory), digits.py (scikit-learn), uea.py (UEA/UCR .ts files), speech.py (SHD, SSC HDF5);
encoding.py bins events, cache.py holds the on-disk frame
cache, device_encoding.py and device_augment.py what the device makes of a batch (copy, Poisson, unpacking,
augmentation), augment.py the host (Pillow) augmentation, inspect.py the command that writes one sample as
the network sees it.
"""
from iirsnn_jax.data.common import CorruptFileError, DatasetNotFoundError
from iirsnn_jax.data.device_encoding import make_input_fn
from iirsnn_jax.data.pipeline import Pipeline, build, make_source

__all__ = ["build", "make_source", "make_input_fn", "Pipeline", "CorruptFileError", "DatasetNotFoundError"]
