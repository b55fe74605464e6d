"""NIR (Neuromorphic Intermediate Representation) export and import of our networks (docs/nir.md).

  sections    our discrete filters as first-order sections <-> NIR LI nodes (forward Euler at step dt)
  export      `to_nir(model)`: a network as a graph of NIR primitives
  importer    `from_nir(graph)`: a graph whose nodes map onto our layers as a SpikingNetwork
  compare     spike agreement of two networks on the same inputs
  workdir     export a train.py run to a file, check a file against the run
  __main__    `python -m iirsnn_jax.nir export|check ...`
"""
from iirsnn_jax.nir.export import to_nir
from iirsnn_jax.nir.importer import SUPPORTED, NIRImportError, from_nir
from iirsnn_jax.nir.sections import NIRExportError

__all__ = ["NIRExportError", "NIRImportError", "SUPPORTED", "from_nir", "to_nir"]
