"""Orbax checkpoints of a training run: the last k (every epoch, and every N steps if configured) and the best.

Layout under the workdir:
  checkpoints/latest/<step>/   the last `keep` checkpoints (train state + position in the data)
  checkpoints/best/<step>/     the checkpoint with the best dev metric so far
Orbax writes each checkpoint to a temporary folder and renames it when complete, so a crash never leaves a
half-written checkpoint that a restart would pick up. Saves are asynchronous; `wait()` before exiting.
Arrays are restored onto the shardings of the given target, so a checkpoint saved on 8 devices restores
on 1 (or the other way round).
"""
from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp


class RunCheckpoints:
    """The two checkpoint managers of a workdir."""

    def __init__(self, workdir: str | Path, keep: int = 3, asynchronous: bool = True):
        root = Path(workdir).absolute() / "checkpoints"
        options = dict(enable_async_checkpointing=asynchronous, create=True)
        self.latest = ocp.CheckpointManager(root / "latest",
                                            options=ocp.CheckpointManagerOptions(max_to_keep=keep, **options))
        self.best = ocp.CheckpointManager(root / "best", options=ocp.CheckpointManagerOptions(max_to_keep=1, **options))

    @staticmethod
    def _args(state, position: dict):
        return ocp.args.Composite(state=ocp.args.StandardSave(state), position=ocp.args.JsonSave(position))

    def save_latest(self, step: int, state, position: dict) -> None:
        """position: JSON-able dict, e.g. {"epoch": e, "batch": next batch index, "best": {...}}."""
        # One save in flight at a time: two managers saving the same step at once would race on the
        # multi-process barriers Orbax names after the step.
        self.best.wait_until_finished()
        self.latest.save(int(step), args=self._args(state, position), force=True)

    def save_best(self, step: int, state, position: dict) -> None:
        self.latest.wait_until_finished()
        self.best.save(int(step), args=self._args(state, position), force=True)

    def manager(self, which: str) -> ocp.CheckpointManager:
        if which not in ("latest", "best"):
            raise ValueError(f"checkpoint must be 'latest', 'best' or a step number, got {which!r}")
        return getattr(self, which)

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

    def restore(self, which: str | int, target_state):
        """(state, position) of a checkpoint, arrays placed like `target_state` (a state or its abstract form)."""
        found = self.find(which)
        if found is None:
            raise FileNotFoundError(f"no {which!r} checkpoint under {self.latest.directory.parent}")
        manager, step = found
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                 position=ocp.args.JsonRestore()))
        return restored.state, dict(restored.position)

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()
