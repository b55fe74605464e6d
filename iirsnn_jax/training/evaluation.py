"""Evaluation of a whole split: every sample counted once (padding rows masked), dropout off."""
from __future__ import annotations

import jax

from iirsnn_jax.training import metrics, parallel, steps


def eval_batch_size(config) -> int:
    """train.eval_batch_size (0: the training batch); always the training batch when layer states are
    carried across batches (model.preserve_state), since the carried state has that batch shape."""
    if config.model.preserve_state:
        return config.train.batch_size
    return config.train.eval_batch_size or config.train.batch_size


def make_jitted_eval_step(graphdef, loss: str):
    return jax.jit(steps.make_eval_step(graphdef, loss), compiler_options=steps.compiler_options())


def evaluate(eval_step, params, constants, carry, pipeline, mesh, epoch: int = 0):
    """(carry, summary) of one pass over `pipeline`; summary as metrics.summarize."""
    total = None
    for batch in pipeline.epoch(epoch):
        carry, sums = eval_step(params, constants, carry, parallel.shard_batch(model_inputs(batch), mesh))
        total = metrics.add_sums(total, sums)
    if total is None:
        raise ValueError(f"the {pipeline.source.split} split of {pipeline.source.name} has no samples")
    return carry, metrics.summarize(total)


def model_inputs(batch: dict) -> dict:
    """The arrays a step reads (the pipeline also yields sample indices, kept on the host)."""
    return {k: v for k, v in batch.items() if k in ("input", "label", "mask", "filtered_target")}
