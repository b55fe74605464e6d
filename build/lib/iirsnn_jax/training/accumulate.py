"""Metric sums that stay on the device: each step adds its batch's sums to running totals inside the jitted
call, and the host reads the totals only every few steps (loop.py), so it never waits for a step it could
have queued behind.

Besides the metric sums (steps.py), the totals carry the loop's bookkeeping, under keys starting with "_":
  _nonfinite              steps whose loss or gradient was NaN or infinite
  _first_nonfinite_step   the step number (optimizer steps done after it) of the first such step
  _stop                   stop requests (SIGTERM, Ctrl-C) that reached the step from any process: a batch
                          carries its process's request in "stop" [B] (1.0 on every row), so every process
                          reads the same total at the same step and all stop there together.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from iirsnn_jax.training.parallel import unpack_rows

NO_STEP = np.iinfo(np.int32).max


def metric_sums(totals: dict) -> dict:
    """Only the metric sums (what a Position records and `metrics.summarize` reads)."""
    return {k: v for k, v in totals.items() if not k.startswith("_")}


def zero_totals(sums_shape: dict, start: dict | None = None, bookkeeping: bool = True) -> dict:
    """Host totals for the sums of `sums_shape` (a step's abstract sums), from `start` (saved sums) or 0;
    with the loop's bookkeeping keys (train steps) or without (eval steps)."""
    totals = {k: np.float32((start or {}).get(k, 0.0)) for k in sums_shape if k != "nonfinite_gradients"}
    if bookkeeping:
        totals.update(_nonfinite=np.float32(0), _first_nonfinite_step=np.int32(NO_STEP), _stop=np.float32(0))
    return totals


def accumulating_train_step(train_step: Callable) -> Callable:
    """train_step(state, batch) -> (state, sums) as step(state, totals, batch) -> (state, totals)."""

    def step(state, totals, batch):
        batch = unpack_rows(batch)  # "stop" may travel among the packed rows
        stop = batch.pop("stop", None)
        state, sums = train_step(state, batch)
        bad = (sums.pop("nonfinite_gradients") > 0) | ~jnp.isfinite(sums["loss_sum"])
        out = {k: totals[k] + v.astype(jnp.float32) for k, v in sums.items()}
        out["_nonfinite"] = totals["_nonfinite"] + bad.astype(jnp.float32)
        out["_first_nonfinite_step"] = jnp.minimum(totals["_first_nonfinite_step"],
                                                   jnp.where(bad, state.step, NO_STEP).astype(jnp.int32))
        out["_stop"] = totals["_stop"] + (0.0 if stop is None else jnp.max(stop))
        return state, out

    return step


def accumulating_eval_step(eval_step: Callable) -> Callable:
    """eval_step(params, constants, carry, batch) -> (carry, sums) as step(..., totals, batch) -> (carry, totals)."""

    def step(params, constants, carry, totals, batch):
        carry, sums = eval_step(params, constants, carry, batch)  # the eval step unpacks packed rows
        return carry, {k: totals[k] + v.astype(jnp.float32) for k, v in sums.items()}

    return step


def sums_shape(step: Callable, *args) -> dict:
    """The abstract sums a step returns for these (abstract) arguments, without running it."""
    return jax.eval_shape(step, *args)[1]


def to_host(totals: dict) -> dict:
    """Device totals -> host Python floats (waits for the steps that produced them)."""
    return {k: (int(v) if k == "_first_nonfinite_step" else float(v)) for k, v in jax.device_get(totals).items()}
