"""Interoperability with the reference PyTorch implementation (zhongyuchen/snn-iir, Snow-Crash/snn-iir).

  state_dict.py  load a reference `state_dict` into our networks, converting every layout difference
  golden.py      run a golden file of the reference through our network and compare (float64)
  __main__.py    `python -m iirsnn_jax.reference check FILE.npz ...` and `... convert CKPT OUT.npz`

The dependency arrow is one-way: golden uses state_dict, the command uses both, and nothing here imports
the command.
"""
from iirsnn_jax.reference.state_dict import (convert_state_dict, converters, load_state_dict, read_state_dict,
                                             strip_prefixes)

__all__ = ["convert_state_dict", "converters", "load_state_dict", "read_state_dict", "strip_prefixes"]
