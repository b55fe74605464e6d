"""The training loop: epochs of jitted, data-parallel steps, evaluation, checkpoints, resumption.

`train_and_evaluate(config, workdir)` runs a whole experiment in named phases:
  prepare         check the config, the data and the network, take the workdir's lock, refuse to continue a
                  run saved with other settings, and only then write config.json;
  start_or_resume a fresh state, or the newest intact latest checkpoint and its Position;
  train_epoch     the epoch's steps, from the Position's batch on; metric sums stay on the device and are read
                  every train.sync_every_steps steps, before every save and at the epoch's end; before that
                  last read, while the device still works, the next epoch's first batch is made and sent;
  end_epoch       evaluate the whole dev split, write metrics, save the best checkpoint, then the latest (at most
                  one epoch-end save per train.checkpoint_min_interval_s; a best found between saves is held);
  finish          evaluate the best checkpoint on the whole test split.
The data order depends only on seed and epoch and dropout keys only on the step, so a resumed run ends where
an uninterrupted one ends. SIGTERM or Ctrl-C: every process stops at the same step (they agree through the
step's sums, accumulate.py), saves and raises Preempted; a stop during an epoch's last batch finishes that
epoch first. A NaN or infinite loss or gradient stops the run naming the step, before anything is saved.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import signal
import time

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from iirsnn_jax import data, models, validation
from iirsnn_jax.training import (accumulate, checkpoint, compiler, evaluation, metrics, optimizer as optimizer_lib,
                                 parallel, steps)
from iirsnn_jax.training.position import Position
from iirsnn_jax.training.signals import StopRequests
from iirsnn_jax.training.workdir import Workdir

log = logging.getLogger("iirsnn_jax.training")
DEFAULT_SYNC_EVERY = 20


class Preempted(Exception):
    """Raised after a stop request (SIGTERM, Ctrl-C) was handled: the run saved its state and can resume.
    `signal` is the signal's number."""

    def __init__(self, message: str, signal: int):
        super().__init__(message)
        self.signal = signal


class NonFiniteLoss(FloatingPointError):
    """The loss or a gradient became NaN or infinite; the message names the step."""


@dataclasses.dataclass
class Run:
    """Everything a run builds once: config, workdir, mesh, data, jitted steps, checkpoints, metric writer."""

    config: object
    workdir: Workdir
    mesh: object
    train_data: data.Pipeline
    dev_data: data.Pipeline
    graphdef: object
    schedule: object
    plain_train_step: object
    train_step: object  # jitted (state leaves, totals, batch) -> (state leaves, totals); see _on_leaves
    state_def: object  # the TrainState's treedef: state_def.unflatten(leaves) is the state
    eval_step: evaluation.EvalStep
    fresh_state: object
    checkpoints: checkpoint.RunCheckpoints | None = None
    writer: metrics.MetricWriter | None = None
    sums_keys: tuple | None = None
    next_epoch: PrimedEpoch | None = None  # made by train_epoch at the end of the epoch before

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_data)

    def close(self) -> None:
        self.next_epoch = None
        if self.checkpoints is not None:
            self.checkpoints.wait()
            self.checkpoints.close()
        if self.writer is not None:
            self.writer.close()
        self.workdir.unlock()


@dataclasses.dataclass
class PrimedEpoch:
    """An epoch's start, made while the epoch before drains: its first batch already on the devices, the
    batches after it, zero totals. Made at the epoch's start instead, it kept the device idle for 1.1-1.9 ms,
    3-5 % of a digits epoch (40 steps of about 1 ms)."""

    epoch: int
    first: dict
    rest: object  # iterator over the epoch's other device batches
    totals: dict


def _on_leaves(step, state_def):
    """step(state, totals, batch) as a function of the state's leaves (a list of arrays). Flax variables are
    pytree nodes flattened in Python at every call: a jitted call on the TrainState took 0.15 ms of host time,
    on its leaves 0.05 ms, which matters where a step takes a millisecond."""
    def on_leaves(leaves, totals, batch):
        state, totals = step(state_def.unflatten(leaves), totals, batch)
        return jax.tree.leaves(state), totals
    return on_leaves


