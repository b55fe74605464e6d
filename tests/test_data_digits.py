"""scikit-learn digits: fixed split, copy and Poisson encodings (made on the device), batches through the
pipeline."""
import jax
import numpy as np

from iirsnn_jax.data import build, common, make_source
from iirsnn_jax.data.inspect import network_batch
from iirsnn_jax.experiments import load_config


def config_for(encoding):
    config = load_config("snn_conv_1_mnist")
    config.data.name, config.data.encoding, config.model.input_shape = "digits", encoding, (8, 8, 1)
    return config


def test_split_is_fixed_and_disjoint():
    from sklearn.datasets import load_digits

    digits = load_digits()
    sources = {s: make_source(config_for("copy"), s) for s in ("train", "dev", "test")}
    assert [sources[s].num_examples for s in ("train", "dev", "test")] == [1257, 270, 270]
    perm = common.torch_randperm(1797, 42)
    np.testing.assert_array_equal(sources["dev"].labels, digits.target[perm[1257:1527]])
    batch = network_batch(config_for("copy"), sources["test"], np.arange(5))
    expected = (digits.images[perm[1527:1532]] / 16).astype(np.float32)[:, None, :, :, None].repeat(25, 1)
    np.testing.assert_array_equal(batch["input"], expected)


def test_poisson_encoding():
    config = config_for("poisson")
    source = make_source(config, "train")
    got = network_batch(config, source, [10], epoch=1)["input"][0]
    key = jax.random.PRNGKey(2)  # seed, then split, epoch, index and stream folded in
    for value in (common.SPLITS.index("train"), 1, 10, common.STREAMS["poisson"]):
        key = jax.random.fold_in(key, value)
    u = np.asarray(jax.random.uniform(key, (25, 8, 8, 1)))
    np.testing.assert_array_equal(got, (source.x[10][None, ..., None] > u).astype(np.uint8))


def test_pipeline_evaluates_every_sample():
    pipe = build(config_for("copy"), "test", batch_size=64, process_index=0, process_count=1)
    batches = list(pipe.epoch(0))
    assert len(batches) == 5 and all(b["input"].shape == (64, 8, 8) for b in batches)  # no time axis yet
    assert sum(int(b["mask"].sum()) for b in batches) == 270
