"""The paper's networks, built from the `model` block of a config (see configs/default.py).

`SpikingNetwork` takes batch-major inputs [B, T, ...] (the layout of the data pipelines), moves time to the
front once, runs its layers one after the other over the whole sequence, and returns batch-major outputs.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from iirsnn_jax import architecture, layers


class NetworkOutput(NamedTuple):
    """What a network returns. All arrays batch-major.

    spikes: [B, T, N] spikes of the last spiking layer.
    filtered: [B, T, N] the output filter's response (networks ending in `O`), else None.
    layer_spikes: {layer name: [B, T, *F]} spikes of every spiking layer, in order.
    state: tuple with one entry per layer (its final NamedTuple state, or None for stateless layers).
    """

    spikes: jax.Array
    filtered: jax.Array | None
    layer_spikes: dict[str, jax.Array]
    state: tuple


_DTYPES = {"float32": jnp.float32, "float64": jnp.float64, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


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
        neuron_args = dict(tau_m=cfg.tau_m, use_bias=cfg.train_bias, reset_v=cfg.reset_v,
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
                layer = layers.DualExpFilter(shape, cfg.tau_m, cfg.tau_s, trainable=cfg.train_coefficients,
                                             dtype=dtype, param_dtype=param_dtype)
            elif kind == "L":
                layer = layers.LowPassFilter(shape, cfg.tau_m, trainable=cfg.train_coefficients, dtype=dtype,
                                             param_dtype=param_dtype)
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
        self.output_shape = shape
        self.preserve_state = bool(cfg.preserve_state)

    @property
    def layers(self):
        return [getattr(self, name) for name in self.layer_names]

    def initial_state(self, batch_size: int) -> tuple:
        """Zero state for every layer (None for stateless ones): the reference's initial condition."""
        return tuple(layer.initial_state(batch_size) if hasattr(layer, "initial_state") else None
                     for layer in self.layers)

    def __call__(self, inputs, state: tuple | None = None, *, key: jax.Array | None = None) -> NetworkOutput:
        """Runs the network.

        Args:
          inputs: [B, T, *S] with prod(S) = prod(model.input_shape); reshaped row-major to the input shape.
          state: initial layer states (from `initial_state` or a previous call's `NetworkOutput.state`) or
            None for zeros. Gradients do not flow into it: it is treated as a constant, as the reference
            detaches the carried states.
          key: PRNG key for dropout; None means evaluation mode (dropout off).
        """
        b, t = inputs.shape[:2]
        if math.prod(inputs.shape[2:]) != math.prod(self.input_shape):
            raise ValueError(f"network input of shape {inputs.shape} does not hold [B, T, *{self.input_shape}]")
        x = jnp.moveaxis(inputs.reshape(b, t, *self.input_shape), 1, 0)  # time-major from here on
        states = (None,) * len(self.layer_names) if state is None else jax.lax.stop_gradient(state)
        new_states, layer_spikes, spikes, filtered = [], {}, None, None
        for index, (name, layer, layer_state) in enumerate(zip(self.layer_names, self.layers, states)):
            layer_key = None if key is None else jax.random.fold_in(key, index)
            x, new_state = layer(x, layer_state, key=layer_key)
            new_states.append(new_state)
            if name in self.spiking_layer_names:
                spikes = x
                layer_spikes[name] = jnp.moveaxis(x, 0, 1)
            if isinstance(layer, layers.OutputFilter):
                filtered = jnp.moveaxis(x, 0, 1)
        return NetworkOutput(jnp.moveaxis(spikes, 0, 1), filtered, layer_spikes, tuple(new_states))


def build_model(model_cfg: Any, seed: int = 0) -> SpikingNetwork:
    """Builds the network of a config's `model` block with parameters initialised from `seed`."""
    return SpikingNetwork(model_cfg, rngs=nnx.Rngs(params=seed))


def count_trainable_parameters(model: nnx.Module) -> int:
    """Number of trained scalars (nnx.Param leaves): weights, biases and trainable filter coefficients."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