def prepare(config, workdir, *, overwrite: bool = False) -> Run:
    """Checks everything that can be checked before a file of the workdir is touched, then takes it."""
    validation.check_config(config)
    mesh = parallel.make_mesh()
    parallel.local_batch_size(config.train.batch_size, mesh)  # a clear error if it does not divide
    eval_batch = evaluation.eval_batch_size(config)
    parallel.local_batch_size(eval_batch, mesh)
    train_data = data.build(config, "train")
    dev_data = data.build(config, "dev", batch_size=eval_batch)
    if len(train_data) == 0:
        raise validation.ConfigError(f"the train split has {train_data.num_examples} samples: not one batch of "
                                     f"train.batch_size={config.train.batch_size}")
    model = models.build_model(config.model, seed=config.seed)
    validation.check_output_width(config, model.output_shape[-1], validation.num_classes(config, train_data.source))
    optimizer = optimizer_lib.make_optimizer(config.train, len(train_data))
    graphdef, state = steps.create_train_state(model, optimizer, config.train.batch_size)
    state = parallel.place_state(state, mesh)
    shardings = parallel.state_shardings(state, mesh)
    rep, split = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    input_fn = data.make_input_fn(config)  # encoding and augmentation run on the device, inside the steps
    plain = steps.make_train_step(graphdef, optimizer, config.train.loss, config.seed, config.train.microbatches,
                                  input_fn)
    state_def = jax.tree.structure(state)
    leaf_shardings = jax.tree.leaves(shardings)
    train_step = jax.jit(_on_leaves(accumulate.accumulating_train_step(plain), state_def),
                         in_shardings=(leaf_shardings, rep, split), out_shardings=(leaf_shardings, rep),
                         donate_argnums=(0, 1),
                         compiler_options=compiler.compiler_options(scheduler=config.train.cpu_scheduler))
    run = Run(config, Workdir(workdir), mesh, train_data, dev_data, graphdef,
              optimizer_lib.learning_rate_schedule(config.train, len(train_data)), plain, train_step, state_def,
              evaluation.make_jitted_eval_step(graphdef, config.train.loss, mesh, input_fn,
                                               config.train.cpu_scheduler), state)
    if jax.process_index() == 0:
        run.workdir.lock()
    try:
        if not overwrite:
            run.workdir.check_config(config)
        if jax.process_index() == 0:
            for path in run.workdir.overwrite() if overwrite else ():
                log.warning("--overwrite: deleted %s", path)
            run.workdir.write_config(config)
        if jax.process_count() > 1:  # the others open the checkpoints once process 0 has written or deleted
            multihost_utils.sync_global_devices("iirsnn_jax workdir ready")
        run.checkpoints = checkpoint.RunCheckpoints(run.workdir.path, keep=config.train.keep_checkpoints,
                                                    min_interval_s=config.train.checkpoint_min_interval_s)
        run.writer = metrics.MetricWriter(run.workdir.path)
    except BaseException:
        run.close()
        raise
    return run


def start_or_resume(run: Run):
    """(state, Position): the newest intact latest checkpoint, or a fresh state at epoch 0."""
    restored = run.checkpoints.restore_newest_intact(run.fresh_state)
    if restored is None:
        return run.fresh_state, Position()
    state, position = restored
    log.info("resuming from step %d (epoch %d, batch %d)", int(state.step), position.epoch, position.batch)
    return state, position


def _sync_every(run: Run) -> int:
    return int(run.config.train.sync_every_steps) or DEFAULT_SYNC_EVERY


def _check_finite(run: Run, totals: dict, epoch_start_step: int, epoch: int) -> None:
    if totals["_nonfinite"] > 0:
        step = totals["_first_nonfinite_step"]
        run.checkpoints.save_held_best()  # a finite state of an earlier epoch
        run.checkpoints.wait()
        saved = run.checkpoints.find("latest")
        kept = (f"the last good checkpoint (step {saved[1]}) is kept in {run.checkpoints.root}" if saved
                else "no checkpoint was saved yet")
        raise NonFiniteLoss(f"non-finite loss or gradient at step {step} (epoch {epoch}, batch "
                            f"{step - 1 - epoch_start_step}); {kept}")


def _zero_totals(run: Run, state, batch, start: dict | None):
    """Device totals for the train step's sums (their keys found once by tracing the plain step on `state`,
    which is not read once they are known)."""
    if run.sums_keys is None:  # the plain step unpacks the batch's rows and ignores its "stop"
        run.sums_keys = tuple(jax.eval_shape(run.plain_train_step, state, batch)[1])
    return parallel.replicate(accumulate.zero_totals(dict.fromkeys(run.sums_keys), start), run.mesh)


