"""Checks of a config's values before anything runs: a value that cannot make sense is a `ConfigError` that
names the key, the value and what was expected, instead of a crash mid-run or a run that trains at chance.

`check_config(config)` looks at the config alone (ranges, names, fields that must agree);
`check_output_width(config, width, num_classes)` at the network against the dataset, once both are built.
Names checked elsewhere with their own clear errors (layer strings, dtypes, surrogates, encodings, data
sources) are not repeated here.
"""
from __future__ import annotations

import numbers

from iirsnn_jax import architecture
from iirsnn_jax.errors import ConfigError

LOSSES = ("cross_entropy", "mse")
OPTIMIZERS = ("adam", "adamw")
CPU_SCHEDULERS = ("memory", "concurrency")  # training/compiler.py names XLA's for each
BEST_METRICS = ("auto", "accuracy", "loss")
# Classes of the reference datasets; other sources say theirs in a `num_classes` attribute.
NUM_CLASSES = {"mnist": 10, "nmnist": 10, "digits": 10, "gesture": 11}


def _number(config, key: str):
    section, name = key.split(".")
    value = config[section][name]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{key}={value!r} must be a number")
    return value


def _at_least(config, key: str, low, integer: bool = True) -> None:
    value = _number(config, key)
    if integer and value != int(value):
        raise ConfigError(f"{key}={value!r} must be a whole number")
    if value < low:
        raise ConfigError(f"{key}={value!r} must be >= {low}")


def _positive(config, key: str) -> None:
    value = _number(config, key)
    if not value > 0:
        raise ConfigError(f"{key}={value!r} must be > 0")


def check_config(config) -> None:
    """Raises ConfigError for the first value of `config` that cannot work (see the module docstring)."""
    train, model = config.train, config.model
    if train.loss not in LOSSES:
        raise ConfigError(f"train.loss={train.loss!r} must be one of {LOSSES}")
    if train.best_metric not in BEST_METRICS:
        raise ConfigError(f"train.best_metric={train.best_metric!r} must be one of {BEST_METRICS}")
    if train.best_metric == "accuracy" and train.loss != "cross_entropy":
        raise ConfigError("train.best_metric='accuracy' needs a classifier (train.loss='cross_entropy')")
    if train.optimizer not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer={train.optimizer!r} must be one of {OPTIMIZERS}")
    if train.cpu_scheduler not in CPU_SCHEDULERS:
        raise ConfigError(f"train.cpu_scheduler={train.cpu_scheduler!r} must be one of {CPU_SCHEDULERS}")
    for key in ("train.batch_size", "train.microbatches", "train.keep_checkpoints", "data.length"):
        _at_least(config, key, 1)
    for key in ("train.epochs", "train.eval_batch_size", "train.checkpoint_every_steps", "train.sync_every_steps",
                "data.prefetch", "data.num_workers"):
        _at_least(config, key, 0)
    _at_least(config, "data.dev_size", -1)
    _at_least(config, "train.checkpoint_min_interval_s", 0, integer=False)
    for key in ("train.learning_rate", "train.gamma", "model.tau_m", "model.tau_s", "model.output_tau_m",
                "model.output_tau_s", "model.surrogate_width", "model.threshold"):
        _positive(config, key)
    if _number(config, "train.weight_decay") < 0:
        raise ConfigError(f"train.weight_decay={train.weight_decay!r} must be >= 0")
    if not 0 <= _number(config, "model.dropout_rate") < 1:
        raise ConfigError(f"model.dropout_rate={model.dropout_rate!r} must be in [0, 1)")
    milestones = tuple(train.milestones)
    if any(isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 0 for m in milestones):
        raise ConfigError(f"train.milestones={milestones!r} must be epochs (whole numbers >= 0)")
    if train.batch_size % train.microbatches:
        raise ConfigError(f"train.microbatches={train.microbatches} must divide train.batch_size={train.batch_size}")
    kinds = [spec.kind for spec in architecture.parse(model.layers)]
    if train.loss == "mse" and "O" not in kinds:
        raise ConfigError(f"train.loss='mse' compares the output filter's response with a target, but "
                          f"model.layers={model.layers!r} has no output filter 'O' (add it, or use cross_entropy)")
    if any(not isinstance(d, numbers.Integral) or d < 1 for d in model.input_shape):
        raise ConfigError(f"model.input_shape={tuple(model.input_shape)!r} must be positive whole numbers")


def num_classes(config, source=None) -> int | None:
    """Classes of config's dataset (None when unknown, e.g. the associative memory)."""
    return getattr(source, "num_classes", None) or NUM_CLASSES.get(config.data.name)


def check_output_width(config, width: int, num_classes: int | None) -> None:
    """A classifier's last spiking layer needs a neuron per class (its spike counts are the logits)."""
    if config.train.loss == "cross_entropy" and num_classes is not None and width < num_classes:
        raise ConfigError(f"the network's output layer has {width} neurons but {config.data.name} has "
                          f"{num_classes} classes: the last N(...) of model.layers={config.model.layers!r} "
                          f"must have at least {num_classes}")
