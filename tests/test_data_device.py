"""The device side of the input pipeline (data/device_augment.py, data/device_encoding.py) against
independent routes: Pillow (what torchvision ran) on fixed parameters, the host's draws of the same random
parameters (torchvision's algorithm in numpy), numpy for copy / unpacking / normalisation, and the
reference's Bernoulli rule; keys that depend on the sample alone; the steps that call the input function."""
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image
from scipy import stats

from iirsnn_jax import models
from iirsnn_jax.data import augment, common, device_augment, device_encoding, make_source
from iirsnn_jax.data.inspect import network_batch
from iirsnn_jax.data.pipeline import make_batch
from iirsnn_jax.experiments import load_config
from iirsnn_jax.training import steps

from test_data_mnist import N_TRAIN, write_idx


def _images(n, seed):
    """uint8 [n, 28, 28]: every value 0..255 and sharp edges, the hardest case for rounding."""
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def test_resized_crop_equals_pillow_for_every_crop_size():
    # Same integer arithmetic as Pillow (coefficients tabulated in float64 as Pillow computes them, 22-bit
    # fixed point, a uint8 rounding after each pass): equal, pixel for pixel.
    rng = np.random.default_rng(0)
    images = _images(600, 1)
    h, w = rng.integers(1, 29, 600), rng.integers(1, 29, 600)
    h[:28], w[:28] = np.arange(1, 29), np.arange(28, 0, -1)  # every size at least once
    top, left = rng.integers(0, 29 - h), rng.integers(0, 29 - w)
    got = jax.jit(jax.vmap(device_augment.resized_crop))(images, top, left, h, w)
    expected = [augment.resized_crop(Image.fromarray(im), *p) for im, p in zip(images, zip(top, left, h, w))]
    np.testing.assert_array_equal(np.asarray(got), np.stack([np.asarray(e) for e in expected]))


def test_rotation_equals_pillow_but_for_float32_ties():
    # Pillow's 16.16 fixed-point affine map; its coefficients come from float64 cos/sin there, float32 here,
    # so a pixel whose source lies within ~1e-4 px of a pixel edge may differ: measured 1 pixel in 3.1
    # million (4000 random images and angles), so allow 2 in these 392,000.
    rng = np.random.default_rng(2)
    images = _images(500, 3)
    angles = np.concatenate([[-15.0, -7.5, 0.0, 1e-3, 7.5, 15.0], rng.uniform(-15, 15, 494)]).astype(np.float32)
    got = np.asarray(jax.jit(jax.vmap(device_augment.rotate))(images, angles))
    expected = np.stack([np.asarray(augment.rotate(Image.fromarray(im), float(a))) for im, a in zip(images, angles)])
    assert np.sum(got != expected) <= 2
    np.testing.assert_array_equal(got[2], images[2])  # 0 degrees: the image itself


def test_random_parameters_follow_torchvision():
    n = 3000
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    device = np.asarray(jax.jit(jax.vmap(lambda k: jnp.stack(device_augment.crop_params(k, 28, 28))))(keys))
    rng = np.random.default_rng(0)
    host = np.asarray([augment.crop_params(rng, 28, 28) for _ in range(n)])  # (top, left, h, w)
    for column, name in enumerate(("top", "left", "h", "w")):
        values = np.union1d(device[:, column], host[:, column])
        table = np.asarray([[np.sum(d[:, column] == v) for v in values] for d in (device, host)])
        assert stats.chi2_contingency(table[:, table.sum(0) > 0])[1] > 1e-3, name
    assert np.all(device[:, 2] * device[:, 3] <= 784) and np.all(device[:, 0] + device[:, 2] <= 28)
    # the rotation angle ~ U(-15, 15) and the coin of RandomApply(p=0.5)
    angles = jax.vmap(lambda k: jax.random.uniform(k, (), minval=-15, maxval=15))(keys)
    assert stats.kstest(np.asarray(angles), stats.uniform(-15, 30).cdf).pvalue > 1e-3


