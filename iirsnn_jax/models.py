"""The paper's networks, built from the `model` block of a config (see iirsnn_jax/config.py).

`SpikingNetwork` takes batch-major inputs [B, T, ...] (the layout of the data pipelines) or a frame held over
T steps (held_input.py), works time-major inside (a first filter reads the batch-major input in place), runs
its layers one after the other over the whole sequence, and returns batch-major outputs. With sequential
filter scans, a spiking layer, the dropout after it, the next filter and a 2x2 max-pool after that run as one
scan (`SpikingNetwork.passes`, neurons.py): parameters, layer names and states are those of the separate layers.
"""
from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from iirsnn_jax import architecture, layers
from iirsnn_jax.held_input import HeldInput


class NetworkOutput(NamedTuple):
    """What a network returns. All arrays batch-major.

    spikes: [B, T, N] spikes of the last spiking layer.
    filtered: [B, T, N] the output filter's response (networks ending in `O`), else None.
    layer_spikes: {layer name: [B, T, *F]} spikes of every spiking layer, in order; {} when the network was
      called with keep_layer_spikes=False (training keeps only the counts: the full spikes of every layer
      are the largest outputs of a conv network).
    spike_rates: {layer name: [B] float32} firing rate per sample of every spiking layer: its spikes summed
      over T and F, divided by T * prod(F).
    state: tuple with one entry per layer (its final NamedTuple state, or None for stateless layers).
    """

    spikes: jax.Array
    filtered: jax.Array | None
    layer_spikes: dict[str, jax.Array]
    spike_rates: dict[str, jax.Array]
    state: tuple


# model.remat: what the backward pass keeps of each chunk of `model.remat_chunk` time steps besides its input
# and initial states; the rest is recomputed. "none" turns rematerialisation off (fastest, most memory).
REMAT_POLICIES = {
    "none": None,
    "scans": jax.checkpoint_policies.save_only_these_names(layers.SYNAPTIC_CURRENT),  # recompute the scans
    "full": jax.checkpoint_policies.nothing_saveable,  # recompute the dense and conv maps too
}

_DTYPES = {"float32": jnp.float32, "float64": jnp.float64, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


# model.scan: how the filters solve their recurrences (recurrence.py). "auto": sequential on CPU (measured
# faster there, and it lets a spiking layer and the next filter share one pass), associative on accelerators
# (on an H200 1.09x the sequential step for snn_mlp_1, 1.17x snn_conv_1_mnist, 1.45x the time series, 0.96x
# snn_conv_1_nmnist: docs/performance.md).
SCAN_OPTIONS = ("auto", "sequential", "associative")


def resolve_scan(option: str, backend: str | None = None) -> str:
    """The solver that `model.scan = option` means on `backend` (default: JAX's default backend)."""
    if option not in SCAN_OPTIONS:
        raise ValueError(f"model.scan must be one of {SCAN_OPTIONS}, got {option!r}")
    if option != "auto":
        return option
    return "sequential" if (backend or jax.default_backend()) == "cpu" else "associative"


def _dtype(name: str):
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r}; expected one of {sorted(_DTYPES)}")
    return _DTYPES[name]


