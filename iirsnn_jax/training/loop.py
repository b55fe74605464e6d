"""The training loop: epochs of jitted, data-parallel steps, evaluation, checkpoints, resumption.

`train_and_evaluate(config, workdir)` runs a whole experiment:
  * every epoch: train on the train split (progress bar with loss, accuracy, samples/s), evaluate the full
    dev split, append both to metrics.jsonl and TensorBoard, save the latest checkpoint, and the best one
    when the dev metric improves (accuracy for classifiers, loss for the associative memory);
  * at the end: restore the best checkpoint and evaluate the full test split.
A workdir that has checkpoints resumes from the latest one at the exact batch it stopped at (the data order
depends only on seed and epoch, dropout keys only on the step), so a resumed run ends where an
uninterrupted one ends. SIGTERM (preemption) saves a checkpoint and exits; a non-finite loss stops the run
naming the step, before anything is saved over the last good checkpoint (NaN gradients too: spikes
are 0/1, so a NaN potential can leave the loss finite).
"""
from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from pathlib import Path

import jax
from tqdm import tqdm

from iirsnn_jax import data, models
from iirsnn_jax.training import checkpoint, evaluation, metrics, optimizer as optimizer_lib, parallel, steps

log = logging.getLogger("iirsnn_jax.training")


class Preempted(Exception):
    """Raised after a SIGTERM was handled: the run saved its state and can be resumed."""


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or infinite; the message names the step."""


class _Signals:
    """Notes a SIGTERM instead of dying, so the loop can save at the next step boundary."""

    def __init__(self):
        self.received = None
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def _best_metric(config) -> tuple[str, bool]:
    """(metric name, higher is better)."""
    return ("accuracy", True) if config.train.loss == "cross_entropy" else ("loss", False)


def _improved(value: float, best: float | None, higher: bool) -> bool:
    return best is None or (value > best if higher else value < best)


def write_config(config, workdir: Path) -> None:
    if jax.process_index() == 0:
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")


def train_and_evaluate(config, workdir: str | Path) -> dict:
    """Trains config's experiment in workdir (resuming if it has checkpoints); returns the final metrics."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_config(config, workdir)
    mesh = parallel.make_mesh()
    parallel.local_batch_size(config.train.batch_size, mesh)  # a clear error if it does not divide
    if config.train.microbatches < 1 or config.train.batch_size % config.train.microbatches:
        raise ValueError(f"train.microbatches={config.train.microbatches} must be >= 1 and divide "
                         f"train.batch_size={config.train.batch_size}")
    eval_batch = evaluation.eval_batch_size(config)
    parallel.local_batch_size(eval_batch, mesh)
    train_data = data.build(config, "train")
    dev_data = data.build(config, "dev", batch_size=eval_batch)
    steps_per_epoch = len(train_data)
    if steps_per_epoch == 0:
        raise ValueError(f"the train split has {train_data.num_examples} samples: not one batch of "
                         f"{config.train.batch_size}")

    model = models.build_model(config.model, seed=config.seed)
    optimizer = optimizer_lib.make_optimizer(config.train, steps_per_epoch)
    schedule = optimizer_lib.learning_rate_schedule(config.train, steps_per_epoch)
    graphdef, state = steps.create_train_state(model, optimizer, config.train.batch_size)
    state = parallel.replicate(state, mesh)
    checkpoints = checkpoint.RunCheckpoints(workdir, keep=config.train.keep_checkpoints)
    position = {"epoch": 0, "batch": 0, "best": None, "best_epoch": None, "train_sums": None}
    if checkpoints.find("latest") is not None:
        state, saved = checkpoints.restore("latest", state)
        position.update(saved)
        log.info("resuming from step %d (epoch %d, batch %d)", int(state.step), position["epoch"], position["batch"])

    train_step = jax.jit(steps.make_train_step(graphdef, optimizer, config.train.loss, config.seed,
                                                    config.train.microbatches), donate_argnums=0,
                         compiler_options=steps.compiler_options())
    eval_step = evaluation.make_jitted_eval_step(graphdef, config.train.loss)
    writer = metrics.MetricWriter(workdir)
    metric_name, higher = _best_metric(config)
    every = int(config.train.checkpoint_every_steps)
    try:
        with _Signals() as signals:
            for epoch in range(position["epoch"], config.train.epochs):
                start = position["batch"] if epoch == position["epoch"] else 0
                total = position["train_sums"] if start else None
                bar = tqdm(total=steps_per_epoch, initial=start, desc=f"epoch {epoch}", leave=False,
                           disable=not config.train.progress_bar or jax.process_index() != 0)
                tick, seen = time.perf_counter(), 0
                for index, batch in enumerate(train_data.epoch(epoch, start_batch=start), start=start):
                    state, sums = train_step(state, parallel.shard_batch(evaluation.model_inputs(batch), mesh))
                    sums = jax.device_get(sums)
                    if not math.isfinite(float(sums["loss_sum"])) or sums["nonfinite_gradients"]:
                        raise NonFiniteLoss(f"non-finite loss ({float(sums['loss_sum'])}) or gradient at step "
                                            f"{int(state.step)} "
                                            f"(epoch {epoch}, batch {index}); the last good checkpoint is kept in "
                                            f"{workdir / 'checkpoints'}")
                    total = metrics.add_sums(total, sums)
                    seen += int(sums["count"])
                    running = metrics.summarize(total)
                    bar.set_postfix(loss=f"{running['loss']:.4g}", acc=f"{running.get('accuracy', float('nan')):.4f}",
                                    samples_s=f"{seen / (time.perf_counter() - tick):.1f}", refresh=False)
                    bar.update()
                    here = {**position, "epoch": epoch, "batch": index + 1, "train_sums": total}
                    if signals.received is not None:
                        checkpoints.save_latest(int(state.step), state, here)
                        checkpoints.wait()
                        raise Preempted(f"SIGTERM at step {int(state.step)}: saved, resume with the same command")
                    if every and int(state.step) % every == 0 and index + 1 < steps_per_epoch:
                        checkpoints.save_latest(int(state.step), state, here)
                bar.close()
                step = int(state.step)
                train_summary = metrics.summarize(total)
                train_summary["samples_per_s"] = seen / max(time.perf_counter() - tick, 1e-9)
                train_summary["learning_rate"] = float(schedule(step - 1))
                writer.write({"epoch": epoch, "split": "train", **train_summary}, step)
                carry, dev_summary = evaluation.evaluate(eval_step, state.params, state.constants, state.carry,
                                                         dev_data, mesh)
                state = state._replace(carry=carry)
                writer.write({"epoch": epoch, "split": "dev", **dev_summary}, step)
                log.info("epoch %d: train %s, dev %s", epoch, _short(train_summary), _short(dev_summary))
                is_best = _improved(dev_summary[metric_name], position["best"], higher)
                if is_best:
                    position.update(best=dev_summary[metric_name], best_epoch=epoch)
                position.update(epoch=epoch + 1, batch=0, train_sums=None)
                checkpoints.save_latest(step, state, position)
                if is_best:
                    checkpoints.save_best(step, state, position)
        checkpoints.wait()
        return _final_test(config, checkpoints, state, eval_step, mesh, writer, position, eval_batch)
    finally:
        checkpoints.wait()
        checkpoints.close()
        writer.close()


def _final_test(config, checkpoints, state, eval_step, mesh, writer, position, eval_batch: int) -> dict:
    """Evaluates the best checkpoint on the test split; returns {"best_epoch", "best_dev", "test"}."""
    if checkpoints.find("best") is not None:
        state, _ = checkpoints.restore("best", state)
    test_data = data.build(config, "test", batch_size=eval_batch)
    _, test_summary = evaluation.evaluate(eval_step, state.params, state.constants, state.carry, test_data, mesh)
    record = {"epoch": position["best_epoch"], "split": "test", "checkpoint": "best", **test_summary}
    writer.write(record, int(state.step))
    log.info("test (best epoch %s): %s", position["best_epoch"], _short(test_summary))
    return {"best_epoch": position["best_epoch"], "best_dev": position["best"], "test": test_summary}


def _short(summary: dict) -> str:
    return json.dumps({k: round(v, 5) for k, v in summary.items() if k in ("loss", "accuracy")})
