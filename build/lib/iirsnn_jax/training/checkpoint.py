"""Orbax checkpoints of a training run: the last k (at epoch ends, and every N steps if configured) and the best.

Layout under the workdir (a local folder or a bucket URL):
  checkpoints/latest/<step>/   the last `keep` checkpoints (train state + the run's Position)
  checkpoints/best/<step>/     the checkpoint with the best dev metric so far
  checkpoints/damaged/         checkpoints found unreadable, moved aside (never deleted)
Orbax writes each checkpoint to a temporary folder and renames it when complete (in a gs:// bucket, which
cannot rename atomically, in place with a commit_success.txt written last), so a crash never leaves a
half-written checkpoint that a restart would take. Saves are asynchronous and one at a time; each takes a
snapshot of its position. A step that is already saved is not saved again (a resumed run that repeats an
epoch computes the same state). Arrays are restored onto the shardings of the given target, so a
checkpoint saved on 8 devices restores on 1 (or the other way round).

An epoch's end saves the latest checkpoint when the last save is at least `min_interval_s` old (tiny epochs
would otherwise spend more time saving than training); a new best found in between is held on the device and
saved, before the latest, by the next save of any kind.
"""
from __future__ import annotations

import logging
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from iirsnn_jax.errors import CheckpointError
from iirsnn_jax.training import workdir as workdir_lib
from iirsnn_jax.training.position import Position

log = logging.getLogger("iirsnn_jax.training")


