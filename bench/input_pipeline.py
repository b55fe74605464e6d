"""Times the host input pipeline alone (no model, no transfer): samples/s of one split; one JSON line.

    python bench/input_pipeline.py --config=configs/snn_mlp_1.py --config.data.root=/tmp/mnist
    python bench/input_pipeline.py --config=configs/snn_mlp_1_poisson_input.py --config.data.root=/tmp/mnist
    python bench/input_pipeline.py --config=configs/snn_conv_1_nmnist.py --config.data.root=DIR --split=dev
    python bench/input_pipeline.py --config=configs/snn_mlp_1.py --config.data.augment_on=host_pillow  # parity path

What is timed: iterating `data.build(config, split).epoch(e)` as the training loop does (background threads
data.prefetch batches ahead where batches are slow to make, else in this thread: data/pipeline.py), from the
second batch on (the first one starts the threads; an event dataset's frame cache is built or opened before
the clock starts), over --batches batches (0: the whole epoch), repeated for --epochs epochs, for this
process's share of each global batch.
Fields: samples_per_s; bytes_per_sample, the bytes of the arrays a step receives (those
`training.evaluation.model_inputs` keeps) per sample, and per_key, the same per array; batch, batches,
seconds, cpus (os.cpu_count), workers, prefetch, and the data settings that decide the work.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # configs import `configs.default`; the library is imported from the checkout

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

import json_line  # noqa: E402  (bench/, the script's folder)

config_flags.DEFINE_config_file("config", None, "experiment config (configs/<experiment>.py)", lock_config=True)
flags.DEFINE_enum("split", "train", ["train", "dev", "test"], "split to read")
flags.DEFINE_integer("batches", 0, "timed batches per epoch; 0 = the whole epoch")
flags.DEFINE_integer("epochs", 1, "timed epochs (0, 1, ...); samples/s is over all of them")
flags.DEFINE_string("out", None, "append the JSON line to this file")
FLAGS = flags.FLAGS


def benchmark(config, split: str, batches: int, epochs: int) -> dict:
    from iirsnn_jax import data
    from iirsnn_jax.training.evaluation import model_inputs

    pipeline = data.build(config, split, process_index=0, process_count=1)  # opens (or builds) any cache
    limit = batches or len(pipeline)
    samples, seconds, per_key = 0, 0.0, {}
    for epoch in range(epochs):
        batch_iter = pipeline.epoch(epoch)
        first = next(batch_iter)  # starts the threads; not timed
        per_key = {k: v.nbytes / len(first["mask"]) for k, v in model_inputs(first).items()}
        start = time.perf_counter()
        count = 0
        for count, batch in enumerate(batch_iter, start=1):
            samples += len(batch["mask"])
            if count + 1 >= limit:
                break
        seconds += time.perf_counter() - start
        batch_iter.close()
        if count == 0:
            raise ValueError(f"the {split} split has fewer than 2 batches of {pipeline.local_batch_size}: "
                             "nothing to time")
    return {
        "experiment": config.experiment, "data": config.data.name, "split": split,
        "encoding": config.data.encoding, "augment": bool(config.data.augment),
        "augment_on": config.data.get("augment_on", "host_pillow"),
        "batch": pipeline.local_batch_size, "batches": samples // pipeline.local_batch_size,
        "seconds": round(seconds, 4), "samples_per_s": round(samples / seconds, 1),
        "bytes_per_sample": round(sum(per_key.values()), 1),
        "per_key": {k: round(v, 1) for k, v in per_key.items()},
        "cpus": os.cpu_count(), "workers": pipeline.workers, "prefetch": pipeline.prefetch,
    }


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.config is None:
        raise app.UsageError("give --config=configs/<experiment>.py")
    json_line.emit(benchmark(FLAGS.config, FLAGS.split, FLAGS.batches, FLAGS.epochs), FLAGS.out)


if __name__ == "__main__":
    app.run(main)
