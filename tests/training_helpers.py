"""Helpers of the training tests: the tiny config, checkpoint parameters, metric records, subprocess runs,
and actions injected at a chosen training batch (a kill, a signal, a poisoned batch)."""
import contextlib
import os
import signal
import subprocess
import sys

import jax
import numpy as np

from golden_files import REPO
from iirsnn_jax import experiments, models
from iirsnn_jax.training import checkpoint, metrics, optimizer as optimizer_lib, steps


def tiny_config(**train):
    config = experiments.load_config("test")
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


def latest_params(workdir, config=None):
    """Parameters of the latest checkpoint of a workdir, restored on this process's single device."""
    config = config or tiny_config()
    model = models.build_model(config.model, seed=123)
    _, target = steps.create_train_state(model, optimizer_lib.make_optimizer(config.train, 1), config.train.batch_size)
    runs = checkpoint.RunCheckpoints(workdir)
    state, position = runs.restore("latest", target)
    runs.close()
    return flat(state.params), int(state.step), position


def flat(params):
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


def records(workdir, drop=("time", "samples_per_s")):
    return [{k: v for k, v in r.items() if k not in drop} for r in metrics.read_metrics(workdir)]


def last_per_epoch(workdir):
    """The last record of every (epoch, split): a run that redid an epoch after a crash wrote it twice."""
    return {(r["epoch"], r["split"]): r for r in records(workdir)}


def run(args, devices=1, timeout=600, **env):
    environment = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **env)
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=environment)


@contextlib.contextmanager
def at_train_batch(epoch: int, index: int, action):
    """Runs `action(batch) -> batch` when the training data reaches batch `index` of `epoch` (a kill, a
    signal, a poisoned batch), by wrapping Pipeline.epoch for the duration of the block."""
    from iirsnn_jax.data import pipeline

    original = pipeline.Pipeline.epoch

    def epoch_with_action(self, e=0, start_batch=0):
        for i, batch in enumerate(original(self, e, start_batch=start_batch), start=start_batch):
            yield action(batch) if (self.source.split, e, i) == ("train", epoch, index) else batch

    pipeline.Pipeline.epoch = epoch_with_action
    try:
        yield
    finally:
        pipeline.Pipeline.epoch = original


def sigterm(batch):
    os.kill(os.getpid(), signal.SIGTERM)
    return batch


def kill(batch):
    raise KeyboardInterrupt("simulated kill")


def assert_same_training(workdir, reference_workdir, config=None):
    """Same step and, to float tolerance, the same parameters in the latest checkpoints of two runs."""
    ours, our_step, _ = latest_params(workdir, config)
    theirs, their_step, _ = latest_params(reference_workdir, config)
    assert our_step == their_step
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=2e-4, atol=2e-5, err_msg=key)


@contextlib.contextmanager
def at_train_step(step: int, action):
    """Runs `action()` right after the train step that makes optimizer step number `step`, by wrapping the
    jitted step of every run that loop.prepare builds inside the block."""
    from iirsnn_jax.training import loop

    original = loop.prepare

    def prepare(*args, **kwargs):
        run = original(*args, **kwargs)
        inner = run.train_step

        def train_step(leaves, totals, batch):  # the loop's jitted step runs on the state's leaves
            leaves, totals = inner(leaves, totals, batch)
            if int(run.state_def.unflatten(leaves).step) == step:
                action()
            return leaves, totals

        run.train_step = train_step
        return run

    loop.prepare = prepare
    try:
        yield
    finally:
        loop.prepare = original


def send(signum):
    """An action that sends this process the signal `signum`."""
    return lambda *_: os.kill(os.getpid(), signum)


def fresh_state(config):
    """(graphdef, TrainState) of a freshly built network of `config`."""
    model = models.build_model(config.model, seed=config.seed)
    return steps.create_train_state(model, optimizer_lib.make_optimizer(config.train, 1), config.train.batch_size)
