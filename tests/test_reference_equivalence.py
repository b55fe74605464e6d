"""Our networks against an independent re-implementation of the reference, for all 13 experiments.

Golden files of the reference exist here for four experiments only (shared/golden); the maintainers hold
back those of the other nine and run `python -m iirsnn_jax.reference check FILE.npz` on them.  This file
gives every experiment a golden file of that exact format from `reference_oracle`, a re-implementation
written from SPEC.md in the reference's own layout and style (time last, PyTorch names and layouts, a Python
loop over time per layer), which shares no code with the library:

1. the loop model reproduces the four shipped golden files of the real reference (spikes exactly, loss to
   1e-9, gradients to 1e-5 relative), which shows it computes what the reference computes;
2. for each experiment, `make_golden` writes a file and the check command must accept it (exit status 0,
   no MISMATCH), and every spiking layer of the file must spike, so the comparison has teeth.

Speed: the check command pays for importing JAX and compiling each network, so the default run checks the
files of one architecture family in one subprocess, in a background thread, while this process writes the
next family's files and runs the sanity tests.  If a joint run fails, each of its files is checked again
alone, so every experiment gets its own exit status and output.  The default run covers the seven distinct
networks; `-m slow` adds the six experiments that reuse one of them with other inputs, and, per experiment,
a file with another seed, batch 3 and a longer T, each checked in its own subprocess.
"""
from __future__ import annotations

import concurrent.futures
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import reference_oracle as oracle
from golden_files import golden_path
from iirsnn_jax.experiments import REFERENCE_EXPERIMENTS

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ("snn_mlp_1", "snn_mlp_2", "snn_conv_1_nmnist", "associative_memory")
LOSS_RTOL = 1e-9
ARRAY_RTOL = 1e-5
CHECK_TIMEOUT_S = 1800

# Experiments whose networks share layer shapes: their files are written together (the loop model's cells
# compile once per shape) and checked in one subprocess (the library compiles each network once).  Cheap
# families first, so that the checker starts early.
FAMILIES = (
    ("snn_mlp_1", "snn_mlp_1_non_zero", "snn_mlp_1_poisson_input", "snn_mlp_2", "snn_mlp_2_poisson_input",
     "associative_memory"),
    ("snn_conv_1_nmnist",),
    ("snn_conv_1_mnist", "snn_conv_1_mnist_poisson_input"),
    ("snn_conv_1_gesture", "snn_conv_1_gesture_30", "snn_conv_1_gesture_max", "snn_conv_1_gesture_avg"),
)
assert sorted(e for family in FAMILIES for e in family) == sorted(REFERENCE_EXPERIMENTS)


# These share their network with another experiment and differ only in input statistics: checked with
# `-m slow`, to keep the default run short.
SAME_NETWORK_AS_ANOTHER = ("snn_mlp_1_non_zero", "snn_mlp_1_poisson_input", "snn_mlp_2_poisson_input",
                           "snn_conv_1_mnist_poisson_input", "snn_conv_1_gesture_30", "snn_conv_1_gesture_avg")
EXPERIMENT_PARAMS = [pytest.param(e, marks=pytest.mark.slow) if e in SAME_NETWORK_AS_ANOTHER else e
                     for e in REFERENCE_EXPERIMENTS]


def _seed(experiment: str) -> int:
    return 1 + REFERENCE_EXPERIMENTS.index(experiment)


