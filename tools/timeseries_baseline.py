"""A strong non-spiking classifier on the same split as an SNN run of a UEA/UCR problem, and the SNN runs'
test accuracy beside it: where the SNN stands.

    python tools/timeseries_baseline.py --config=configs/japanese_vowels.py \
        [--snn_workdirs=/tmp/jv_seed0,/tmp/jv_seed1,/tmp/jv_seed2] [--seeds=0,1,2]

Baseline: sktime's MiniRocketMultivariate features (random convolution kernels, one random_state per
--seeds entry) and scikit-learn's RidgeClassifierCV, fitted on the config's train split (the SNN's
training samples; dev is held out as for the SNN) and scored on its test split. It reads the series from
the same source as the SNN (standardised with train statistics, zeros after the end), with
data.upsample = 1: repeated steps help spiking layers, not the kernels. SNN: the test accuracy of the best
dev checkpoint, as train.py logs it in each workdir's metrics.jsonl. Mean and standard deviation over
seeds or runs, with the range.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # configs import `configs.default`; the library is imported from the checkout

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

config_flags.DEFINE_config_file("config", str(ROOT / "configs" / "japanese_vowels.py"), "a data.name='uea' config")
flags.DEFINE_list("seeds", ["0", "1", "2"], "MiniRocket random_state values")
flags.DEFINE_list("snn_workdirs", [], "workdirs of train.py runs of the same config to summarise")
FLAGS = flags.FLAGS


def spread(values) -> str:
    v = 100 * np.asarray(values, np.float64)
    return f"{v.mean():.2f} % +- {v.std():.2f} (range {v.min():.2f}-{v.max():.2f}, n={len(v)})"


def minirocket_accuracy(train, test, seed: int) -> float:
    from sklearn.linear_model import RidgeClassifierCV
    from sktime.transformations.panel.rocket import MiniRocketMultivariate

    def channels_first(x):  # sktime's numpy3D panel: [N, C, T] float64
        return np.ascontiguousarray(np.transpose(x, (0, 2, 1)), np.float64)

    features = MiniRocketMultivariate(random_state=seed)
    fitted = features.fit_transform(channels_first(train.x))
    ridge = RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)).fit(fitted, train.labels)
    return float((ridge.predict(features.transform(channels_first(test.x))) == test.labels).mean())


def snn_test_accuracy(workdir: Path) -> float:
    """The test accuracy of the best checkpoint from workdir/metrics.jsonl (the last such line)."""
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    tests = [r for r in lines if r.get("split") == "test" and r.get("checkpoint") == "best"]
    if not tests:
        raise SystemExit(f"{workdir}/metrics.jsonl has no test line: did the run finish?")
    return float(tests[-1]["accuracy"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from iirsnn_jax.data import make_source

    config = FLAGS.config
    if config.data.name != "uea":
        raise app.UsageError(f"--config must be a UEA/UCR config (data.name 'uea'), got {config.data.name!r}")
    snn_upsample = int(config.data.upsample)
    config.data.length = -(-int(config.data.length) // snn_upsample)  # the same span of the series
    config.data.upsample = 1
    train, test = make_source(config, "train"), make_source(config, "test")
    print(f"{train.problem}: {train.num_examples} train (dev held out) / {test.num_examples} test, "
          f"{train.x.shape[2]} channels, up to {train.x.shape[1]} steps, {train.num_classes} classes")
    start = time.perf_counter()
    scores = [minirocket_accuracy(train, test, int(seed)) for seed in FLAGS.seeds]
    print(f"MiniRocketMultivariate + RidgeClassifierCV: test accuracy {spread(scores)}, "
          f"{time.perf_counter() - start:.0f} s for {len(scores)} fits")
    if FLAGS.snn_workdirs:
        snn = [snn_test_accuracy(Path(w)) for w in FLAGS.snn_workdirs]
        print(f"SNN {config.model.layers}, upsample {snn_upsample} (best dev checkpoint): test accuracy "
              f"{spread(snn)}")


if __name__ == "__main__":
    app.run(main)
