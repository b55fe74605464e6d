"""Finds and loads the experiment configs in the repository's configs/ folder."""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import ml_collections

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# The experiments of the reference implementation (SPEC.md section 0), one config file each.
REFERENCE_EXPERIMENTS = (
    "associative_memory", "snn_mlp_1", "snn_mlp_1_non_zero", "snn_mlp_1_poisson_input", "snn_mlp_2",
    "snn_mlp_2_poisson_input", "snn_conv_1_mnist", "snn_conv_1_mnist_poisson_input", "snn_conv_1_nmnist",
    "snn_conv_1_gesture", "snn_conv_1_gesture_30", "snn_conv_1_gesture_max", "snn_conv_1_gesture_avg",
)


def load_config(name: str) -> ml_collections.ConfigDict:
    """The config of experiment `name` (a file configs/<name>.py), e.g. load_config("snn_mlp_1")."""
    if not (CONFIG_DIR / f"{name}.py").is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))
        raise ValueError(f"no config {CONFIG_DIR / (name + '.py')} for experiment {name!r}; known: {known}")
    # Experiment configs import `configs.default`, so the repository root must be importable.
    root = str(CONFIG_DIR.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(f"configs.{name}").get_config()


def read_run_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The resolved config that train.py saved in workdir/config.json, over today's defaults: a run made
    before a config field existed reads it with its default (e.g. model.remat = "none")."""
    path = Path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the workdir must be a directory made by train.py")
    config = load_config("default")
    _merge(config, json.loads(path.read_text()))
    return config


def _merge(config: ml_collections.ConfigDict, saved: dict) -> None:
    for key, value in saved.items():
        if isinstance(value, dict) and isinstance(config.get(key), ml_collections.ConfigDict):
            _merge(config[key], value)
        else:
            config[key] = value
