"""MNIST: IDX files and a small TFDS dataset written here, through the pipeline, against the reference's
copy encoding (SPEC 2.1) computed independently; the host augmentation's properties (SPEC 4.1). The device
side (Poisson, the device augmentation) is tested in test_data_device.py."""
import gzip
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iirsnn_jax.data import CorruptFileError, DatasetNotFoundError, augment, common, make_source, tfds_reader
from iirsnn_jax.data.inspect import sample_arrays
from iirsnn_jax.experiments import load_config

N_TRAIN, N_TEST = 36, 12


def images_for(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    images[:, :4] = 0
    images[:, 0, 0] = np.arange(n)  # pixel (0, 0) names the sample, to check orders
    return images, rng.integers(0, 10, n).astype(np.uint8)


def idx_bytes(array):
    return struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx(folder, gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    data = {"train": images_for(N_TRAIN, 0), "t10k": images_for(N_TEST, 1)}
    for prefix, (images, labels) in data.items():
        for kind, array in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            name = folder / f"{prefix}-{kind}"
            if gz:
                with gzip.open(str(name) + ".gz", "wb") as f:
                    f.write(idx_bytes(array))
            else:
                name.write_bytes(idx_bytes(array))
    return data


def config_for(root, name="snn_mlp_1", **data):
    config = load_config(name)
    config.data.root = str(root)
    for k, v in data.items():
        config.data[k] = v
    return config


def write_tfds(data_dir, file_format):
    """A prepared TFDS `mnist` (same features as the real one) written by TFDS itself, without TF."""
    import tensorflow_datasets as tfds

    data = {"train": images_for(N_TRAIN, 0), "test": images_for(N_TEST, 1)}

    class Mnist(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = "mnist"
        VERSION = tfds.core.Version("3.0.1")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(28, 28, 1)),
                "label": tfds.features.ClassLabel(num_classes=10)}), supervised_keys=("image", "label"))

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(*arrays) for split, arrays in data.items()}

        def _generate_examples(self, images, labels):
            for i, (image, label) in enumerate(zip(images, labels)):  # keys = IDX index, as tfds' mnist
                yield i, {"image": Image.fromarray(image), "label": int(label)}

    # TFDS writes tfrecord only through TensorFlow: write array_record, then convert the shards ourselves.
    builder = Mnist(data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare()
    version_dir = Path(data_dir) / "mnist" / "3.0.1"
    if file_format == "tfrecord":
        for split in data:
            raw = builder.as_data_source(split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
            tfds_reader.write_tfrecord(version_dir / f"mnist-{split}.tfrecord-00000-of-00001",
                                       [raw[i] for i in range(len(raw))])
            for f in version_dir.glob(f"mnist-{split}.array_record*"):
                f.unlink()
        info = json.loads((version_dir / "dataset_info.json").read_text())
        info["fileFormat"] = "tfrecord"
        (version_dir / "dataset_info.json").write_text(json.dumps(info))
    return data


@pytest.fixture(scope="module", params=["idx", "idx-gz-torchvision", "tfds-array_record", "tfds-tfrecord"])
def mnist_root(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    if request.param == "idx":
        data = write_idx(root)
    elif request.param == "idx-gz-torchvision":
        data = write_idx(root / "MNIST" / "raw", gz=True)
    else:
        data = write_tfds(root, request.param.split("-")[1])
        data = {"train": data["train"], "t10k": data["test"]}
    return root, data, request.param


def test_copy_encoding_and_reference_split(mnist_root):
    root, data, kind = mnist_root
    config = config_for(root, augment=False, source="tfds" if kind.startswith("tfds") else "idx")
    images, labels = data["train"]
    train_idx, dev_idx = common.split_train_dev(N_TRAIN, 6, 42)  # random_split(seed 42), 1/6 for dev
    for split, keep in (("train", train_idx), ("dev", dev_idx), ("test", np.arange(N_TEST))):
        source_images, source_labels = data["t10k"] if split == "test" else (images, labels)
        source = make_source(config, split)
        assert source.num_examples == len(keep)
        batch = source.get_batch(np.arange(len(keep)))  # the host hands over the pixels as they are
        np.testing.assert_array_equal(batch["input"], source_images[keep])
        assert batch["input"].dtype == np.uint8
        np.testing.assert_array_equal(batch["label"], source_labels[keep])
    if kind.startswith("tfds"):
        assert "tensorflow" not in sys.modules  # TFDS read without TensorFlow
    ref = sample_arrays(config, "dev", 2)["input"]  # the network's input, reference layout [784, T], row-major
    np.testing.assert_array_equal(ref, np.repeat(images[dev_idx[2]].reshape(784, 1) / np.float32(255), 25, 1))


def test_augment_identity_half_the_time_and_range():
    image = images_for(1, 3)[0][0]
    outs = [augment.reference_augment(image, np.random.default_rng(s)) for s in range(400)]
    same = np.mean([np.array_equal(o, image) for o in outs])
    assert 0.43 < same < 0.57
    assert all(o.shape == (28, 28) and o.dtype == np.uint8 for o in outs)


def test_crop_params_follow_torchvision():
    rng = np.random.default_rng(0)
    for _ in range(500):
        top, left, h, w = augment.crop_params(rng, 28, 28)
        assert 0 < h <= 28 and 0 < w <= 28 and 0 <= top <= 28 - h and 0 <= left <= 28 - w
        assert 0.85 * 784 * 0.9 <= h * w <= 784 and 3 / 4 * 0.85 <= w / h <= 4 / 3 * 1.15


def test_rotation_matches_an_inverse_mapping_and_scipy():
    import scipy.ndimage

    image = np.zeros((28, 28), np.uint8)
    image[6:22, 12:16] = 255
    image[6:10, 8:20] = 128
    for angle in (-15.0, -7.3, 4.0, 15.0):
        got = np.asarray(augment.rotate(Image.fromarray(image), angle))
        # nearest neighbour, inverse mapping of pixel centres about the image centre, fill 0
        a = np.deg2rad(angle)
        yy, xx = np.mgrid[0:28, 0:28] + 0.5
        sx = np.cos(a) * (xx - 14) - np.sin(a) * (yy - 14) + 14
        sy = np.sin(a) * (xx - 14) + np.cos(a) * (yy - 14) + 14
        ix, iy = np.floor(sx).astype(int), np.floor(sy).astype(int)
        inside = (ix >= 0) & (ix < 28) & (iy >= 0) & (iy < 28)
        expected = np.where(inside, image[iy.clip(0, 27), ix.clip(0, 27)], 0)
        assert np.mean(got != expected) < 0.01  # rounding at exact pixel boundaries
        scipy_rot = scipy.ndimage.rotate(image, angle, reshape=False, order=0, cval=0)
        assert np.mean(got != scipy_rot) < 0.03


def test_idx_errors_name_the_file(tmp_path):
    write_idx(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(CorruptFileError, match="truncated") as err:
        make_source(config_for(tmp_path), "train")
    assert err.value.path == str(bad)
    bad.write_bytes(b"\x00\x00\x0d\x03" + bytes(20))
    with pytest.raises(CorruptFileError, match="magic"):
        make_source(config_for(tmp_path), "train")


def test_an_images_file_holding_labels_is_named_as_the_wrong_idx_type(tmp_path):
    write_idx(tmp_path)
    labels = (tmp_path / "train-labels-idx1-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(labels)  # a labels file under the images name
    with pytest.raises(CorruptFileError, match="wrong IDX type: the magic number says a labels file") as err:
        make_source(config_for(tmp_path), "train")
    assert err.value.path == str(tmp_path / "train-images-idx3-ubyte")


def test_tfrecord_corruption_is_named(tmp_path):
    write_tfds(tmp_path, "tfrecord")
    shard = tmp_path / "mnist" / "3.0.1" / "mnist-test.tfrecord-00000-of-00001"
    data = bytearray(shard.read_bytes())
    data[40] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="checksum") as err:
        make_source(config_for(tmp_path), "test")
    assert "mnist-test.tfrecord" in err.value.path
    shard.write_bytes(bytes(data[:100]))
    with pytest.raises(CorruptFileError, match="truncated|checksum"):
        make_source(config_for(tmp_path), "test")


def test_tfds_order_is_restored():
    # TFDS writes example keys sorted by md5(split + key); canonical_order inverts that.
    import hashlib
    keys_in_file_order = sorted(range(50), key=lambda k: hashlib.md5(b"train" + str(k).encode()).hexdigest())
    position = tfds_reader.canonical_order("train", 50)
    assert [keys_in_file_order[p] for p in position] == list(range(50))


@pytest.mark.parametrize("source", ["auto", "idx", "tfds"])
def test_missing_dataset_says_where_it_looked(tmp_path, source):
    with pytest.raises(DatasetNotFoundError) as err:
        make_source(config_for(tmp_path, source=source), "train")
    text = str(err.value)
    if source != "tfds":
        assert "MNIST/raw/train-images-idx3-ubyte" in text
    if source != "idx":
        assert "mnist/<version>" in text
    assert "tfds build mnist" in text and "Nothing is downloaded" in text