class RunCheckpoints:
    """The two checkpoint managers of a workdir."""

    def __init__(self, workdir, keep: int = 3, asynchronous: bool = True, read_only: bool = False,
                 min_interval_s: float = 0.0):
        if keep < 1:
            raise ValueError(f"train.keep_checkpoints={keep} must be >= 1: a run resumes from its latest checkpoint")
        path = epath.Path(workdir)
        self.root = (path if workdir_lib.is_url(path) else path.absolute()) / "checkpoints"  # Orbax wants it absolute
        options = dict(enable_async_checkpointing=asynchronous, create=not read_only, read_only=read_only)
        self.latest = ocp.CheckpointManager(self.root / "latest",
                                            options=ocp.CheckpointManagerOptions(max_to_keep=keep, **options))
        self.best = ocp.CheckpointManager(self.root / "best",
                                          options=ocp.CheckpointManagerOptions(max_to_keep=1, **options))
        self.min_interval_s = float(min_interval_s)
        self._last_save = None  # time.monotonic() of this process's last latest save
        self._held_best = None  # (step, state copy, Position): a best waiting for the next save

    @staticmethod
    def _args(state, position: Position):
        return ocp.args.Composite(state=ocp.args.StandardSave(state), position=ocp.args.JsonSave(position.to_json()))

    def _save(self, manager, other, step: int, state, position: Position) -> bool:
        # One save in flight at a time: two managers saving at once would race on the multi-process barriers
        # Orbax names after the step.
        other.wait_until_finished()
        manager.wait_until_finished()
        if int(step) in manager.all_steps():
            return False
        manager.save(int(step), args=self._args(state, position), force=True)
        return True

    def save_latest(self, step: int, state, position: Position) -> bool:
        """Saves (state, position) as the latest checkpoint of `step`, after a held best; False when that step is
        already saved."""
        self.save_held_best()
        self._last_save = time.monotonic()
        return self._save(self.latest, self.best, step, state, position)

    def save_best(self, step: int, state, position: Position) -> bool:
        self._held_best = None
        return self._save(self.best, self.latest, step, state, position)

    def save_held_best(self) -> None:
        """Saves the best state held by save_epoch_end, if any."""
        if self._held_best is not None:
            self.save_best(*self._held_best)

    def save_epoch_end(self, step: int, state, position: Position, *, improved: bool, force: bool) -> None:
        """The checkpoints of an epoch's end: the best one first when `improved`, then the latest one, when
        `force` or when the last save is at least min_interval_s old. Otherwise a new best is held as a copy
        on the device (the train step donates the state's buffers) until the next save."""
        due = force or self._interval_passed()
        if improved and not due:
            self._held_best = (step, jax.tree.map(_device_copy, state), position)
        elif improved:
            self.save_best(step, state, position)
        if due:
            self.save_latest(step, state, position)

    def _interval_passed(self) -> bool:
        passed = self._last_save is None or time.monotonic() - self._last_save >= self.min_interval_s
        if jax.process_count() > 1 and self.min_interval_s > 0:  # Orbax saves are collective: agree with process 0
            passed = bool(multihost_utils.broadcast_one_to_all(np.asarray(passed)))
        return passed

    def manager(self, which: str) -> ocp.CheckpointManager:
        if which not in ("latest", "best"):
            raise CheckpointError(f"checkpoint must be 'latest', 'best' or a step number, got {which!r}")
        return getattr(self, which)

    def steps(self) -> dict[str, list[int]]:
        return {"latest": sorted(self.latest.all_steps()), "best": sorted(self.best.all_steps())}

    def find(self, which: str | int) -> tuple[ocp.CheckpointManager, int] | None:
        """(manager, step) of 'latest', 'best' or a step number (searched in both), or None if absent."""
        if isinstance(which, int) or str(which).isdigit():
            step = int(which)
            for manager in (self.latest, self.best):
                if step in manager.all_steps():
                    return manager, step
            return None
        manager = self.manager(str(which))
        step = manager.latest_step()
        return None if step is None else (manager, step)

    def _restore_step(self, manager, step: int, target_state):
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                 position=ocp.args.JsonRestore()))
        return restored.state, Position.from_json(dict(restored.position))

    def restore(self, which: str | int, target_state):
        """(state, Position) of a checkpoint, arrays placed like `target_state` (a state or its abstract form).

        Raises CheckpointError naming the step when it is missing or cannot be read."""
        found = self.find(which)
        if found is None:
            steps = self.steps()
            raise CheckpointError(f"no {which!r} checkpoint under {self.root}; saved steps: latest {steps['latest']}, "
                                  f"best {steps['best']}")
        manager, step = found
        try:
            return self._restore_step(manager, step, target_state)
        except Exception as error:  # Orbax/tensorstore raise many kinds for a truncated or missing file
            _raise_if_other_structure(error, manager, step)
            raise CheckpointError(f"checkpoint {manager.directory / str(step)} is damaged and cannot be read "
                                  f"({type(error).__name__}: {str(error)[:300]})") from error

    def restore_newest_intact(self, target_state):
        """(state, Position) of the newest readable latest checkpoint, or None when there is none at all.

        A damaged one is moved to checkpoints/damaged/ with a warning naming it, and the next older is tried;
        when every one is damaged, CheckpointError lists them."""
        damaged = []
        for step in sorted(self.latest.all_steps(), reverse=True):
            try:
                return self._restore_step(self.latest, step, target_state)
            except Exception as error:
                _raise_if_other_structure(error, self.latest, step)
                log.warning("checkpoint %s is damaged (%s: %s); trying an older one", self.latest.directory / str(step),
                            type(error).__name__, str(error)[:200])
                damaged.append(step)
                self._move_aside("latest", step)
        if damaged:
            raise CheckpointError(f"every latest checkpoint under {self.root} is damaged (steps {damaged}, moved to "
                                  f"{self.root / 'damaged'}); start over with --overwrite")
        return None

    def _move_aside(self, which: str, step: int) -> None:
        if jax.process_index() == 0:
            workdir_lib.move(self.root / which / str(step), self.root / "damaged" / f"{which}-{step}")
        self.latest.reload()
        self.best.reload()

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def restore_read_only(workdir, which: str | int, target_state, missing_ok: bool = False):
    """(state, Position) of checkpoint `which` ("best", "latest" or a step) of a workdir, opened read-only (eval,
    plots, NIR export: a live run may be writing it). A missing or damaged checkpoint raises CheckpointError
    naming the saved steps; with missing_ok a missing one gives None."""
    runs = RunCheckpoints(workdir, read_only=True, asynchronous=False)
    try:
        if missing_ok and runs.find(which) is None:
            return None
        return runs.restore(which, target_state)
    finally:
        runs.close()


def _raise_if_other_structure(error: Exception, manager, step: int) -> None:
    """CheckpointError for Orbax's error on a readable checkpoint whose tree differs from the target's (a
    network of other layers, not a damaged file)."""
    if isinstance(error, ValueError) and "tree structures do not match" in str(error):
        raise CheckpointError(f"checkpoint {manager.directory / str(step)} holds a state of another structure than "
                              f"this network's ({str(error)[:300]})") from error


def _device_copy(leaf):
    return leaf.copy() if isinstance(leaf, jax.Array) else leaf