def test_device_augmentation_has_the_pillow_pipelines_distribution():
    image = np.zeros((28, 28), np.uint8)
    image[5:23, 11:17] = 255
    image[5:9, 7:21] = 160
    n = 1500
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    device = np.asarray(jax.jit(jax.vmap(device_augment.reference_augment, in_axes=(None, 0)))(image, keys))
    host = np.stack([augment.reference_augment(image, np.random.default_rng(s)) for s in range(n)])
    for outs in (device, host):
        assert abs(np.mean([np.array_equal(o, image) for o in outs]) - 0.5) < 0.05
    changed = lambda outs: outs[[not np.array_equal(o, image) for o in outs]]  # noqa: E731
    for feature in (lambda o: o.sum((1, 2)), lambda o: (o * np.arange(28)).sum((1, 2)) / o.sum((1, 2))):
        assert stats.ks_2samp(feature(changed(device)), feature(changed(host))).pvalue > 1e-3


@pytest.fixture(scope="module")
def mnist_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist-device")
    data = write_idx(root)

    def config_for(name="snn_mlp_1", **overrides):
        config = load_config(name)
        config.data.root = str(root)
        for k, v in overrides.items():
            config.data[k] = v
        return config
    return config_for, data


def test_copy_is_pixel_over_255_at_every_step():
    config = load_config("snn_mlp_1")
    config.data.augment = False
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(2, 0)
    batch = {"input": pixels, "split": np.zeros(2, np.int32), "epoch": np.zeros(2, np.int32),
             "index": np.arange(2, dtype=np.int32)}
    got = device_encoding.host_input_fn(config)(batch)
    np.testing.assert_array_equal(got, np.repeat((pixels / np.float32(255))[:, None, ..., None], 25, 1))
    assert got.dtype == np.float32


def test_poisson_is_the_references_bernoulli_rule(mnist_config):
    config_for, data = mnist_config
    config = config_for("snn_mlp_1_poisson_input", augment=False)
    source = make_source(config, "test")
    x = data["t10k"][0][3].astype(np.float32) / 255
    got = network_batch(config, source, [3], epoch=5)["input"][0, ..., 0]  # [T, 28, 28]
    # the key: PRNGKey(seed) folded with split, epoch, index and the stream, in that order
    key = jax.random.PRNGKey(config.seed)
    for value in (common.SPLITS.index("test"), 5, 3, common.STREAMS["poisson"]):
        key = jax.random.fold_in(key, value)
    u = np.asarray(jax.random.uniform(key, (25, 28, 28, 1)))[..., 0]
    np.testing.assert_array_equal(got, (x[None] > u).astype(np.uint8))
    assert got.dtype == np.uint8
    assert np.all(got[:, x == 0] == 0) and np.all(got[:, x == 1] == 1)
    # rates over many epochs match p (binomial, 4 sigma)
    spikes = np.stack([network_batch(config, source, [3], epoch=e)["input"][0, ..., 0] for e in range(8)])
    rate, p = spikes.mean((0, 1)), np.broadcast_to(x, spikes.shape[2:])
    assert np.all(np.abs(rate - p) <= 4 * np.sqrt(p * (1 - p) / 200) + 1e-9)


def test_draws_depend_on_the_sample_not_the_batch(mnist_config):
    config_for, _ = mnist_config
    config = config_for("snn_mlp_1_poisson_input", augment_dev=True)
    fn = device_encoding.host_input_fn(config)  # batches of 4 rows: one compilation
    for split in ("train", "dev"):  # dev holds 6 samples
        source = make_source(config, split)
        a = fn(make_batch(source, np.asarray([4, 0, 5, -1]), 3))
        b = fn(make_batch(source, np.asarray([5, 2, 4, 1]), 3))
        np.testing.assert_array_equal(a[[0, 2]], b[[2, 0]])
        assert not np.array_equal(a[0], fn(make_batch(source, np.asarray([4, 0, 5, -1]), 4))[0])  # a new epoch
    train, dev = make_source(config, "train"), make_source(config, "dev")
    rows = np.asarray([1, 2, 3, 0])
    assert not np.array_equal(fn(make_batch(train, rows, 0)), fn(make_batch(dev, rows, 0)))


