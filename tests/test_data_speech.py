"""SHD and SSC: tiny HDF5 files written here in the datasets' format and tonic's layout, read through the
pipeline and data.inspect, against a binning written independently (a loop over spikes and frames that
tests the inequalities t*dt <= time < (t+1)*dt one by one); and one epoch of train.py on them."""
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from iirsnn_jax.config import default_config
from iirsnn_jax.data import CorruptFileError, DatasetNotFoundError, build, make_source
from iirsnn_jax.data.inspect import sample_arrays

REPO = Path(__file__).resolve().parent.parent
FILES = {"shd": ("shd_train.h5", "shd_test.h5"), "ssc": ("ssc_train.h5", "ssc_valid.h5", "ssc_test.h5")}
CLASSES = {"shd": 20, "ssc": 35}


def random_sample(rng, dtype, length=20, dt=0.01):
    """(times, units): random spikes up to 1.3 T dt, plus spikes on frame edges as the file's dtype stores
    them (some round below the edge), at T dt exactly, and a burst of 300 spikes on one unit."""
    n = int(rng.integers(0, 60))
    times = list(rng.uniform(0, 1.3 * length * dt, n))
    edges = rng.integers(0, length + 2, 6)
    times += [e * dt for e in edges] + [length * dt]
    units = list(rng.integers(0, 700, len(times)))
    if rng.random() < 0.3:
        times += [0.5 * dt] * 300
        units += [int(rng.integers(0, 700))] * 300
    order = np.argsort(times, kind="stable")
    return np.asarray(times, dtype)[order], np.asarray(units, np.uint16)[order]


def write_h5(path, samples, labels, time_dtype=np.float32):
    """An HDF5 file as SHD/SSC ship them: spikes/times and spikes/units (one variable-length array per sample),
    labels, and the extra group (speaker, keys) that the source ignores."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.dtype(time_dtype)))
        units = f.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.dtype(np.uint16)))
        for i, (t, u) in enumerate(samples):
            times[i], units[i] = t, u
        f.create_dataset("labels", data=np.asarray(labels, np.uint16))
        f.create_dataset("extra/speaker", data=np.zeros(len(samples), np.uint16))
        f.create_dataset("extra/keys", data=np.asarray([b"k%d" % i for i in range(max(labels) + 1)]))


def write_dataset(root, name, sizes, seed=0, time_dtype=np.float32, length=20):
    """{file name: (samples, labels)} written to root/<NAME>/ for each of the dataset's files."""
    rng = np.random.default_rng(seed)
    made = {}
    for filename, n in zip(FILES[name], sizes):
        samples = [random_sample(rng, time_dtype, length) for _ in range(n)]
        labels = [i % CLASSES[name] for i in range(n)]
        write_h5(root / name.upper() / filename, samples, labels, time_dtype)
        made[filename] = (samples, labels)
    return made


