"""UEA/UCR source: tiny .ts files written here in the archive's format, read through the pipeline and
data.inspect, against frames built by plain loops (standardise with train statistics, repeat, pad)."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iirsnn_jax.config import default_config
from iirsnn_jax.data import CorruptFileError, DatasetNotFoundError, build, make_source
from iirsnn_jax.data.inspect import sample_arrays

REPO = Path(__file__).resolve().parent.parent
CLASSES = ("10", "2", "7")  # numeric class names: sorted "2" < "7" < "10", not as strings


def write_ts(path, series, labels):
    """A multivariate, unequal-length .ts file: one line per sample, channels split by ':', label last."""
    channels = series[0].shape[1]
    lines = ["# written by the test", "@problemName Toy", "@timeStamps false", "@missing true",
             "@univariate false", f"@dimensions {channels}", "@equalLength false",
             f"@classLabel true {' '.join(CLASSES)}", "@data"]
    for x, label in zip(series, labels):
        dims = [",".join("?" if np.isnan(v) else repr(float(v)) for v in x[:, c]) for c in range(channels)]
        lines.append(":".join(dims) + f":{label}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def random_series(rng, n):
    """n series of 2..6 steps and 2 channels of different scales, labels cycling through CLASSES."""
    series = [rng.normal(3.0, 2.0, (int(rng.integers(2, 7)), 2)) * np.array([1.0, 10.0]) for _ in range(n)]
    return series, [CLASSES[i % 3] for i in range(n)]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("uea")
    rng = np.random.default_rng(0)
    train, test = random_series(rng, 30), random_series(rng, 7)
    train[0][4][1, 0] = np.nan  # a missing value: 0 (the train mean) after standardisation
    write_ts(root / "Toy" / "Toy_TRAIN.ts", *train)
    write_ts(root / "Toy" / "Toy_TEST.ts", *test)
    return root, train, test


def config_for(root, **data):
    config = default_config()
    config.model.input_shape = (2,)
    config.data.update({**dict(name="uea", root=str(root), dataset="Toy", encoding="copy", length=18,
                               upsample=3, dev_size=-1), **data})
    return config


def loop_statistics(series):
    """Mean and population std per channel over every non-NaN value, by plain sums."""
    channels = series[0].shape[1]
    mean, std = [0.0] * channels, [0.0] * channels
    for c in range(channels):
        values = [float(v) for x in series for v in x[:, c] if not np.isnan(v)]
        mean[c] = sum(values) / len(values)
        std[c] = (sum((v - mean[c]) ** 2 for v in values) / len(values)) ** 0.5
    return mean, std


def loop_frames(x, mean, std, upsample, length):
    """[length, C] by loops: standardise, NaN -> 0, each step `upsample` times, zeros after the end."""
    out = np.zeros((length, x.shape[1]), np.float32)
    t = 0
    for step in x:
        for _ in range(upsample):
            for c, v in enumerate(step):
                if t < length:
                    out[t, c] = 0.0 if np.isnan(v) else (v - mean[c]) / std[c]
            t += 1
    return out


@pytest.mark.parametrize("length", [18, 7])
def test_every_sample_equals_the_loop_built_frames(toy, length):
    root, (train_x, train_y), (test_x, test_y) = toy
    config = config_for(root, length=length)
    train, dev, test = (make_source(config, s) for s in ("train", "dev", "test"))
    assert 3 * max(len(x) for x in train_x + test_x) == 18  # 18 pads every series, 7 cuts some
    mean, std = loop_statistics([train_x[r] for r in train.rows])  # train statistics only, not dev's
    assert train.classes == ["2", "7", "10"]
    for source, series, names in ((train, train_x, train_y), (dev, train_x, train_y), (test, test_x, test_y)):
        batch = source.get_batch(np.arange(source.num_examples))
        assert batch["input"].dtype == np.float32 and batch["input"].shape == (source.num_examples, length, 2)
        assert batch["label"].dtype == np.int32
        for i, row in enumerate(source.rows):
            np.testing.assert_allclose(batch["input"][i], loop_frames(series[row], mean, std, 3, length),
                                       rtol=1e-5, atol=1e-5)
            assert train.classes[batch["label"][i]] == names[row]


def test_dev_is_a_seeded_stratified_part_of_train(toy):
    root, (train_x, train_y), _ = toy
    train, dev = make_source(config_for(root), "train"), make_source(config_for(root), "dev")
    assert (train.num_examples, dev.num_examples) == (27, 3)  # 10 % of 30
    assert sorted(set(train.rows) | set(dev.rows)) == list(range(30)) and not set(train.rows) & set(dev.rows)
    assert sorted(train_y[r] for r in dev.rows) == sorted(CLASSES)  # one of each class
    again = make_source(config_for(root), "dev")
    np.testing.assert_array_equal(again.rows, dev.rows)
    draws = {tuple(make_source(config_for(root, split_seed=s), "dev").rows) for s in range(6)}
    assert len(draws) > 1  # the seed decides
    big = make_source(config_for(root, dev_size=12), "dev")  # 4 of each class
    assert sorted(train_y[r] for r in big.rows) == sorted(CLASSES * 4)


def test_pipeline_and_inspect_command(toy, tmp_path):
    root, _, (test_x, _) = toy
    config = config_for(root)
    batch = next(build(config, "test", batch_size=4, process_index=0, process_count=1).epoch(0))
    assert batch["input"].shape == (4, 18, 2) and batch["mask"].all()
    arrays = sample_arrays(config, "test", 2)
    assert arrays["input"].shape == (2, 18)  # the reference's time-last [N, T]
    np.testing.assert_array_equal(arrays["input"].T, make_source(config, "test").x[2])
    out = tmp_path / "sample.npz"
    cmd = [sys.executable, "-m", "iirsnn_jax.data.inspect", "--config=configs/japanese_vowels.py",
           "--split=test", "--index=5", f"--out={out}"]
    subprocess.run(cmd, cwd=REPO, check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True)
    got = np.load(out)
    assert got["input"].shape == (12, 87) and got["input"].dtype == np.float32


def test_shipped_problem_loads_offline(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise AssertionError("the UEA source must never open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    config = config_for(tmp_path / "nowhere", dataset="JapaneseVowels", upsample=1, length=29)
    sizes = {s: make_source(config, s).num_examples for s in ("train", "dev", "test")}
    assert sizes == {"train": 243, "dev": 27, "test": 370}
    test = make_source(config, "test")
    assert test.x.shape == (370, 29, 12) and test.num_classes == 9
    assert test.lengths.min() == 7 and test.lengths.max() == 29
    with pytest.raises(DatasetNotFoundError) as err:  # not shipped, not under data.root: no download
        make_source(config_for(tmp_path / "nowhere", dataset="InsectWingbeat"), "train")
    assert "JapaneseVowels" in str(err.value) and "nowhere/InsectWingbeat/InsectWingbeat_TRAIN.ts" in str(err.value)


def test_data_root_comes_before_the_shipped_copy(toy, tmp_path):
    root, train, test = toy
    write_ts(tmp_path / "Multivariate_ts" / "BasicMotions" / "BasicMotions_TRAIN.ts", *train)
    write_ts(tmp_path / "Multivariate_ts" / "BasicMotions" / "BasicMotions_TEST.ts", *test)
    source = make_source(config_for(tmp_path, dataset="BasicMotions"), "test")
    assert source.path == tmp_path / "Multivariate_ts" / "BasicMotions" / "BasicMotions_TEST.ts"
    assert source.num_examples == 7


@pytest.mark.parametrize("text, message", [
    ("@problemName Bad\n@data\n1,2:a\n", "not a readable .ts file"),
    ("", "not a readable .ts file"),
])
def test_corrupt_files_are_named(tmp_path, toy, text, message):
    _, train, _ = toy
    write_ts(tmp_path / "Toy" / "Toy_TRAIN.ts", *train)
    (tmp_path / "Toy" / "Toy_TEST.ts").write_text(text)
    with pytest.raises(CorruptFileError, match=message) as err:
        make_source(config_for(tmp_path), "test")
    assert err.value.path == str(tmp_path / "Toy" / "Toy_TEST.ts")


def test_unknown_test_class_and_bad_settings(tmp_path, toy):
    root, (train_x, train_y), (test_x, _) = toy
    write_ts(tmp_path / "Toy" / "Toy_TRAIN.ts", train_x, ["2"] * len(train_x))  # "7" and "10" never trained
    write_ts(tmp_path / "Toy" / "Toy_TEST.ts", test_x, ["7"] * len(test_x))
    with pytest.raises(CorruptFileError, match=r"classes \['7'\] do not occur"):
        make_source(config_for(tmp_path), "test")
    with pytest.raises(ValueError, match="data.length=0 must be >= 1"):
        make_source(config_for(root, length=0), "test")
    with pytest.raises(ValueError, match="data.upsample"):
        make_source(config_for(root, upsample=0), "test")
    with pytest.raises(ValueError, match="data.dataset"):
        make_source(config_for(root, dataset=""), "test")
