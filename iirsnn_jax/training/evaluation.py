"""Evaluation of a whole split: every sample counted once (padding rows masked), dropout off.

The sums stay on the device until the split is done (accumulate.py); batches are sharded and sent ahead of
the step that reads them (parallel.prefetch_to_devices).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax

from iirsnn_jax.training import accumulate, compiler, metrics, parallel, steps


def eval_batch_size(config) -> int:
    """train.eval_batch_size (0: the training batch); always the training batch when layer states are
    carried across batches (model.preserve_state), since the carried state has that batch shape."""
    if config.model.preserve_state:
        return config.train.batch_size
    return config.train.eval_batch_size or config.train.batch_size


class EvalStep(NamedTuple):
    """The jitted, accumulating eval step (`run`) and the plain one it wraps (`plain`, for the sums' shapes)."""

    run: Callable
    plain: Callable


def make_jitted_eval_step(graphdef, loss: str, mesh=None, input_fn=None,
                          cpu_scheduler: str = "memory") -> EvalStep:
    """run(params, constants, carry, totals, batch) -> (carry, totals), jitted (accumulate.py); with a mesh,
    parameters are pinned replicated and batches and carried states split along the data axis. input_fn:
    data.make_input_fn(config), which makes the network input from the pipeline's batch on the device.
    cpu_scheduler: train.cpu_scheduler, XLA's scheduler on CPU (training/compiler.py)."""
    plain = steps.make_eval_step(graphdef, loss, input_fn)
    step = accumulate.accumulating_eval_step(plain)
    options = dict(donate_argnums=3, compiler_options=compiler.compiler_options(scheduler=cpu_scheduler))
    if mesh is not None:
        rep, split = parallel.replicated(mesh), parallel.batch_sharded(mesh)
        options.update(in_shardings=(rep, rep, split, rep, split), out_shardings=(split, rep))
    return EvalStep(jax.jit(step, **options), plain)


def evaluate(eval_step: EvalStep, params, constants, carry, pipeline, mesh, epoch: int = 0):
    """(carry, summary) of one pass over `pipeline`; summary as metrics.summarize."""
    totals = None
    host_batches = (parallel.pack_rows(model_inputs(b)) for b in pipeline.epoch(epoch))
    for batch in parallel.prefetch_to_devices(host_batches, mesh):
        if totals is None:
            shape = accumulate.sums_shape(eval_step.plain, params, constants, carry, batch)
            totals = parallel.replicate(accumulate.zero_totals(shape, bookkeeping=False), mesh)
        carry, totals = eval_step.run(params, constants, carry, totals, batch)
    if totals is None:
        raise ValueError(f"the {pipeline.source.split} split of {pipeline.source.name} has no samples")
    return carry, metrics.summarize(accumulate.to_host(totals))


def model_inputs(batch: dict) -> dict:
    """The arrays a step reads: the pipeline's compact input, with the (split, epoch, index) of each row that
    key its random draws on the device (data/device_encoding.py), and the targets."""
    keep = ("input", "label", "mask", "filtered_target", "split", "epoch", "index")
    return {k: v for k, v in batch.items() if k in keep}