def _device_batches(run: Run, epoch: int, start: int, stop: StopRequests):
    """The device batches of epoch `epoch` from batch `start` on, each as the step reads it: the model's
    inputs and this process's stop request on every row, packed (parallel.pack_rows)."""
    def step_batch(batch):
        return parallel.pack_rows({**evaluation.model_inputs(batch),
                                   "stop": np.full(batch["mask"].shape, float(stop.requested), np.float32)})
    return parallel.prefetch_to_devices(map(step_batch, run.train_data.epoch(epoch, start_batch=start)), run.mesh)


def _prime(run: Run, epoch: int, stop: StopRequests) -> PrimedEpoch:
    """Epoch `epoch`'s start (from batch 0), made now: the data order depends only on seed and epoch. Called
    after a step of the epoch before, so run.sums_keys is known."""
    batches = _device_batches(run, epoch, 0, stop)
    first = next(batches)
    return PrimedEpoch(epoch, first, batches, _zero_totals(run, None, first, None))


def train_epoch(run: Run, state, position: Position, stop: StopRequests):
    """Trains epoch position.epoch from batch position.batch to its end: (state, metric sums of the epoch,
    samples/s, whether every process agreed to stop in the last batch). Saves and raises Preempted when a stop
    is agreed before the last batch."""
    epoch, start, config = position.epoch, position.batch, run.config
    steps_per_epoch = run.steps_per_epoch
    epoch_start_step = epoch * steps_per_epoch
    every = int(config.train.checkpoint_every_steps)
    sync_every, single = _sync_every(run), jax.process_count() == 1
    bar = tqdm(total=steps_per_epoch, initial=start, desc=f"epoch {epoch}", leave=False,
               disable=not config.train.progress_bar or jax.process_index() != 0)
    tick, counted_before = time.perf_counter(), (position.sums or {}).get("count", 0.0)

    totals, totals_host = None, None
    primed, run.next_epoch = run.next_epoch, None
    if primed is not None and primed.epoch == epoch and start == 0 and not position.sums:
        batches, totals = itertools.chain([primed.first], primed.rest), primed.totals
    else:
        batches = _device_batches(run, epoch, start, stop)
    leaves = jax.tree.leaves(state)  # the steps run on the leaves; state_def.unflatten(leaves) where it is needed
    for index, batch in enumerate(batches, start=start):
        if totals is None:
            totals = _zero_totals(run, state, batch, position.sums)
        leaves, totals = run.train_step(leaves, totals, batch)
        bar.update()
        step = epoch_start_step + index + 1
        last = index + 1 == steps_per_epoch
        saving = bool(every) and step % every == 0 and not last
        if not (last or saving or step % sync_every == 0 or (single and stop.requested)):
            continue  # the device runs ahead; the host reads the sums only now and then
        if last and epoch + 1 < config.train.epochs:  # host work now, while the device drains the epoch
            run.next_epoch = _prime(run, epoch + 1, stop)
        totals_host = accumulate.to_host(totals)
        run.workdir.heartbeat()
        _check_finite(run, totals_host, epoch_start_step, epoch)
        running = metrics.summarize(accumulate.metric_sums(totals_host))
        bar.set_postfix(loss=f"{running['loss']:.4g}", acc=f"{running.get('accuracy', float('nan')):.4f}",
                        samples_s=f"{(totals_host['count'] - counted_before) / (time.perf_counter() - tick):.1f}",
                        refresh=False)
        agreed = totals_host["_stop"] > 0 or (single and stop.requested)
        here = position.replace(batch=index + 1, train_sums=accumulate.metric_sums(totals_host))
        if agreed and not last:  # a stop in the last batch finishes the epoch first (end_epoch saves it)
            run.checkpoints.save_latest(step, run.state_def.unflatten(leaves), here)
            run.checkpoints.wait()
            raise Preempted(f"{stop.name or 'a stop request of another process'} at step {step}: saved; resume "
                            "with the same command", stop.received or signal.SIGTERM)
        if saving:
            run.checkpoints.save_latest(step, run.state_def.unflatten(leaves), here)
    bar.close()
    state = run.state_def.unflatten(leaves)
    if totals_host is None:  # the epoch was complete when the run resumed (a checkpoint of an older version)
        totals_host = dict(position.sums or {})
    samples = totals_host.get("count", 0.0) - counted_before  # real samples (not padding) trained here
    agreed = totals_host.get("_stop", 0.0) > 0 or (single and stop.requested)
    return state, accumulate.metric_sums(totals_host), samples / max(time.perf_counter() - tick, 1e-9), agreed


