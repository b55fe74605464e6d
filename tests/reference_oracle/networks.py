"""Whole reference networks: the stages in order, the loss, and a float64 forward and backward pass."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .architectures import architecture, is_classifier
from .cells import (conv2d_layer, dual_exp_iir_layer, filter_layer, first_order_low_pass_layer,
                    maxpooling2d_layer, neuron_layer)


def apply_stage(stage, params, x):
    """Runs one stage; returns (output, spikes or None)."""
    kind = stage[0]
    if kind == "reshape":
        return x.reshape(x.shape[0], *stage[1], x.shape[-1]), None
    if kind == "iir":
        p = f"{stage[1]}.dual_exp_iir_cell."
        return dual_exp_iir_layer(x, params[p + "alpha_1"], params[p + "alpha_2"], params[p + "beta_1"]), None
    if kind == "lowpass":
        return first_order_low_pass_layer(x, params[f"{stage[1]}.first_order_low_pass_cell.alpha_1"]), None
    if kind == "dense":
        p = f"{stage[1]}.neuron_cell."
        s = neuron_layer(x, params[p + "weight.weight"], params[p + "weight.bias"], params[p + "reset_decay"],
                         params[p + "reset_v"], params[p + "decay_v"], params[p + "sigma"])
        return s, s
    if kind == "conv":
        _, module, _, _, _, stride, padding, _ = stage
        p = f"{module}.conv2d_cell."
        s = conv2d_layer(x, params[p + "conv.weight"], params[p + "conv.bias"], stride, padding,
                         params[p + "reset_decay"], params[p + "reset_v"], params[p + "decay_v"], params[p + "sigma"])
        return s, s
    if kind == "pool":
        return maxpooling2d_layer(x, *stage[1:]), None
    if kind == "flatten":
        return x.reshape(x.shape[0], -1, x.shape[-1]), None
    if kind == "output":
        p = f"{stage[1]}."
        return filter_layer(x, params[p + "filter_v0"], params[p + "filter_decay_m"], params[p + "filter_decay_s"]), None
    raise ValueError(kind)


def forward(experiment: str, params: dict, x):
    """Returns (output, {module: spikes}); output = last spikes, or (spikes, filtered) for the associative net."""
    layer_spikes = {}
    last_spikes = None
    for stage in architecture(experiment):
        x, spikes = apply_stage(stage, params, x)
        if spikes is not None:
            layer_spikes[stage[1]] = spikes
            last_spikes = spikes
    if experiment == "associative_memory":
        return (last_spikes, x), layer_spikes
    return last_spikes, layer_spikes


def cross_entropy_of_counts(output_spikes, labels):
    counts = output_spikes.sum(axis=-1)
    log_probs = counts - jax.scipy.special.logsumexp(counts, axis=-1, keepdims=True)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))


def loss_fn(experiment: str, trainable: dict, frozen: dict, x, target):
    """Loss (cross-entropy of counts vs labels, or MSE of the filtered output vs filtered target) and aux."""
    out, layer_spikes = forward(experiment, {**frozen, **trainable}, x)
    if experiment == "associative_memory":
        spikes, filtered = out
        loss = jnp.mean((filtered - target) ** 2)
        return loss, (spikes, filtered, layer_spikes)
    return cross_entropy_of_counts(out, target), (out, None, layer_spikes)


def is_trainable(name: str) -> bool:
    return name.endswith(("alpha_1", "alpha_2", "beta_1", "weight.weight", "weight.bias", "conv.weight",
                          "conv.bias"))


def run(experiment: str, params: dict, x, target):
    """Float64 forward and backward of the loop model, in evaluation mode (dropout is the identity).

    Runs op by op (the cells are jitted, the loops are not): jitting the whole unrolled network compiles
    for minutes at T = 300, while the cells compile once per shape and are shared by every experiment and
    golden file with the same layer shapes.

    params: {state_dict name: array} (any float dtype; used as float64); x: reference-layout input;
    target: labels [B] (int) or filtered_target [B, 300, T].  Returns dict with loss, output_spikes,
    filtered_output (associative only), layer_spikes {module: [B, ..., T]} and grads {name: array}.
    """
    with jax.enable_x64(True):
        params64 = {k: jnp.asarray(np.asarray(v, np.float64)) for k, v in params.items()}
        trainable = {k: v for k, v in params64.items() if is_trainable(k)}
        frozen = {k: v for k, v in params64.items() if not is_trainable(k)}
        x = jnp.asarray(np.asarray(x, np.float64))
        target = jnp.asarray(target) if is_classifier(experiment) else jnp.asarray(np.asarray(target, np.float64))
        value_and_grad = jax.value_and_grad(functools.partial(loss_fn, experiment), has_aux=True)
        (loss, (spikes, filtered, layer_spikes)), grads = value_and_grad(trainable, frozen, x, target)
        return {
            "loss": float(loss),
            "output_spikes": np.asarray(spikes),
            "filtered_output": None if filtered is None else np.asarray(filtered),
            "layer_spikes": {k: np.asarray(v) for k, v in layer_spikes.items()},
            "grads": {k: np.asarray(v) for k, v in grads.items()},
        }
