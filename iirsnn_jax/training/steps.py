"""The training state and the jitted train and eval steps (pure functions of state and batch).

A batch is {"input": [B, T, *S], "label": [B] int, "mask": [B] float (1 = real sample, 0 = padding), and for
the associative memory "filtered_target": [B, T, N]}. Given an `input_fn` (data.make_input_fn), "input" is the
pipeline's compact array instead and the step makes the network input from the batch on the device first
(copy over T, Poisson spikes, augmentation, unpacking; the batch then also holds "split", "epoch", "index").
A batch may arrive with its per-row scalars packed into one array (parallel.pack_rows); the steps unpack it.
Padding lets every batch, also the last partial one of an evaluation, keep one shape (one compilation) while
no sample is dropped: every sum is weighted by mask.
Steps return sums over the batch ("loss_sum", "correct", "count", "spikes/<layer>"; the train step adds
"nonfinite_gradients", 1 when a gradient is NaN or infinite), so that the loop can add them up exactly over
an epoch, across devices and processes.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from iirsnn_jax import losses
from iirsnn_jax.models import SpikingNetwork
from iirsnn_jax.training.parallel import unpack_rows


class TrainState(NamedTuple):
    """Everything a step changes or needs besides the batch; saved whole in every checkpoint.

    step: int32 scalar, optimizer steps done. params: trained variables (nnx.Param). constants: frozen
    variables (reset constants, frozen coefficients). opt_state: optax state. carry: layer states carried
    across batches when model.preserve_state (snn_mlp_1_non_zero), else None.
    """

    step: jax.Array
    params: Any
    constants: Any
    opt_state: Any
    carry: Any


def create_train_state(model: SpikingNetwork, optimizer: optax.GradientTransformation, batch_size: int):
    """(graphdef, TrainState) of a freshly built model; batch_size sizes the carried state."""
    graphdef, params, constants = nnx.split(model, nnx.Param, ...)
    carry = model.initial_state(batch_size) if model.preserve_state else None
    return graphdef, TrainState(jnp.zeros((), jnp.int32), params, constants, optimizer.init(params), carry)


def _per_sample(out, batch, loss: str):
    """(loss [B], correct [B] or None) of one batch."""
    if loss == "cross_entropy":
        counts = losses.spike_counts(out.spikes.astype(jnp.float32))  # exact counts also in bfloat16
        per = optax.softmax_cross_entropy_with_integer_labels(counts, batch["label"])
        return per, (jnp.argmax(counts, axis=-1) == batch["label"]).astype(jnp.float32)
    if loss == "mse":
        diff = out.filtered.astype(jnp.float32) - batch["filtered_target"].astype(jnp.float32)
        return jnp.mean(diff.reshape(diff.shape[0], -1) ** 2, axis=1), None
    raise ValueError(f"train.loss must be 'cross_entropy' or 'mse', got {loss!r}")


def _batch_sums(out, batch, per_loss, correct) -> dict:
    mask = batch["mask"].astype(jnp.float32)
    sums = {"loss_sum": jnp.sum(per_loss * mask), "count": jnp.sum(mask)}
    if correct is not None:
        sums["correct"] = jnp.sum(correct * mask)
    for name, rate in out.spike_rates.items():  # mean firing rate per sample, summed over real samples
        sums[f"spikes/{name}"] = jnp.sum(rate * mask)
    return sums


def _keep_padded_rows(new, old, mask):
    """Carried state: padded samples keep their old state, so padding never leaks into the next batch."""
    def pick(n, o):
        m = mask.reshape(mask.shape + (1,) * (n.ndim - 1)).astype(bool)
        return jnp.where(m, n, o)
    return jax.tree.map(pick, new, old)


def _network_input(batch: dict, input_fn: Callable | None):
    return batch["input"] if input_fn is None else input_fn(batch)


def make_train_step(graphdef, optimizer: optax.GradientTransformation, loss: str, seed: int,
                    microbatches: int = 1, input_fn: Callable | None = None) -> Callable:
    """train_step(state, batch) -> (state, sums). Dropout keys: fold_in(PRNGKey(seed), step).

    microbatches > 1 accumulates the gradient over that many slices of the batch (samples i, i + M, ...,
    so that every device keeps its own samples), one after the other: the same update on the same batch,
    with the activation memory of a slice. Dropout draws per slice (fold_in(key, slice)); input_fn runs per
    slice (its draws are per sample, so slicing does not change them).
    """
    base_key = jax.random.PRNGKey(seed)

    def train_step(state: TrainState, batch: dict):
        batch = unpack_rows(batch)
        key = jax.random.fold_in(base_key, state.step)
        count = jnp.maximum(jnp.sum(batch["mask"].astype(jnp.float32)), 1.0)  # the whole batch's real samples

        def gradients(part: dict, carry, part_key):
            def loss_fn(params):
                model = nnx.merge(graphdef, params, state.constants)
                out = model(_network_input(part, input_fn), state=carry, key=part_key, keep_layer_spikes=False)
                per_loss, correct = _per_sample(out, part, loss)
                return jnp.sum(per_loss * part["mask"].astype(jnp.float32)) / count, (out, per_loss, correct)

            (_, (out, per_loss, correct)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
            new_carry = None if carry is None else _keep_padded_rows(out.state, carry, part["mask"])
            return grads, new_carry, _batch_sums(out, part, per_loss, correct)

        if microbatches == 1:
            grads, carry, sums = gradients(batch, state.carry, key)
        else:
            size = batch["mask"].shape[0]
            if size % microbatches:
                raise ValueError(f"train.microbatches={microbatches} must divide the batch size {size}")
            # [B, ...] -> [B/M, M, ...]: slice i holds samples i, i + M, ...; a device's rows stay on it.
            split = lambda tree, i: jax.tree.map(lambda x: x.reshape(size // microbatches, microbatches,
                                                                     *x.shape[1:])[:, i], tree)
            grads, sums, carries = None, None, []
            for i in range(microbatches):
                part_grads, part_carry, part_sums = gradients(split(batch, i), split(state.carry, i),
                                                              jax.random.fold_in(key, i))
                grads = part_grads if grads is None else jax.tree.map(jnp.add, grads, part_grads)
                sums = part_sums if sums is None else jax.tree.map(jnp.add, sums, part_sums)
                carries.append(part_carry)
            carry = jax.tree.map(lambda *parts: jnp.stack(parts, axis=1).reshape(size, *parts[0].shape[1:]),
                                 *carries) if state.carry is not None else None
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = TrainState(state.step + 1, params, state.constants, opt_state, carry)
        # Spikes are 0/1 whatever the potential, so a NaN can hide from the loss: watch the gradients too.
        # One pass per gradient that fuses into a reduction. Their global norm squared every element first
        # (and flagged finite gradients whose norm overflowed): snn_mlp_1's step under the memory-optimised
        # scheduler was 1.02-1.05x slower with it.
        finite = [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]
        sums["nonfinite_gradients"] = 1.0 - jnp.all(jnp.asarray(finite, dtype=bool)).astype(jnp.float32)
        return new_state, sums

    return train_step


def make_eval_step(graphdef, loss: str, input_fn: Callable | None = None) -> Callable:
    """eval_step(params, constants, carry, batch) -> (carry, sums), dropout off."""

    def eval_step(params, constants, carry, batch: dict):
        batch = unpack_rows(batch)
        out = nnx.merge(graphdef, params, constants)(_network_input(batch, input_fn), state=carry,
                                                     keep_layer_spikes=False)
        per_loss, correct = _per_sample(out, batch, loss)
        new_carry = None if carry is None else _keep_padded_rows(out.state, carry, batch["mask"])
        return new_carry, _batch_sums(out, batch, per_loss, correct)

    return eval_step