class SpikingNetwork(nnx.Module):
    """A stack of filter, spiking, pooling, dropout and flatten layers built from a layer string."""

    def __init__(self, cfg: Any, *, rngs: nnx.Rngs):
        """cfg: the config's `model` block (ConfigDict or any object with the same attributes)."""
        self.input_shape = tuple(int(d) for d in cfg.input_shape)
        if cfg.reference_spatial_order not in ("hw", "xy"):
            raise ValueError(f"model.reference_spatial_order must be 'hw' or 'xy', got {cfg.reference_spatial_order!r}")
        self.reference_spatial_order = cfg.reference_spatial_order
        dtype, param_dtype = _dtype(cfg.dtype), _dtype(cfg.param_dtype)
        self.scan = resolve_scan(cfg.scan)
        cpu_kernel = getattr(cfg, "cpu_kernel", "native")  # absent from configs saved before it; layers check it
        filter_args = dict(trainable=cfg.train_coefficients, dtype=dtype, param_dtype=param_dtype, scan=self.scan,
                           cpu_kernel=cpu_kernel)
        neuron_args = dict(tau_m=cfg.tau_m, use_bias=cfg.train_bias, reset_v=cfg.reset_v, cpu_kernel=cpu_kernel,
                           membrane_filter=cfg.membrane_filter, surrogate_name=cfg.surrogate,
                           surrogate_width=cfg.surrogate_width, threshold=cfg.threshold, dtype=dtype,
                           param_dtype=param_dtype, rngs=rngs)
        shape, names, spiking = self.input_shape, [], []
        for spec in architecture.parse(cfg.layers):
            kind, args = spec.kind, spec.args
            if kind in ("C", "P") and len(shape) != 3:
                raise ValueError(f"model.layers: {spec.name} needs an (H, W, C) input, got shape {shape}")
            if kind == "N" and len(shape) != 1:
                raise ValueError(f"model.layers: {spec.name} needs a flat input (add 'flat'), got shape {shape}")
            if kind == "F":
                layer = layers.DualExpFilter(shape, cfg.tau_m, cfg.tau_s, **filter_args)
            elif kind == "L":
                layer = layers.LowPassFilter(shape, cfg.tau_m, **filter_args)
            elif kind == "O":
                layer = layers.OutputFilter(shape, cfg.output_tau_m, cfg.output_tau_s, dtype=dtype,
                                            param_dtype=param_dtype)
            elif kind == "N":
                layer = layers.SpikingDense(shape[0], args[0], **neuron_args)
            elif kind == "C":
                layer = layers.SpikingConv(shape, *args, **neuron_args)
            elif kind == "P":
                layer = layers.MaxPool(shape, *args)
            elif kind == "D":
                layer = layers.Dropout(shape, cfg.dropout_rate)
            else:
                layer = layers.Flatten(shape)
            if spec.name in names:
                raise ValueError(f"model.layers: two layers named {spec.name}")
            setattr(self, spec.name, layer)
            names.append(spec.name)
            if kind in ("N", "C"):
                spiking.append(spec.name)
            shape = layer.output_shape()
        if not spiking:
            raise ValueError("model.layers has no spiking layer (N or C)")
        self.layer_names = tuple(names)
        self.spiking_layer_names = tuple(spiking)
        self.passes = _passes(self.layers, self.scan)
        self.output_shape = shape
        self.preserve_state = bool(cfg.preserve_state)
        if cfg.remat not in REMAT_POLICIES:
            raise ValueError(f"model.remat must be one of {sorted(REMAT_POLICIES)}, got {cfg.remat!r}")
        if int(cfg.remat_chunk) < 0:
            raise ValueError(f"model.remat_chunk must be >= 0 time steps, got {cfg.remat_chunk}")
        self.remat, self.remat_chunk = cfg.remat, int(cfg.remat_chunk)

    @property
    def layers(self):
        return [getattr(self, name) for name in self.layer_names]

    def initial_state(self, batch_size: int) -> tuple:
        """Zero state for every layer (None for stateless ones): the reference's initial condition."""
        return tuple(layer.initial_state(batch_size) if hasattr(layer, "initial_state") else None
                     for layer in self.layers)

    def __call__(self, inputs, state: tuple | None = None, *, key: jax.Array | None = None,
                 keep_layer_spikes: bool = True) -> NetworkOutput:
        """Runs the network.

        Args:
          inputs: [B, T, *S] with prod(S) = prod(model.input_shape), reshaped row-major to the input shape; or a
            HeldInput (a frame [B, *S] at each of T steps), which a first filter starting from zeros runs as
            its step response times the frame (else the frame is repeated).
          state: initial layer states (from `initial_state` or a previous call's `NetworkOutput.state`) or
            None for zeros. Gradients do not flow into it: it is treated as a constant, as the reference
            detaches the carried states.
          key: PRNG key for dropout; None means evaluation mode (dropout off).
          keep_layer_spikes: return the spikes of every spiking layer (else only their rates).
        """
        b, t = inputs.shape[:2]
        if math.prod(inputs.shape[2:]) != math.prod(self.input_shape):
            raise ValueError(f"network input of shape {inputs.shape} does not hold [B, T, *{self.input_shape}]")
        states = (None,) * len(self.layer_names) if state is None else jax.lax.stop_gradient(state)
        held = isinstance(inputs, HeldInput)
        if held and not (self.remat == "none" and states[0] is None
                         and isinstance(self.layers[0], layers.SynapseFilter)):
            inputs, held = inputs.repeated(), False
        x = inputs.frame.reshape(b, *self.input_shape) if held else inputs.reshape(b, t, *self.input_shape)
        keys = tuple(None if key is None else jax.random.fold_in(key, index) for index in range(len(self.layers)))
        run = functools.partial(self._run, keep_layer_spikes=keep_layer_spikes)
        if self.remat == "none":
            new_states, outputs = run(x, states, keys, batch_major=True, held_length=t if held else None)
        else:  # time-major from here on
            new_states, outputs = self._run_rematerialised(run, jnp.moveaxis(x, 1, 0), states, keys)
        layer_spikes = {name: jnp.moveaxis(y, 0, 1) for name, y in outputs["layer_spikes"].items()}
        rates = {name: count / (t * math.prod(getattr(self, name).output_shape()))
                 for name, count in outputs["spike_counts"].items()}
        filtered = outputs["filtered"]
        return NetworkOutput(jnp.moveaxis(outputs["spikes"], 0, 1),
                             None if filtered is None else jnp.moveaxis(filtered, 0, 1), layer_spikes, rates,
                             tuple(new_states))

    def _run(self, x, states, keys, *, keep_layer_spikes: bool, batch_major: bool = False,
             held_length: int | None = None):
        """All layers over x [T, B, ...] (or [B, T, ...] when batch_major; or the frame [B, ...] held for
        held_length steps, when the first layer is a filter with zero state): (new states, outputs), outputs a
        dict of "spikes" (last spiking layer) and "filtered" ([T, B, N] or None), "layer_spikes" ({name:
        [T, B, *F]}) and "spike_counts" ({name: [B]}). Runs `self.passes`: a spiking layer with the dropout and
        filter after it is one scan."""
        new_states = list(states)
        outputs = {"spikes": None, "filtered": None, "layer_spikes": {}, "spike_counts": {}}
        all_layers = self.layers
        passes = self.passes
        if held_length is not None:  # the first pass is that filter on its own (_passes)
            x, new_states[0] = all_layers[0].held(x, held_length)
            batch_major, passes = False, passes[1:]
        for index, *fused in passes:
            layer, name = all_layers[index], self.layer_names[index]
            if batch_major and not isinstance(layer, layers.SynapseFilter):
                x, batch_major = jnp.moveaxis(x, 1, 0), False  # time-major from here on
            if not isinstance(layer, layers.SpikingLayer):
                extra = {"time_axis": 1} if batch_major else {}
                x, new_states[index] = layer(x, states[index], key=keys[index], **extra)
                batch_major = False
                if isinstance(layer, layers.OutputFilter):
                    outputs["filtered"] = x
                continue
            drop, filt, pool = (*fused, None)[:3] if fused else (None, None, None)
            out = layer.run(x, states[index], dropout=None if drop is None else all_layers[drop],
                            dropout_key=None if drop is None else keys[drop],
                            next_filter=None if filt is None else all_layers[filt],
                            filter_state=None if filt is None else states[filt], keep_spikes=keep_layer_spikes,
                            pool=None if pool is None else all_layers[pool])
            new_states[index] = out.neuron_state
            if filt is not None:
                new_states[filt] = all_layers[filt].state_type(*out.filter_state)
            spikes = out.out if filt is None else out.spikes
            outputs["spike_counts"][name] = out.counts
            if filt is None:
                outputs["spikes"] = spikes
            if keep_layer_spikes:
                outputs["layer_spikes"][name] = spikes
            x = out.out
        return tuple(new_states), outputs

    def _run_rematerialised(self, run, x, states, keys):
        """`_run` over chunks of `remat_chunk` time steps, one `lax.scan` step per chunk, each chunk under
        `jax.checkpoint`: the backward pass keeps a chunk's input and initial states (plus, for "scans", its
        synaptic currents) and recomputes the rest chunk by chunk, so activation memory scales with the chunk,
        not with T. Every layer is causal and carries its full state, so the outputs equal `_run`'s; dropout
        draws a fresh mask per chunk (same distribution, other draws)."""
        t, b = x.shape[:2]
        chunk = self.remat_chunk or t
        if t % chunk:
            raise ValueError(f"model.remat_chunk={chunk} must divide the sequence length T={t}")
        if any(s is None for s, layer in zip(states, self.layers) if hasattr(layer, "initial_state")):
            zeros = self.initial_state(b)
            states = tuple(z if s is None else s for s, z in zip(states, zeros))
        run = jax.checkpoint(run, policy=REMAT_POLICIES[self.remat])

        def step(carry, inputs):
            x_chunk, index = inputs
            chunk_keys = tuple(None if k is None else jax.random.fold_in(k, index) for k in keys)
            return run(x_chunk, carry, chunk_keys)

        chunks = x.reshape(t // chunk, chunk, *x.shape[1:])
        new_states, outputs = jax.lax.scan(step, states, (chunks, jnp.arange(t // chunk)))
        join = lambda y: y.reshape(t, *y.shape[2:])  # [T/chunk, chunk, ...] -> [T, ...]
        outputs = {"spikes": join(outputs["spikes"]),
                   "filtered": None if outputs["filtered"] is None else join(outputs["filtered"]),
                   "layer_spikes": {name: join(y) for name, y in outputs["layer_spikes"].items()},
                   "spike_counts": {name: c.sum(axis=0) for name, c in outputs["spike_counts"].items()}}
        return new_states, outputs


def _passes(all_layers, scan: str) -> tuple:
    """The network as passes: (index,) for a layer on its own, (index, dropout index or None, filter index) for
    a spiking layer whose spikes go, through an optional dropout, straight into a filter: one scan for all
    three (sequential filters only), plus the pool's index when a 2x2 max-pool follows the filter (the scan's
    backward routes the pool's cotangent). The last spiking layer stays on its own: its spikes are the output."""
    last_spiking = max(i for i, layer in enumerate(all_layers) if isinstance(layer, layers.SpikingLayer))
    passes, i = [], 0
    while i < len(all_layers):
        j = i + 1
        drop = j if j < len(all_layers) and isinstance(all_layers[j], layers.Dropout) else None
        j += drop is not None
        if (isinstance(all_layers[i], layers.SpikingLayer) and i != last_spiking and scan == "sequential"
                and j < len(all_layers) and isinstance(all_layers[j], layers.SynapseFilter)):
            pool = j + 1 if (j + 1 < len(all_layers) and isinstance(all_layers[j + 1], layers.MaxPool)
                             and all_layers[j + 1].fuses_after_filter()) else None
            passes.append((i, drop, j) if pool is None else (i, drop, j, pool))
            i = j + 1 if pool is None else pool + 1
        else:
            passes.append((i,))
            i += 1
    return tuple(passes)


def build_model(model_cfg: Any, seed: int = 0) -> SpikingNetwork:
    """Builds the network of a config's `model` block with parameters initialised from `seed`."""
    return SpikingNetwork(model_cfg, rngs=nnx.Rngs(params=seed))


def count_trainable_parameters(model: nnx.Module) -> int:
    """Number of trained scalars (nnx.Param leaves): weights, biases and trainable filter coefficients."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
