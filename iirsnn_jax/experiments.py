"""Finds and loads the experiment configs in the repository's configs/ folder."""
from __future__ import annotations

import importlib
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
