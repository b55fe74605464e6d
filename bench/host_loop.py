"""The training loop's host time per step: train.py's epoch loop with a step that does no work; one JSON line.

    python bench/host_loop.py --config=configs/digits.py
    python bench/host_loop.py --config=configs/snn_mlp_1.py --epochs=3 --config.data.root=DIR

Everything of a train epoch but the network runs as in train.py (loop.train_epoch): the host pipeline and
its threads, the stop flag, packing, sharding and prefetching, one dispatch a step, the metric reads every
train.sync_every_steps. Only the jitted step is replaced by one that counts the samples, so the epoch's time
is host time. Its inverse is the most steps a second this host can feed any device: where an accelerator's
step is shorter than `host_ms_per_step`, the loop and not the device sets the speed. Epoch 0 (compilation,
threads starting) is not counted; huge pages and the buffer cache are on, as in train.py. The machines are shared
and noisy: compare numbers of one run.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # configs import `configs.default`; the library is imported from the checkout

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from iirsnn_jax import hugepages  # noqa: E402

import json_line  # noqa: E402  (bench/, the script's folder)

config_flags.DEFINE_config_file("config", None, "experiment config (configs/<experiment>.py)", lock_config=True)
flags.DEFINE_integer("epochs", 4, "epochs to time (>= 2: epoch 0 is not counted)")
flags.DEFINE_string("out", None, "append the JSON line to this file")
FLAGS = flags.FLAGS


def counting_step(leaves, totals, batch):
    """The loop's step signature (training/loop.py) without the network: the state passes through, the
    sample count grows by the batch's rows so that the loop's bookkeeping sees real numbers."""
    import jax

    rows = jax.tree.leaves(batch)[0].shape[0]
    return leaves, {k: v + rows if k == "count" else v for k, v in totals.items()}


def host_ms_per_step(config, epochs: int) -> tuple[list[float], int]:
    """(host ms per step of each timed epoch, steps per epoch)."""
    import jax

    from iirsnn_jax.training import loop
    from iirsnn_jax.training.position import Position
    from iirsnn_jax.training.signals import StopRequests

    with tempfile.TemporaryDirectory() as tmp:
        run = loop.prepare(config, Path(tmp) / "run")
        try:
            run.train_step = jax.jit(counting_step, donate_argnums=(0, 1))
            state, times = run.fresh_state, []
            with StopRequests() as stop:
                for epoch in range(epochs):
                    start = time.perf_counter()
                    state, *_ = loop.train_epoch(run, state, Position(epoch=epoch), stop)
                    times.append((time.perf_counter() - start) / run.steps_per_epoch * 1e3)
            return times[1:], run.steps_per_epoch
        finally:
            run.close()


def main(argv):
    config = FLAGS.config
    if len(argv) > 1 or config is None or FLAGS.epochs < 2:
        print(f"bench/host_loop.py: give --config=configs/<experiment>.py and --epochs >= 2 (epoch 0 is not "
              f"counted); got --epochs={FLAGS.epochs}{', unexpected ' + ' '.join(argv[1:]) if len(argv) > 1 else ''}",
              file=sys.stderr)
        sys.exit(2)
    hugepages.ensure(True, keep_buffers=True)  # as train.py
    config.train.progress_bar = False
    times, steps = host_ms_per_step(config, FLAGS.epochs)
    per_step = statistics.median(times)
    record = {"config": config_flags.get_config_filename(FLAGS["config"]), "experiment": config.experiment,
              "batch": int(config.train.batch_size), "steps_per_epoch": steps,
              "host_ms_per_step": round(per_step, 4), "host_ms_per_step_epochs": [round(t, 4) for t in times],
              "max_steps_per_s": round(1e3 / per_step, 1),
              "max_samples_per_s": round(1e3 / per_step * int(config.train.batch_size), 1)}
    json_line.emit(record, FLAGS.out)
    return 0


if __name__ == "__main__":
    app.run(main)
