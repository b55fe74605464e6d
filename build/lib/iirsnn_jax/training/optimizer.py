"""The reference's optimizers and its per-epoch MultiStepLR schedule, as optax transformations."""
from __future__ import annotations

import optax


def learning_rate_schedule(train_cfg, steps_per_epoch: int) -> optax.Schedule:
    """MultiStepLR: the rate is multiplied by `gamma` at each epoch in `milestones` (a step function of steps)."""
    boundaries = {int(m) * steps_per_epoch: float(train_cfg.gamma) for m in train_cfg.milestones}
    return optax.piecewise_constant_schedule(float(train_cfg.learning_rate), boundaries)


def make_optimizer(train_cfg, steps_per_epoch: int) -> optax.GradientTransformation:
    """Adam (PyTorch defaults: b1 0.9, b2 0.999, eps 1e-8) or AdamW with decoupled weight decay.

    PyTorch's AdamW scales the decay by the learning rate (p -= lr * wd * p), as optax.adamw does.
    """
    schedule = learning_rate_schedule(train_cfg, steps_per_epoch)
    if train_cfg.optimizer == "adam":
        return optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-8)
    if train_cfg.optimizer == "adamw":
        return optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=float(train_cfg.weight_decay))
    raise ValueError(f"train.optimizer must be 'adam' or 'adamw', got {train_cfg.optimizer!r}")
