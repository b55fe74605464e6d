"""The reference's losses and readouts.

Classifiers read out the spike count of every output neuron over the whole sequence and train it with
cross-entropy, the counts taken as logits. The associative memory compares the output filter's response
with the filtered target by mean squared error.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def spike_counts(spikes: jax.Array) -> jax.Array:
    """[B, T, N] spikes -> [B, N] counts over time."""
    return spikes.sum(axis=1)


def spike_count_cross_entropy(spikes: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean over the batch of cross-entropy(logits = spike counts [B, N], integer labels [B])."""
    return optax.softmax_cross_entropy_with_integer_labels(spike_counts(spikes), labels).mean()


def filtered_mse(filtered: jax.Array, filtered_target: jax.Array) -> jax.Array:
    """Mean over every element of (filtered output - filtered target)^2, both [B, T, N]."""
    return jnp.mean((filtered - filtered_target) ** 2)
