"""train.checkpoint_min_interval_s: epoch-end saves at most that often, a best found between saves held on the
device and saved first by the next save, and a crash in between still resuming to the uninterrupted result."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import training_helpers as helpers
from iirsnn_jax.training import checkpoint, loop
from iirsnn_jax.training.position import Position

STEPS_PER_EPOCH = 79  # 1257 training digits in batches of 16


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def state_of(step):
    return {"w": jnp.full((3,), float(step)), "step": jnp.asarray(step)}


def test_a_best_between_saves_is_held_then_saved_before_the_latest(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(checkpoint.time, "monotonic", clock)
    runs = checkpoint.RunCheckpoints(tmp_path, min_interval_s=60)
    at = lambda epoch: Position(epoch=epoch)

    runs.save_epoch_end(10, state_of(10), at(1), improved=True, force=False)  # the first save is always due
    runs.wait()
    assert runs.steps() == {"latest": [10], "best": [10]}

    clock.now += 5
    held = state_of(20)
    runs.save_epoch_end(20, held, at(2), improved=True, force=False)  # too soon: held, nothing written
    for leaf in jax.tree.leaves(held):
        leaf.delete()  # as the next train step does when it donates the state
    clock.now += 5
    runs.save_epoch_end(30, state_of(30), at(3), improved=False, force=False)
    runs.wait()
    assert runs.steps() == {"latest": [10], "best": [10]}

    clock.now += 60  # due: the held best is written, then the latest
    runs.save_epoch_end(40, state_of(40), at(4), improved=False, force=False)
    runs.wait()
    assert runs.steps() == {"latest": [10, 40], "best": [20]}
    state, position = runs.restore("best", state_of(0))
    np.testing.assert_array_equal(state["w"], [20.0, 20.0, 20.0])
    assert position.epoch == 2

    clock.now += 1  # not due, but forced (the last epoch, a stop request)
    runs.save_epoch_end(50, state_of(50), at(5), improved=True, force=True)
    runs.wait()
    assert runs.steps() == {"latest": [10, 40, 50], "best": [50]}
    runs.close()


def test_an_interval_of_zero_saves_every_epoch(tmp_path):
    runs = checkpoint.RunCheckpoints(tmp_path, min_interval_s=0)
    for step in (1, 2, 3):
        runs.save_epoch_end(step, state_of(step), Position(epoch=step), improved=step == 2, force=False)
    runs.wait()
    assert runs.steps() == {"latest": [1, 2, 3], "best": [2]}
    runs.close()


def config(interval, epochs=4):
    config = helpers.tiny_config(checkpoint_min_interval_s=interval)
    config.train.epochs = epochs
    return config


@pytest.fixture(scope="module")
def every_epoch(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("every_epoch")
    loop.train_and_evaluate(config(0), workdir)
    return workdir


def best_params(workdir):
    _, target = helpers.fresh_state(config(0))
    state, position = checkpoint.restore_read_only(workdir, "best", target)
    return helpers.flat(state.params), position.best_epoch


def test_rare_saves_end_like_saves_every_epoch(every_epoch, tmp_path):
    result = loop.train_and_evaluate(config(1e6), tmp_path)
    runs = checkpoint.RunCheckpoints(tmp_path, read_only=True)
    assert runs.steps()["latest"] == [STEPS_PER_EPOCH, 4 * STEPS_PER_EPOCH]  # the first and the last epoch
    runs.close()
    assert helpers.last_per_epoch(tmp_path) == helpers.last_per_epoch(every_epoch)
    ours, our_best = best_params(tmp_path)
    theirs, their_best = best_params(every_epoch)
    assert our_best == their_best == result["best_epoch"]
    for key in theirs:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_a_crash_between_rare_saves_redoes_the_epochs_since_and_ends_the_same(every_epoch, tmp_path):
    with helpers.at_train_batch(2, 30, helpers.kill), pytest.raises(KeyboardInterrupt):
        loop.train_and_evaluate(config(1e6), tmp_path)
    _, step, position = helpers.latest_params(tmp_path)
    assert (step, position.epoch) == (STEPS_PER_EPOCH, 1)  # only epoch 0 was saved
    loop.train_and_evaluate(config(1e6), tmp_path)
    assert helpers.last_per_epoch(tmp_path) == helpers.last_per_epoch(every_epoch)
    ours, _ = best_params(tmp_path)
    theirs, _ = best_params(every_epoch)
    for key in theirs:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
