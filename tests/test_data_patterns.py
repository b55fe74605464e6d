"""Associative memory: the patterns' structure (SPEC 3.1), targets against the golden reference outputs and
the jax output filter (SPEC 3.2), corruption statistics (SPEC 3.3)."""
from pathlib import Path

import numpy as np
import pytest

from iirsnn_jax.data import make_source, patterns
from iirsnn_jax.data.inspect import sample_arrays
from iirsnn_jax.experiments import load_config

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden" / "associative_memory.npz"


def test_pattern_structure():
    p = patterns.make_patterns()
    assert p.shape == (10, 300, 300) and p.dtype == np.float32 and set(np.unique(p)) == {0.0, 1.0}
    n, t = np.nonzero(p.any(0))
    assert np.all(t % 5 == 0) and t.min() >= 20 and t.max() <= 290
    for k in range(4, 59):  # at step 5k only neurons n = k (mod 3)
        assert np.all(np.nonzero(p[:, :, 5 * k])[1] % 3 == k % 3)
    counts = p.sum((1, 2))
    assert np.all((800 < counts) & (counts < 1800)) and len(set(map(bytes, p.astype(np.uint8)))) == 10
    assert 0.01 < p.mean() < 0.017 and p.sum(2).max() <= 20


def test_delay_and_filter_match_the_golden_reference():
    if not GOLDEN.is_file():
        pytest.skip("shared/golden is not next to this checkout")
    golden = np.load(GOLDEN)
    np.testing.assert_array_equal(patterns.delay(golden["input"]), golden["target"])
    np.testing.assert_array_equal(patterns.dual_exp_filter(golden["target"]), golden["filtered_target"])


def test_filter_matches_the_jax_output_filter():
    import jax
    import jax.numpy as jnp

    from iirsnn_jax import filters

    x = (np.random.default_rng(0).random((300, 3, 7)) > 0.9).astype(np.float32)  # [T, B, F]
    v0 = filters.dual_exp_peak_normaliser(8.0, 2.0)
    ours, _ = jax.jit(filters.dual_exp_output_filter)(jnp.asarray(x), np.exp(-1 / 8), np.exp(-1 / 2), v0)
    np.testing.assert_allclose(patterns.dual_exp_filter(np.moveaxis(x, 0, -1)), np.moveaxis(np.asarray(ours), 0, -1),
                               rtol=1e-5, atol=1e-5)  # float32 scan vs float64 numpy


def test_batches_and_inspect():
    config = load_config("associative_memory")
    source = make_source(config, "dev")
    assert source.num_examples == 1000
    batch = source.get_batch(np.asarray([3, 17, 999]), epoch=2)
    assert batch["input"].shape == (3, 300, 300) and batch["input"].dtype == np.uint8
    np.testing.assert_array_equal(batch["label"], [3, 7, 9])
    p = patterns.make_patterns()
    np.testing.assert_array_equal(batch["target"][1], patterns.delay(p[7]).T)  # [T, N]
    np.testing.assert_array_equal(batch["filtered_target"][1], patterns.dual_exp_filter(patterns.delay(p[7])).T)
    arrays = sample_arrays(config, "dev", 17, epoch=2)  # reference layout [N, T]
    np.testing.assert_array_equal(arrays["input"], batch["input"][1].T)
    np.testing.assert_array_equal(arrays["target"], patterns.delay(p[7]))
    np.testing.assert_array_equal(arrays["input"], source.get_batch(np.asarray([17]), epoch=2)["input"][0].T)
    assert not np.array_equal(batch["input"][1], source.get_batch(np.asarray([17]), epoch=3)["input"][0])
    assert not np.array_equal(batch["input"][1], make_source(config, "test").get_batch(np.asarray([17]), 2)["input"][0])


def test_corruption_statistics():
    p = patterns.make_patterns()[2]
    rngs = [np.random.default_rng(s) for s in range(600)]
    outs = [patterns.corrupt(p, r) for r in rngs]
    noise_only = [o for o in outs if np.all(o >= p)]  # nothing removed or moved: the 60 % untouched branch
    assert 0.5 < len(noise_only) / len(outs) < 0.7
    added = np.mean([(o - p).sum() / (p == 0).sum() for o in noise_only])
    assert 0.004 < added < 0.006  # each silent element fires with probability 0.005
    assert all(set(np.unique(o)) <= {0.0, 1.0} for o in outs)
    removed_rows = np.mean([np.any((p.sum(1) > 0) & (o.sum(1) == 0)) for o in outs])
    assert 0.03 < removed_rows < 0.2  # 0.4 * 0.5 * 0.5 = 10 % remove 40 whole spike trains


def test_jitter_moves_spikes_by_rounded_normal_steps():
    p = np.zeros((300, 300), np.float32)
    p[np.arange(0, 300, 3), 150] = 1
    out = patterns.jitter(p, np.random.default_rng(0))
    shifts = np.nonzero(out)[1] - 150
    assert out.sum() == 100 and np.abs(shifts).max() <= 4 and 0.5 < np.mean(shifts != 0) < 0.8
