"""DVS Gesture: tiny tonic-layout .npy files through the pipeline, against the reference's binning (SPEC 2.5)
written independently here in the reference's (p, x, y, t) layout."""
from pathlib import Path

import numpy as np
import pytest

import event_files
from event_files import event_folder, random_gesture, write_gesture
from iirsnn_jax.data import CorruptFileError, DatasetNotFoundError, make_source
from iirsnn_jax.data.inspect import network_batch, sample_arrays


def reference_or(ev, length):
    """spikingjelly-era OR frames [2, 128, 128, T], microseconds as tonic gives them (t_ms * 1000)."""
    t = ev[:, 3].astype(np.int64) * 1000
    t = t - t.min()
    width = (t.max() + 1) // length
    frames = np.zeros((2, 128, 128, length + 1), bool)
    frames[ev[:, 2], ev[:, 0], ev[:, 1], t // width] = True
    return frames[..., :length]


def reference_count(ev, length, mode):
    """gesture_max / gesture_avg: 1 ms bool raster, summed per bin in float32, frame / max or / sum."""
    t_ms = (ev[:, 3].astype(np.int64) * 1000 - ev[:, 3].min() * 1000) // 1000
    width = (t_ms.max() + 1) // length
    raster = np.zeros((2, 128, 128, (length + 1) * width), bool)
    raster[ev[:, 2], ev[:, 0], ev[:, 1], t_ms] = True
    frames = raster.reshape(2, 128, 128, length + 1, width).sum(-1, dtype=np.float32)[..., :length]
    denom = frames.max(axis=(0, 1, 2)) if mode == "max" else frames.sum(axis=(0, 1, 2))
    return frames / denom


def config_for(root, experiment="snn_conv_1_gesture", **data):
    return event_files.config_for(root, experiment, **data)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("gesture")
    return root, write_gesture(root)


@pytest.mark.parametrize("name, mode", [("snn_conv_1_gesture", "or"), ("snn_conv_1_gesture_30", "or"),
                                        ("snn_conv_1_gesture_max", "max"), ("snn_conv_1_gesture_avg", "avg")])
def test_samples_equal_the_reference_binning(dataset, name, mode):
    root, made = dataset
    config = config_for(root, name)
    length = config.data.length
    for split, folder in (("train", "ibmGestureTrain"), ("dev", "ibmGestureTrain"), ("test", "ibmGestureTest")):
        source = make_source(config, split)
        for i in range(source.num_examples):
            label, ev = made[folder][str(source.path(i))]
            got = sample_arrays(config, split, i)  # what data.inspect writes: [p, x, y, t]
            if mode == "or":
                np.testing.assert_array_equal(got["input"], reference_or(ev, length))
                assert got["input"].dtype == np.uint8
            else:
                np.testing.assert_allclose(got["input"], reference_count(ev, length, mode), rtol=1e-6, atol=0)
                assert got["input"].dtype == np.float32
            assert got["input"].shape == (2, 128, 128, length) and int(got["label"]) == label


def test_splits_order_and_batches(dataset):
    root, made = dataset
    config = config_for(root)
    test = make_source(config, "test")
    assert [str(test.path(i)) for i in range(3)] == sorted(made["ibmGestureTest"], key=lambda p: int(Path(p).stem))
    train, dev = make_source(config, "train"), make_source(config, "dev")
    assert (train.num_examples, dev.num_examples) == (5, 1)  # round(6 * 128 / 1056)
    batch = train.get_batch(np.arange(5))
    assert batch["input"].shape == (5, 50 * 128 * 128 * 2 // 8) and batch["label"].dtype == np.int32  # packed bits


def test_empty_frames_normalise_to_zero(tmp_path):
    d = event_folder(tmp_path, "DVSGesture", "ibmGestureTest", "user01_led")
    # events only in the first and last ms: every bin in between is empty (the reference divides 0 by 0)
    np.save(d / "4.npy", np.array([[1, 2, 0, 0], [3, 4, 1, 299]]))
    config = config_for(tmp_path, "snn_conv_1_gesture_max")
    x = network_batch(config, make_source(config, "test"), [0])["input"]
    assert np.isfinite(x).all() and x[0, 0].max() == 1 and x[0, 1:-1].max() == 0


@pytest.mark.parametrize("writer, message", [
    (lambda p: p.write_bytes(np.lib.format.magic(1, 0) + b"\x76\x00{'descr': '<i8', 'fortran_order': False, "
                             b"'shape': (100, 4), }" + b" " * 60 + b"\n" + b"\0" * 16), "cannot be read"),
    (lambda p: p.write_bytes(b""), "cannot be read"),
    (lambda p: np.save(p, np.zeros((0, 4), np.int64)), "no events"),
    (lambda p: np.save(p, np.zeros((5, 3), np.int64)), "expected an"),
    (lambda p: np.save(p, np.array([[200, 1, 0, 5]])), "outside the 128x128 sensor"),
])
def test_corrupt_files_are_named(tmp_path, writer, message):
    d = event_folder(tmp_path, "DVSGesture", "ibmGestureTest", "user01_led")
    np.save(d / "0.npy", random_gesture(np.random.default_rng(0)))
    writer(d / "1.npy")
    with pytest.raises(CorruptFileError, match=message) as err:
        make_source(config_for(tmp_path), "test")
    assert err.value.path == str(d / "1.npy")
    assert make_source(config_for(tmp_path, skip_corrupt=True), "test").num_examples == 1


@pytest.mark.parametrize("rel", ["12.npy", "x.npy", "../stray.npy", "user01_led/deeper/0.npy", "../notauser/0.npy"])
def test_misplaced_files_are_named(tmp_path, rel):
    d = event_folder(tmp_path, "DVSGesture", "ibmGestureTrain", "user01_led")
    np.save(d / "0.npy", random_gesture(np.random.default_rng(0)))
    (d / rel).parent.mkdir(parents=True, exist_ok=True)
    np.save(d / rel, random_gesture(np.random.default_rng(1)))
    with pytest.raises(CorruptFileError, match="misplaced") as err:
        make_source(config_for(tmp_path), "train")
    assert Path(err.value.path).resolve() == (d / rel).resolve()


def test_missing_dataset_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="DVSGesture/ibmGestureTrain") as err:
        make_source(config_for(tmp_path), "train")
    assert "tonic" in str(err.value)