def loop_binning(times, units, length, dt, pool, encoding):
    """uint8 [length, 700 / pool] by loops: each spike, each frame, the rule as written."""
    counts = np.zeros((length, 700 // pool), np.int64)
    for time, unit in zip(times, units):
        for t in range(length):
            if t * dt <= float(time) < (t + 1) * dt:
                counts[t, int(unit) // pool] += 1
    return (counts > 0).astype(np.uint8) if encoding == "or" else np.minimum(counts, 255).astype(np.uint8)


def config_for(root, name="shd", **data):
    config = default_config()
    config.data.update({**dict(name=name, root=str(root), length=20, bin_ms=10.0, channel_pool=1,
                               encoding="count", cache_dir=str(Path(root) / "cache")), **data})
    config.model.input_shape = (700 // config.data.channel_pool,)
    return config


@pytest.mark.parametrize("time_dtype", [np.float16, np.float32])
@pytest.mark.parametrize("pool, encoding, cache", [(1, "count", True), (7, "count", False), (5, "or", True)])
def test_every_sample_equals_the_loop_binning(tmp_path, time_dtype, pool, encoding, cache):
    made = write_dataset(tmp_path, "shd", (10, 4), time_dtype=time_dtype)
    config = config_for(tmp_path, channel_pool=pool, encoding=encoding, cache=cache)
    checked = set()
    for split, filename in (("train", "shd_train.h5"), ("dev", "shd_train.h5"), ("test", "shd_test.h5")):
        source = make_source(config, split)
        samples, labels = made[filename]
        batch = source.get_batch(np.arange(source.num_examples))
        assert batch["input"].dtype == np.uint8 and batch["input"].shape[1:] == (20, 700 // pool)
        for i in range(source.num_examples):
            # find the sample: the label and the loop binning must match exactly one row of the file
            rows = [r for r in range(len(samples)) if labels[r] == batch["label"][i] and np.array_equal(
                loop_binning(*samples[r], 20, 0.01, pool, encoding), batch["input"][i])]
            assert len(rows) == 1, f"{split} sample {i} matches file rows {rows}"
            checked.add((filename, rows[0]))
    assert len(checked) == 14  # every sample of both files, train and dev disjoint


def test_frame_edges_where_division_rounds_the_wrong_way(tmp_path):
    """floor(time / dt) puts 0.29 in frame 28 and 0.35 in frame 35; the rule says 29 (29 * 0.01 == 0.29) and
    34 (35 * 0.01 > 0.35). 1.0 = 100 dt is after the last frame; the float just below it is in frame 99."""
    assert np.floor(0.29 / 0.01) == 28 and np.floor(0.35 / 0.01) == 35
    times = np.asarray([0.0, 0.29, 0.35, np.nextafter(1.0, 0), 1.0, 1.2], np.float64)
    write_h5(tmp_path / "SHD" / "shd_test.h5", [(times, np.arange(6, dtype=np.uint16))], [3], np.float64)
    frames = make_source(config_for(tmp_path, length=100), "test").get_batch(np.asarray([0]))["input"][0]
    expected = np.zeros((100, 700), np.uint8)
    expected[[0, 29, 34, 99], [0, 1, 2, 3]] = 1
    np.testing.assert_array_equal(frames, expected)
    np.testing.assert_array_equal(loop_binning(times, np.arange(6), 100, 0.01, 1, "count"), expected)


def test_shd_dev_is_a_seeded_tenth_and_ssc_has_its_own(tmp_path):
    write_dataset(tmp_path, "shd", (40, 3))
    shd = {s: make_source(config_for(tmp_path), s) for s in ("train", "dev", "test")}
    assert {s: src.num_examples for s, src in shd.items()} == {"train": 36, "dev": 4, "test": 3}
    assert sorted(np.concatenate([shd["train"]._rows, shd["dev"]._rows])) == list(range(40))
    other = make_source(config_for(tmp_path, split_seed=7), "dev")
    assert set(other._rows) != set(shd["dev"]._rows)
    made = write_dataset(tmp_path, "ssc", (6, 5, 4), seed=1)
    ssc = {s: make_source(config_for(tmp_path, "ssc", dev_size=3), s) for s in ("train", "dev", "test")}
    assert {s: src.num_examples for s, src in ssc.items()} == {"train": 6, "dev": 5, "test": 4}
    for i in range(5):
        expected = loop_binning(*made["ssc_valid.h5"][0][i], 20, 0.01, 1, "count")
        np.testing.assert_array_equal(ssc["dev"].get_batch(np.asarray([i]))["input"][0], expected)


def test_inspect_and_pipeline(tmp_path):
    made = write_dataset(tmp_path, "shd", (10, 4))
    batch = next(build(config_for(tmp_path), "test", batch_size=3, process_index=0, process_count=1).epoch(0))
    assert batch["input"].shape == (3, 20, 700) and batch["mask"].all()
    out = tmp_path / "sample.npz"
    cmd = [sys.executable, "-m", "iirsnn_jax.data.inspect", "--config=configs/shd.py",
           f"--config.data.root={tmp_path}", f"--config.data.cache_dir={tmp_path / 'cache'}",
           "--split=test", "--index=2", f"--out={out}"]
    subprocess.run(cmd, cwd=REPO, check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True)
    got = np.load(out)
    samples, labels = made["shd_test.h5"]
    np.testing.assert_array_equal(got["input"], loop_binning(*samples[2], 100, 0.01, 1, "count").T)
    assert int(got["label"]) == labels[2]
    arrays = sample_arrays(config_for(tmp_path, channel_pool=10), "test", 1)
    assert arrays["input"].shape == (70, 20)


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        make_source(config_for(tmp_path / "nowhere", "ssc"), "dev")
    assert "SSC/ssc_valid.h5" in str(err.value) and "tonic" in str(err.value)
    bad = tmp_path / "SHD" / "shd_test.h5"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not hdf5")
    with pytest.raises(CorruptFileError, match="not a readable HDF5 file") as err:
        make_source(config_for(tmp_path), "test")
    assert err.value.path == str(bad)
    with h5py.File(bad, "w") as f:
        f.create_dataset("labels", data=np.zeros(2, np.uint16))
    with pytest.raises(CorruptFileError, match="spikes/times"):
        make_source(config_for(tmp_path), "test")
    good = (np.asarray([0.01], np.float32), np.asarray([3], np.uint16))
    write_h5(bad, [good, (np.asarray([0.02], np.float32), np.asarray([700], np.uint16)), good], [1, 2, 3])
    for cache in (True, False):
        with pytest.raises(CorruptFileError, match=r"sample 1: units 700\.\.700 outside"):
            make_source(config_for(tmp_path, cache=cache), "test").get_batch(np.arange(3))
        kept = make_source(config_for(tmp_path, cache=cache, skip_corrupt=True), "test")
        assert kept.num_examples == 2 and list(kept.get_batch(np.arange(2))["label"]) == [1, 3]
    write_h5(bad, [good], [20])
    with pytest.raises(CorruptFileError, match="labels must be integers in 0..19"):
        make_source(config_for(tmp_path), "test")


def test_cache_is_reused_and_invalidated(tmp_path):
    made = write_dataset(tmp_path, "shd", (10, 4))
    config = config_for(tmp_path)
    make_source(config, "test")
    first = sorted((tmp_path / "cache").glob("*.npy"))
    make_source(config, "test")
    assert sorted((tmp_path / "cache").glob("*.npy")) == first
    samples, labels = made["shd_test.h5"]
    write_h5(tmp_path / "SHD" / "shd_test.h5", samples[::-1], labels[::-1])
    source = make_source(config, "test")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == len(first) + 1
    expected = loop_binning(*samples[-1], 20, 0.01, 1, "count")
    np.testing.assert_array_equal(source.get_batch(np.asarray([0]))["input"][0], expected)


@pytest.mark.parametrize("name, sizes", [("shd", (20, 4)),
                                         pytest.param("ssc", (12, 4, 4), marks=pytest.mark.slow)])
def test_one_epoch_of_train_py(tmp_path, name, sizes):
    """The experiment's config as it is (network, T = 100 bins of 10 ms, channels), one epoch on tiny files."""
    write_dataset(tmp_path, name, sizes, length=100)
    workdir = tmp_path / "run"
    cmd = [sys.executable, "train.py", f"--config=configs/{name}.py", f"--workdir={workdir}",
           f"--config.data.root={tmp_path}", "--config.train.epochs=1", "--config.train.batch_size=4",
           "--config.train.eval_batch_size=4", "--config.train.progress_bar=False"]
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert {line["split"] for line in lines} >= {"train", "dev"}
    assert all(np.isfinite(line["loss"]) for line in lines)