def test_augmentation_only_on_augmented_splits_and_host_pillow_option(mnist_config):
    config_for, data = mnist_config
    n_train = N_TRAIN - 6
    for split, augmented in (("train", True), ("dev", False), ("test", False)):
        config = config_for()
        source = make_source(config, split)
        rows = np.arange(6)  # all of dev
        changed = [not np.array_equal(network_batch(config, source, rows, e)["input"][:, 0, ..., 0],
                                      source.images[rows] / np.float32(255)) for e in range(3)]
        assert any(changed) == augmented, split
    config = config_for(augment_on="host_pillow")
    source = make_source(config, "train")
    got = network_batch(config, source, [5], epoch=2)["input"][0, :, :, :, 0]
    image = augment.reference_augment(source.images[5], common.sample_rng(config.seed, "train", 2, 5, "augment"))
    np.testing.assert_array_equal(got, np.repeat(image[None] / np.float32(255), 25, 0))
    changed = [not np.array_equal(network_batch(config, source, [i], e)["input"][0, 0, ..., 0],
                                  source.images[i] / np.float32(255)) for i in range(n_train) for e in range(3)]
    assert 0.3 < np.mean(changed) < 0.7
    with pytest.raises(ValueError, match="augment_on"):
        make_source(config_for(augment_on="gpu"), "train")


def test_event_bits_and_counts():
    rng = np.random.default_rng(4)
    frames = rng.random((3, 30, 34, 34, 2)) < 0.05
    packed = np.stack([np.packbits(f.reshape(-1)) for f in frames])
    np.testing.assert_array_equal(device_encoding.unpack_frames(packed, (30, 34, 34, 2)), frames.astype(np.uint8))
    counts = rng.integers(0, 300, (2, 4, 128, 128, 2)).astype(np.uint16)
    counts[0, 1] = 0  # an empty frame stays 0
    for mode, reduce in (("max", np.max), ("avg", np.sum)):
        denom = reduce(counts.astype(np.float64), axis=(2, 3, 4), keepdims=True).astype(np.float32)
        expected = counts.astype(np.float32) / np.where(denom > 0, denom, 1)
        # XLA multiplies by the reciprocal of each frame's denominator: within 1 ulp of a true division
        got = np.asarray(device_encoding.normalise_frames(jnp.asarray(counts), mode))
        np.testing.assert_array_max_ulp(got, expected, maxulp=1)
        assert got[0, 1].max() == 0 and np.all(got.max((2, 3, 4))[denom[..., 0, 0, 0] > 0] > 0)


@pytest.mark.parametrize("encoding", ["poisson", "copy"])
def test_steps_make_the_network_input_on_the_device(encoding):
    """The eval step on the pipeline's batch, encoding inside, equals the step on the host-encoded input (for
    "copy" a held frame inside against the repeated frame: equal up to float32 rounding of the first filter)."""
    config = load_config("test")
    config.data.encoding = encoding
    source = make_source(config, "dev")
    batch = make_batch(source, np.asarray([3, 1, 4, 1, 5, 9, 2, -1]), 1)
    model = models.build_model(config.model, seed=0)
    graphdef, state = steps.create_train_state(model, optax.adam(1e-3), 8)
    arrays = {k: batch[k] for k in ("input", "label", "mask", "split", "epoch", "index")}
    full = dict(arrays, input=device_encoding.host_input_fn(config)(batch))
    with_fn = steps.make_eval_step(graphdef, "cross_entropy", device_encoding.make_input_fn(config))
    plain = steps.make_eval_step(graphdef, "cross_entropy")
    _, a = jax.jit(with_fn)(state.params, state.constants, None, arrays)
    _, b = jax.jit(plain)(state.params, state.constants, None, full)
    for k in b:
        np.testing.assert_allclose(a[k], b[k], rtol=0 if encoding == "poisson" else 1e-5, err_msg=k)


SHARDED_CHECK = """
import jax, numpy as np
from iirsnn_jax.experiments import load_config
from iirsnn_jax.data import make_input_fn
from iirsnn_jax.training import parallel
config = load_config("snn_mlp_1_poisson_input")
rng = np.random.default_rng(0)
batch = {"input": rng.integers(0, 256, (16, 28, 28), dtype=np.uint8), "split": np.zeros(16, np.int32),
         "epoch": np.full(16, 3, np.int32), "index": rng.permutation(100)[:16].astype(np.int32)}
mesh = parallel.make_mesh()
assert mesh.size == 8
fn = jax.jit(make_input_fn(config))
sharded = np.asarray(fn(parallel.shard_batch(batch, mesh)))
single = np.asarray(fn(jax.device_put(batch, jax.devices()[0])))
assert np.array_equal(sharded, single) and sharded.shape == (16, 25, 28, 28, 1)
print("ok")
"""


def test_eight_devices_draw_what_one_draws():
    """The batch split over 8 (fake CPU) devices gets the inputs, augmentation and spikes one device makes."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", SHARDED_CHECK], capture_output=True, text=True, env=env,
                            timeout=300, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
