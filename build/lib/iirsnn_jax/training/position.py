"""Where a run stands: the one small record that every checkpoint carries and a resumed run starts from.

A `Position` is immutable: the loop makes a new one at every step boundary it saves, so an asynchronous save
serialises exactly the position of its step, whatever the loop does next.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any


@dataclasses.dataclass(frozen=True)
class Position:
    """epoch: the epoch being trained (== train.epochs when training is over). batch: batches of that epoch
    done (0 at an epoch boundary; never the epoch's length: a finished epoch is recorded as the next one's
    batch 0, after its dev evaluation). best, best_epoch: the best dev metric so far and its epoch (None
    before the first evaluation). train_sums: summed step outputs of the epoch's done batches (None at 0)."""

    epoch: int = 0
    batch: int = 0
    best: float | None = None
    best_epoch: int | None = None
    train_sums: tuple[tuple[str, float], ...] | None = None

    def __post_init__(self):
        if isinstance(self.train_sums, dict):  # keep the record immutable: a dict is stored as sorted pairs
            object.__setattr__(self, "train_sums", tuple(sorted(self.train_sums.items())))

    @property
    def sums(self) -> dict[str, float] | None:
        return None if self.train_sums is None else dict(self.train_sums)

    def replace(self, **changes) -> "Position":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """A fresh JSON-able dict (what Orbax saves next to the arrays)."""
        return json.loads(json.dumps({**dataclasses.asdict(self), "train_sums": self.sums}))

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> "Position":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in fields})
