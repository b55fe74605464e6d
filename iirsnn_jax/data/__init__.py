"""Input pipelines of the reference experiments (SPEC sections 2, 3 and 4), read offline from real files.

  build(config, split) -> Pipeline     batches of config.data.name for this process (pipeline.py)
  make_source(config, split) -> Source the encoded samples of one split, batch by batch
  DatasetNotFoundError, CorruptFileError

One file per source: mnist.py (TFDS or IDX), nmnist.py, gesture.py (tonic layouts), patterns.py
(associative memory), digits.py (scikit-learn); encoding.py holds the encodings, cache.py the on-disk frame
cache, inspect.py the command that writes one sample as the network sees it.
"""
from iirsnn_jax.data.common import CorruptFileError, DatasetNotFoundError
from iirsnn_jax.data.pipeline import Pipeline, build, make_source

__all__ = ["build", "make_source", "Pipeline", "CorruptFileError", "DatasetNotFoundError"]
