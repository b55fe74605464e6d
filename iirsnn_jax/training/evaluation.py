"""Evaluation of a whole split: every sample counted once (padding rows masked), dropout off."""
from __future__ import annotations

import jax

from iirsnn_jax.training import metrics, parallel, steps


def make_jitted_eval_step(graphdef, loss: str):
    return jax.jit(steps.make_eval_step(graphdef, loss), compiler_options=steps.compiler_options())


def evaluate(eval_step, params, constants, carry, pipeline, mesh, epoch: int = 0):
    """(carry, summary) of one pass over `pipeline`; summary as metrics.summarize."""
    total = None
    for batch in pipeline.epoch(epoch):
        carry, sums = eval_step(params, constants, carry, parallel.shard_batch(_model_inputs(batch), mesh))
        total = metrics.add_sums(total, sums)
    if total is None:
        raise ValueError(f"the {pipeline.source.split} split of {pipeline.source.name} has no samples")
    return carry, metrics.summarize(total)


def _model_inputs(batch: dict) -> dict:
    """The arrays a step reads (the pipeline also yields sample indices, kept on the host)."""
    return {k: v for k, v in batch.items() if k in ("input", "label", "mask", "filtered_target")}
