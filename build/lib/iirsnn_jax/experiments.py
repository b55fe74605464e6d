"""The reference experiments by name, and loading an experiment config file.

The experiment configs live in the repository's configs/ folder (one file per experiment, as the flax
examples keep theirs); the library itself needs none of them: the schema and defaults are in
iirsnn_jax/config.py, and a trained run's config is read from its workdir (`config.read_run_config`).
`load_config(name)` is for code that starts from an experiment by name (the golden check, notebooks, tests):
it loads configs/<name>.py from the current folder, the folder given, or the source checkout this package
was imported from.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import ml_collections

# The experiments of the reference implementation (SPEC.md section 0), one config file each.
REFERENCE_EXPERIMENTS = (
    "associative_memory", "snn_mlp_1", "snn_mlp_1_non_zero", "snn_mlp_1_poisson_input", "snn_mlp_2",
    "snn_mlp_2_poisson_input", "snn_conv_1_mnist", "snn_conv_1_mnist_poisson_input", "snn_conv_1_nmnist",
    "snn_conv_1_gesture", "snn_conv_1_gesture_30", "snn_conv_1_gesture_max", "snn_conv_1_gesture_avg",
)


def config_dirs(config_dir: str | Path | None = None) -> list[Path]:
    """Where experiment configs are looked for, in order: `config_dir` if given, else ./configs and the
    configs/ folder of the source checkout that holds this package (absent when the package is installed)."""
    if config_dir is not None:
        return [Path(config_dir)]
    here = Path("configs").absolute()
    checkout = Path(__file__).resolve().parent.parent / "configs"
    return [here] if here == checkout else [here, checkout]


def load_config_file(path: str | Path) -> ml_collections.ConfigDict:
    """get_config() of the config file at `path` (as `--config=path` of train.py loads it).

    Variants import their base experiment from the experiment package (configs/__init__.py) of the
    repository: run from the repository root, where `python -m`, pytest and train.py make it importable.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file {path}")
    spec = importlib.util.spec_from_file_location(f"_iirsnn_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as error:
        if error.name == "configs":
            raise ModuleNotFoundError(f"{path} imports its base experiment from the configs package: run from "
                                      "the repository root (the folder that holds configs/)") from None
        raise
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} defines no get_config()")
    return module.get_config()


def load_config(name: str, config_dir: str | Path | None = None) -> ml_collections.ConfigDict:
    """The config of experiment `name` (a file configs/<name>.py), e.g. load_config("snn_mlp_1")."""
    for folder in config_dirs(config_dir):
        if (folder / f"{name}.py").is_file():
            return load_config_file(folder / f"{name}.py")
    searched = [str(folder) for folder in config_dirs(config_dir)]
    known = sorted({p.stem for folder in config_dirs(config_dir) if folder.is_dir()
                    for p in folder.glob("*.py") if not p.stem.startswith("_")})
    raise FileNotFoundError(f"no config file {name}.py for experiment {name!r} in {searched}; known: {known}")