def _run_check(paths) -> tuple[int, str]:
    """Runs the check command on `paths` in a subprocess; returns (exit status, stdout + stderr)."""
    proc = subprocess.run([sys.executable, "-m", "iirsnn_jax.reference", "check", *map(str, paths)],
                          cwd=REPO, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
    return proc.returncode, proc.stdout + proc.stderr


def _section(output: str, path: Path) -> str:
    """The part of a joint check's output about `path` (from its '== path' header to the next one)."""
    lines, inside = [], False
    for line in output.splitlines():
        if line.startswith("== "):
            inside = line[3:].strip() == str(path)
        if inside:
            lines.append(line)
    return "\n".join(lines)


def _assert_check_passed(experiment: str, status: int, output: str):
    print(output)
    assert "MISMATCH" not in output and "ERROR" not in output, f"{experiment}: the check command disagrees"
    assert status == 0, f"{experiment}: check command exit status {status}"


def _assert_every_layer_spikes(experiment: str, golden: dict):
    layers = [k for k in golden if k.startswith("layer_spikes/")]
    assert len(layers) >= 2, f"{experiment}: no spiking layers in the generated file"
    for key in layers:
        spikes = golden[key]
        assert 0 < spikes.sum() < spikes.size, f"{experiment}: {key} is silent or saturated"
    assert golden["output_spikes"].any()


class CheckPipeline:
    """Writes golden files family by family and checks each family in a background subprocess."""

    def __init__(self, directory: Path, experiments):
        self.directory = directory
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.paths, self.goldens, self.futures = {}, {}, {}
        for family in FAMILIES:
            members = [e for e in family if e in experiments]
            if not members:
                continue
            for experiment in members:
                golden = oracle.make_golden(experiment, _seed(experiment))
                path = directory / f"{experiment}.npz"
                np.savez(path, **golden)
                self.paths[experiment] = path
                self.goldens[experiment] = golden
            future = self.executor.submit(_run_check, [self.paths[e] for e in members])
            for experiment in members:
                self.futures[experiment] = future

    def result(self, experiment: str) -> tuple[int, str]:
        """(exit status, output) of checking this experiment's file."""
        status, output = self.futures[experiment].result()
        section = _section(output, self.paths[experiment])
        if status == 0 and "OK:" in section:
            return 0, section
        return _run_check([self.paths[experiment]])  # something failed: this file alone

    def close(self):
        self.executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def pipeline(request, tmp_path_factory):
    """Generates (and starts checking) the files of the experiments that the selected tests need."""
    wanted = {item.callspec.params["experiment"] for item in request.session.items
              if item.module is request.module and "pipeline" in item.fixturenames
              and hasattr(item, "callspec") and "experiment" in item.callspec.params}
    runner = CheckPipeline(tmp_path_factory.mktemp("generated_goldens"), wanted)
    yield runner
    runner.close()


# Ordering matters for speed only: the first test builds the pipeline, the sanity tests run while the
# checker works, the check results are collected last.

@pytest.mark.parametrize("experiment", EXPERIMENT_PARAMS)
def test_generated_golden_has_the_reference_format(experiment, pipeline):
    golden = pipeline.goldens[experiment]
    assert str(golden["experiment"]) == experiment
    _assert_every_layer_spikes(experiment, golden)
    params = [k for k in golden if k.startswith("param/")]
    grads = [k for k in golden if k.startswith("grad/")]
    assert grads and all(g.replace("grad/", "param/", 1) in params for g in grads)
    for key in grads:
        assert golden[key].shape == golden[key.replace("grad/", "param/", 1)].shape
        assert golden[key].dtype == np.float32
    if oracle.is_classifier(experiment):
        np.testing.assert_array_equal(golden["spike_counts"], golden["output_spikes"].sum(-1))
    else:
        np.testing.assert_array_equal(golden["target"][..., 4:], golden["input"][..., :-4])


@pytest.mark.parametrize("name", SHIPPED)
def test_loop_model_reproduces_shipped_golden(name):
    with np.load(golden_path(f"{name}.npz")) as data:
        golden = {k: data[k] for k in data.files}
    experiment = str(golden["experiment"])
    params = {k[len("param/"):]: v for k, v in golden.items() if k.startswith("param/")}
    target = golden["labels"] if "labels" in golden else golden["filtered_target"]
    result = oracle.run(experiment, params, golden["input"], target)

    np.testing.assert_array_equal(result["output_spikes"], golden["output_spikes"])
    golden_layers = {k[len("layer_spikes/"):] for k in golden if k.startswith("layer_spikes/")}
    assert set(result["layer_spikes"]) == golden_layers
    for module, spikes in result["layer_spikes"].items():
        np.testing.assert_array_equal(spikes, golden[f"layer_spikes/{module}"], err_msg=module)
    if "spike_counts" in golden:
        np.testing.assert_array_equal(result["output_spikes"].sum(-1), golden["spike_counts"])
    if "filtered_output" in golden:
        ref = golden["filtered_output"]
        assert np.abs(result["filtered_output"] - ref).max() <= ARRAY_RTOL * np.abs(ref).max()
    loss = float(golden["loss"])
    assert abs(result["loss"] - loss) <= LOSS_RTOL * abs(loss), (result["loss"], loss)

    golden_grads = {k[len("grad/"):]: v for k, v in golden.items() if k.startswith("grad/")}
    assert set(result["grads"]) == set(golden_grads)
    for key, ref in golden_grads.items():
        ours = result["grads"][key]
        assert ours.shape == ref.shape, key
        error = np.abs(ours - ref).max()
        assert error <= ARRAY_RTOL * np.abs(ref).max(), f"grad {key}: max abs error {error:.3e}"


@pytest.mark.parametrize("experiment", EXPERIMENT_PARAMS)
def test_check_command_accepts_loop_model_golden(experiment, pipeline):
    status, output = pipeline.result(experiment)
    _assert_check_passed(experiment, status, output)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", REFERENCE_EXPERIMENTS)
def test_check_command_other_seed_batch_and_length(experiment, tmp_path):
    golden = oracle.make_golden(experiment, 100 + _seed(experiment), batch=3,
                                length=oracle.default_length(experiment) + 3)
    _assert_every_layer_spikes(experiment, golden)
    path = tmp_path / f"{experiment}.npz"
    np.savez(path, **golden)
    status, output = _run_check([path])
    _assert_check_passed(experiment, status, output)
