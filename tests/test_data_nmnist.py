"""N-MNIST: tiny .bin files in tonic's layout, read through the pipeline and data.inspect, against a plain
loop over events that bins them as the reference does (SPEC 4.2) in the reference's (p, x, y, t) layout."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import event_files
from event_files import encode_nmnist_bin, event_folder, random_nmnist_events, write_nmnist
from iirsnn_jax.data import CorruptFileError, DatasetNotFoundError, make_source
from iirsnn_jax.data.inspect import network_batch, sample_arrays

REPO = Path(__file__).resolve().parent.parent


def reference_frames(events, length):
    """bool [2, 34, 34, T] as the reference builds it, one event at a time."""
    x, y, p, t = events
    t0, bin_ms = min(t), 300 // length
    frames = np.zeros((2, 34, 34, max(length, (max(t) - t0) // 1000 // bin_ms + 1)), bool)
    for xi, yi, pi, ti in zip(x, y, p, t):
        frames[pi, xi, yi, ((ti - t0) // 1000) // bin_ms] = True
    return frames[..., :length]


def config_for(root, **data):
    return event_files.config_for(root, "snn_conv_1_nmnist", **data)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("nmnist")
    return root, write_nmnist(root)


@pytest.mark.parametrize("cache", [True, False])
def test_every_sample_equals_the_reference_binning(dataset, cache):
    root, made = dataset
    config = config_for(root, cache=cache)
    for split, folder in (("test", "Test"), ("train", "Train"), ("dev", "Train")):
        source = make_source(config, split)
        files = {str(p): (label, ev) for p, label, ev in made[folder]}
        for i in range(source.num_examples):
            arrays = sample_arrays(config, split, i) if i == 0 else None
            batch = network_batch(config, source, [i])  # the host's packed bits, unpacked as on the device
            label, ev = files[str(source.path(i))]
            expected = reference_frames(ev, 30)
            # ours [T, H=y, W=x, C=p] is the reference's [p, x, y, t] transposed
            np.testing.assert_array_equal(batch["input"][0].transpose(3, 2, 1, 0), expected)
            assert batch["input"].dtype == np.uint8 and batch["label"][0] == label
            if arrays is not None:
                np.testing.assert_array_equal(arrays["input"], expected)
                assert arrays["input"].shape == (2, 34, 34, 30) and int(arrays["label"]) == label


def test_order_labels_and_split(dataset):
    root, made = dataset
    config = config_for(root)
    test = make_source(config, "test")
    assert [str(test.path(i)) for i in range(test.num_examples)] == [str(p) for p, _, _ in made["Test"]]
    train, dev = make_source(config, "train"), make_source(config, "dev")
    assert (train.num_examples, dev.num_examples) == (25, 5)  # 30 samples, the reference's 1/6 for dev
    names = {str(train.path(i)) for i in range(25)} | {str(dev.path(i)) for i in range(5)}
    assert names == {str(p) for p, _, _ in made["Train"]}


def test_inspect_command_writes_the_reference_layout(dataset, tmp_path):
    root, made = dataset
    out = tmp_path / "sample.npz"
    cmd = [sys.executable, "-m", "iirsnn_jax.data.inspect", "--config=configs/snn_conv_1_nmnist.py",
           f"--config.data.root={root}", "--split=test", "--index=4", f"--out={out}"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    subprocess.run(cmd, cwd=REPO, check=True, env=env, capture_output=True)
    got = np.load(out)
    path, label, ev = made["Test"][4]
    np.testing.assert_array_equal(got["input"], reference_frames(ev, 30))
    assert int(got["label"]) == label == 2


def _one_file_dataset(tmp_path, content, folder="3", name="00000.bin"):
    good = event_folder(tmp_path, "NMNIST", "Train", "1")
    (good / "00000.bin").write_bytes(encode_nmnist_bin(*random_nmnist_events(np.random.default_rng(1))))
    bad_dir = event_folder(tmp_path, "NMNIST", "Train", folder)
    (bad_dir / name).write_bytes(content)
    return bad_dir / name


@pytest.mark.parametrize("content, message", [
    (encode_nmnist_bin(*random_nmnist_events(np.random.default_rng(2)))[:-2], "truncated"),
    (b"", "empty"),
    (encode_nmnist_bin([40], [3], [1], [5]), "outside the 34x34 sensor"),
])
def test_corrupt_files_are_named(tmp_path, content, message):
    bad = _one_file_dataset(tmp_path, content)
    with pytest.raises(CorruptFileError, match=message) as err:
        make_source(config_for(tmp_path), "train")
    assert err.value.path == str(bad)
    # skipped and counted when the config allows it
    source = make_source(config_for(tmp_path, skip_corrupt=True), "train")
    assert source.skipped == 1


@pytest.mark.parametrize("folder", ["misc", "3/extra", "."])
def test_misplaced_files_are_named(tmp_path, folder):
    bad = _one_file_dataset(tmp_path, encode_nmnist_bin(*random_nmnist_events(np.random.default_rng(3))), folder=folder,
                            name="99999.bin")
    with pytest.raises(CorruptFileError, match="misplaced") as err:
        make_source(config_for(tmp_path), "train")
    assert Path(err.value.path) == bad.resolve() or Path(err.value.path) == bad


def test_missing_dataset_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        make_source(config_for(tmp_path / "nowhere"), "train")
    text = str(err.value)
    assert "NMNIST/Train" in text and "N-MNIST/Train" in text and "tonic" in text


def test_cache_is_reused_and_invalidated(tmp_path):
    made = write_nmnist(tmp_path, per_digit=(1, 1))
    config = config_for(tmp_path)
    make_source(config, "test")
    first = sorted((tmp_path / "cache").glob("*.npy"))
    make_source(config, "test")
    assert sorted((tmp_path / "cache").glob("*.npy")) == first  # reused
    path, _, _ = made["Test"][0]
    path.write_bytes(encode_nmnist_bin([1], [2], [0], [7]))  # a changed file makes a new cache
    source = make_source(config, "test")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == len(first) + 1
    expected = np.zeros((30, 34, 34, 2), np.uint8)
    expected[0, 2, 1, 0] = 1
    np.testing.assert_array_equal(network_batch(config, source, [0])["input"][0], expected)


@pytest.mark.slow
def test_reading_the_cache_is_10x_faster_than_parsing(tmp_path):
    rng = np.random.default_rng(0)
    for digit in range(10):
        d = event_folder(tmp_path, "NMNIST", "Test", str(digit))
        for k in range(100):  # real N-MNIST samples hold about 4000 events
            (d / f"{k:05d}.bin").write_bytes(encode_nmnist_bin(*random_nmnist_events(rng, 4000)))
    parsed = make_source(config_for(tmp_path, cache=False), "test")
    make_source(config_for(tmp_path), "test")  # builds the cache
    cached = make_source(config_for(tmp_path), "test")

    def best_of_3(source):  # the least disturbed of three passes over the 1000 samples, in batches of 50
        times = []
        for _ in range(3):
            start = time.perf_counter()
            batches = [source.get_batch(np.arange(i, i + 50)) for i in range(0, 1000, 50)]
            times.append(time.perf_counter() - start)
        return min(times), batches

    parse_s, slow = best_of_3(parsed)
    cache_s, fast = best_of_3(cached)
    for a, b in zip(slow, fast):
        np.testing.assert_array_equal(a["input"], b["input"])
    print(f"1000 N-MNIST samples: parse {parse_s:.3f} s, cache {cache_s:.3f} s, {parse_s / cache_s:.0f}x")
    assert parse_s > 10 * cache_s