def _best_metric(config) -> tuple[str, bool]:
    """(dev metric that picks the best checkpoint, higher is better): train.best_metric, where "auto" means
    accuracy for classifiers (the reference's choice) and loss for the associative memory."""
    name = config.train.best_metric
    if name == "auto":
        name = "accuracy" if config.train.loss == "cross_entropy" else "loss"
    return name, name == "accuracy"


def end_epoch(run: Run, state, position: Position, train_sums: dict, samples_per_s: float, force_save: bool):
    """Dev evaluation, metrics, and the epoch's checkpoints: (state, Position of the next epoch's start).

    The best checkpoint is saved before the latest one, so a crash between the two never leaves a latest
    checkpoint whose best epoch the best/ folder has not received (a resumed run redoes the epoch and finds
    the best step already saved). The latest is saved when `force_save` (the last epoch, a stop request) or
    when the last save is train.checkpoint_min_interval_s old; a crash before then redoes the epochs since,
    which compute the same states and records."""
    step, epoch = int(state.step), position.epoch
    train_summary = metrics.summarize(train_sums)
    train_summary["samples_per_s"] = samples_per_s
    train_summary["learning_rate"] = float(run.schedule(step - 1))
    run.writer.write({"epoch": epoch, "split": "train", **train_summary}, step)
    carry, dev_summary = evaluation.evaluate(run.eval_step, state.params, state.constants, state.carry,
                                             run.dev_data, run.mesh)
    state = state._replace(carry=carry)
    run.workdir.heartbeat()
    run.writer.write({"epoch": epoch, "split": "dev", **dev_summary}, step)
    log.info("epoch %d: train %s, dev %s", epoch, _short(train_summary), _short(dev_summary))
    name, higher = _best_metric(run.config)
    value = dev_summary[name]
    improved = position.best is None or (value > position.best if higher else value < position.best)
    if improved:
        position = position.replace(best=value, best_epoch=epoch)
    position = position.replace(epoch=epoch + 1, batch=0, train_sums=None)
    run.checkpoints.save_epoch_end(step, state, position, improved=improved, force=force_save)
    return state, position


def finish(run: Run, state, position: Position) -> dict:
    """Evaluates the best checkpoint (or, without one, the current state) on the whole test split; returns
    {"best_epoch", "best_dev", "test"}."""
    run.checkpoints.wait()
    if run.checkpoints.find("best") is not None:
        state, _ = run.checkpoints.restore("best", state)
    test_data = data.build(run.config, "test", batch_size=evaluation.eval_batch_size(run.config))
    _, test_summary = evaluation.evaluate(run.eval_step, state.params, state.constants, state.carry, test_data,
                                          run.mesh)
    record = {"epoch": position.best_epoch, "split": "test", "checkpoint": "best", **test_summary}
    run.writer.write(record, int(state.step))
    log.info("test (best epoch %s): %s", position.best_epoch, _short(test_summary))
    return {"best_epoch": position.best_epoch, "best_dev": position.best, "test": test_summary}


def train_and_evaluate(config, workdir, *, overwrite: bool = False) -> dict:
    """Trains config's experiment in workdir (resuming if it has checkpoints); returns the final metrics."""
    run = prepare(config, workdir, overwrite=overwrite)
    try:
        state, position = start_or_resume(run)
        with StopRequests() as stop:
            while position.epoch < config.train.epochs:
                state, sums, rate, stopping = train_epoch(run, state, position, stop)
                last = position.epoch + 1 >= config.train.epochs
                state, position = end_epoch(run, state, position, sums, rate, force_save=last or stopping)
                if stopping and not last:
                    run.checkpoints.wait()
                    raise Preempted(f"{stop.name or 'a stop request of another process'} during the last batch of "
                                    f"epoch {position.epoch - 1}: the epoch was finished and saved; resume with the "
                                    "same command", stop.received or signal.SIGTERM)
        return finish(run, state, position)
    finally:
        run.close()


def _short(summary: dict) -> str:
    return json.dumps({k: round(v, 5) for k, v in summary.items() if k in ("loss", "accuracy")})
