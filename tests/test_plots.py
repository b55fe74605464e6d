"""Pictures of trained runs (iirsnn_jax/plots): every expected PNG is written, valid, of its size, not blank.

Two tiny runs are trained in-process: the digits test config (a classifier) and a small associative memory
(T = 300, a narrower network, few samples, one epoch).
"""
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from golden_files import REPO
from iirsnn_jax import experiments
from iirsnn_jax.plots import make_plots, synapses
from iirsnn_jax.plots.run import load_run
from iirsnn_jax.training import loop

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("digits")
    loop.train_and_evaluate(experiments.load_config("test"), workdir)
    return workdir


@pytest.fixture(scope="module")
def memory_run(tmp_path_factory):
    config = experiments.load_config("associative_memory")
    config.model.layers = "F N(24) F N(300) O"
    config.data.pattern_samples = 20  # 2 corrupted copies of each of the 10 patterns per split
    config.data.prefetch = 0
    config.train.batch_size = 10
    config.train.epochs = 1
    config.train.progress_bar = False
    workdir = tmp_path_factory.mktemp("memory")
    loop.train_and_evaluate(config, workdir)
    return workdir


def check_png(path, size):
    """A valid PNG of `size` = (width, height) pixels with visible content."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR" and struct.unpack(">II", data[16:24]) == size, path.name
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), np.float32)
    assert pixels.shape == (size[1], size[0], 3)
    assert pixels.std() > 10.0, f"{path.name} looks blank"
    assert len(np.unique(pixels.reshape(-1, 3).astype(np.uint8), axis=0)) > 20, f"{path.name} has too few colours"
    assert 300 <= size[0] <= 2500 and 250 <= size[1] <= 2500, f"{path.name} has an odd size {size}"


def test_classifier_figures(digits_run, tmp_path):
    written = make_plots(digits_run, tmp_path, samples=2)
    names = sorted(w.path.name for w in written)
    assert names == sorted(["spike_raster_dev0_class2.png", "spike_raster_dev1_class0.png",
                            "filter_impulse_responses.png", "filter_coefficients.png", "training_curves.png",
                            "confusion_matrix_dev.png"])
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    for item in written:
        check_png(item.path, item.size)
    sizes = {w.path.name: w.size for w in written}
    assert sizes["training_curves.png"][0] > sizes["training_curves.png"][1] * 2  # three panels side by side


def test_memory_figures(memory_run, tmp_path):
    written = make_plots(memory_run, tmp_path, samples=1, prefix="am_")
    names = sorted(w.path.name for w in written)
    assert names == sorted(["am_spike_raster_dev0_pattern0.png", "am_filter_impulse_responses.png",
                            "am_filter_coefficients.png", "am_recall_patterns_dev.png", "am_training_curves.png"])
    for item in written:
        check_png(item.path, item.size)


def test_command_line_and_defaults(digits_run):
    result = subprocess.run([sys.executable, "-m", "iirsnn_jax.plots", f"--workdir={digits_run}",
                             "--figures=curves,confusion"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("training_curves.png", "confusion_matrix_dev.png"):  # default --out is <workdir>/plots
        assert (digits_run / "plots" / name).is_file() and name in result.stdout
    with pytest.raises(ValueError, match="does not apply"):  # the command reports it as a usage error
        make_plots(digits_run, kinds=["recall"])
    with pytest.raises(ValueError, match="unknown figure"):
        make_plots(digits_run, kinds=["histogram"])


def test_impulse_responses_match_the_closed_form():
    """The vectorised impulse responses equal SPEC 1.3's h[k] = dm^(k+1) - ds^(k+1) at initialisation."""
    from iirsnn_jax.filters import dual_exp_coefficients

    a1, a2, b1 = dual_exp_coefficients(4.0, 1.0)
    h = synapses.impulse_responses({"alpha_1": np.full(3, a1), "alpha_2": np.full(3, a2), "beta_1": np.full(3, b1)}, 8)
    k = np.arange(8)[:, None]
    np.testing.assert_allclose(h, np.exp(-(k + 1) / 4.0) - np.exp(-(k + 1) / 1.0) + 0 * h, atol=1e-6)
    low = synapses.impulse_responses({"alpha_1": np.array([0.5, 0.25])}, 5)
    np.testing.assert_allclose(low, np.array([[0.5, 0.25]]) ** np.arange(5)[:, None], atol=1e-7)


def test_trained_run_loads_the_checkpoint(digits_run):
    run = load_run(digits_run)
    assert run.step is not None and run.step > 0 and run.is_classifier
    learned = synapses.coefficients(dict(synapses.filter_layers(run))["axon1"])
    assert np.any(learned["alpha_1"] != learned["alpha_1"][0]), "trained coefficients should differ per element"


def test_removed_spikes_counts_what_a_removal_took_away():
    from iirsnn_jax.data import patterns
    from iirsnn_jax.plots import recall

    pattern = patterns.make_patterns()[3].T  # [T, N]
    shifted = np.roll(pattern, 1, axis=0)  # jitter-like: every spike one step later
    cut = pattern.copy()
    cut[:, 100:140] = 0  # 40 whole spike trains removed
    counts = recall.removed_spikes(np.stack([pattern, shifted, cut]), np.array([3, 3, 3]))
    assert counts[0] == 0 and counts[1] == 0 and counts[2] == pattern[:, 100:140].sum() > 0
