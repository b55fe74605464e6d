"""Every shipped golden network file through `python -m iirsnn_jax.reference check` (float64, subprocess)."""
import subprocess
import sys

import numpy as np
import pytest

from golden_files import REPO, golden_path

NETWORK_FILES = ["snn_mlp_1.npz", "snn_mlp_2.npz", "snn_conv_1_nmnist.npz", "associative_memory.npz"]


def _check(*paths):
    return subprocess.run([sys.executable, "-m", "iirsnn_jax.reference", "check", *map(str, paths)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("name", NETWORK_FILES)
def test_golden_network_matches_reference(name):
    result = _check(golden_path(name))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MISMATCH" not in result.stdout
    assert "spikes" in result.stdout and "grad" in result.stdout and "loss" in result.stdout
    if name.startswith("snn_mlp"):  # analog input, the same at every step: also checked as a held frame
        assert "held: spikes dense1" in result.stdout and "held: grad axon1" in result.stdout


def test_check_fails_on_a_flipped_spike(tmp_path):
    """The check must notice a single wrong spike and a slightly wrong gradient (exit status 1)."""
    with np.load(golden_path("snn_mlp_1.npz")) as data:
        golden = {k: data[k] for k in data.files}
    spikes = golden["layer_spikes/snn2"].copy()
    spikes[1, 7, 3] ^= 1
    bad_spike = dict(golden, **{"layer_spikes/snn2": spikes})
    grad = golden["grad/snn1.neuron_cell.weight.weight"].copy()
    grad[0, 0] += 1e-3 * np.abs(grad).max()
    bad_grad = dict(golden, **{"grad/snn1.neuron_cell.weight.weight": grad})
    np.savez(tmp_path / "bad_spike.npz", **bad_spike)
    np.savez(tmp_path / "bad_grad.npz", **bad_grad)
    result = _check(tmp_path / "bad_spike.npz", tmp_path / "bad_grad.npz")  # one run: the network compiles once
    assert result.returncode == 1, result.stdout
    sections = result.stdout.split("== ")[1:]
    assert [section.splitlines()[0] for section in sections] == [str(tmp_path / n) for n in ("bad_spike.npz",
                                                                                              "bad_grad.npz")]
    for section, culprit in zip(sections, ["dense2", "dense1.kernel"]):
        mismatches = [line for line in section.splitlines() if line.startswith("MISMATCH")]
        assert any(culprit in line for line in mismatches), section
        assert not any(other in line for line in mismatches for other in {"dense2", "dense1.kernel"} - {culprit})


def test_check_names_an_unknown_experiment(tmp_path):
    np.savez(tmp_path / "unknown.npz", experiment="no_such_experiment", input=np.zeros((1, 3, 2)))
    result = _check(tmp_path / "unknown.npz")
    assert result.returncode == 1
    assert "no_such_experiment" in result.stdout
