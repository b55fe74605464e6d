"""iirsnn-jax: spiking networks of IIR synapse filters and threshold neurons (Fang et al., IJCAI 2020).

Table of contents:
  surrogate   spike function with surrogate gradients (`spike`, `SURROGATES`)
  filters     pure IIR filters over a sequence (dual-exponential, first-order, output filter)
  recurrence  the filters' linear-recurrence solver (sequential or associative scan, one backward)
  neurons     pure threshold-and-decaying-reset neuron over a sequence
  native      the spiking scan and the filters' recurrence as compiled CPU kernels (XLA FFI, built on first use)
  layers      Flax NNX layers holding parameters
  architecture, models   networks built from the layer string of a config
  held_input  a frame held for T steps (the "copy" encoding), filtered without its T copies
  losses      spike-count cross-entropy, filtered-output MSE
  layout      our [B, T, ...] layout <-> the reference's time-last layout
  reference   load reference PyTorch state_dicts; `python -m iirsnn_jax.reference check FILE.npz`
  config      the config schema and defaults (`default_config`), a run's saved config (`read_run_config`)
  experiments the reference experiments by name; load configs/<experiment>.py
  validation  checks of a config's values before anything runs
  errors, cli the project's user errors, and what every command shares (one-line errors, --traceback)
  hugepages   transparent huge pages and the kept buffers of XLA (train.py and the benchmark)
  data, training, plots, nir   input pipelines; the loop; pictures; NIR export and import
"""
from iirsnn_jax.filters import (DualExpState, LowPassState, OutputFilterState, dual_exp_iir,
                                dual_exp_output_filter, first_order_low_pass)
from iirsnn_jax.held_input import HeldInput
from iirsnn_jax.models import NetworkOutput, SpikingNetwork, build_model, count_trainable_parameters
from iirsnn_jax.neurons import NeuronState, spiking_neuron
from iirsnn_jax.surrogate import SURROGATES, spike

__all__ = [
    "DualExpState", "LowPassState", "OutputFilterState", "HeldInput", "NeuronState", "NetworkOutput", "SpikingNetwork",
    "SURROGATES", "build_model", "count_trainable_parameters", "dual_exp_iir", "dual_exp_output_filter",
    "first_order_low_pass", "spike", "spiking_neuron",
]
