"""The whole training run next to its step: train.py's own samples/s over bench/train_step.py's, one JSON line.

    python bench/whole_run.py --config=configs/digits.py --epochs=4 --pairs=2
    python bench/whole_run.py --config=configs/snn_mlp_1.py --epochs=2 --config_overrides=--config.data.root=DIR

Each pair runs, one after the other, train.py for --epochs epochs in a temporary workdir (the loop's
samples/s is the median of the train records of epochs 1.. in metrics.jsonl: epoch 0 includes compilation)
and bench/train_step.py at the same batch size, twice: with --input=pipeline, the step as train.py jits it
(the network input made from the pipeline's compact arrays inside the step: decoding, encoding, augmentation),
and with --input=network, the model's step alone. `ratio` = loop / pipeline step says how much of its step's
speed the whole run keeps (host pipeline, transfers, metric reads, checkpoints; evaluation is not in the train
records' time); `ratio_model` = loop / model step also charges the run with its on-device input work. The
machines are shared and noisy: quote ratios from one run, with the pairs' spread.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from absl import flags

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's library, as bench/train_step.py

from iirsnn_jax import cli  # noqa: E402
from iirsnn_jax.errors import UserError  # noqa: E402

import json_line  # noqa: E402  (bench/, the script's folder)

flags.DEFINE_string("config", None, "experiment config file (configs/<experiment>.py)")
flags.DEFINE_integer("epochs", 3, "epochs of each train.py run (>= 2: epoch 0 includes compilation)")
flags.DEFINE_integer("pairs", 1, "loop/step pairs, run alternately")
flags.DEFINE_integer("steps", 50, "timed steps of each bench/train_step.py run")
flags.DEFINE_list("config_overrides", [], "extra --config.x=y flags for both, comma-separated")
flags.DEFINE_string("out", None, "append the JSON line to this file")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def _run(args: list[str]) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        raise UserError(f"{' '.join(args[:2])} failed:\n{result.stderr[-2000:]}")
    return result.stdout


def loop_samples_per_s(workdir: Path) -> tuple[float, int]:
    """(median train samples/s of epochs >= 1, batch size) of a finished run."""
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rates = [r["samples_per_s"] for r in records if r.get("split") == "train" and r["epoch"] >= 1]
    config = json.loads((workdir / "config.json").read_text())
    return statistics.median(rates), int(config["train"]["batch_size"])


def main(argv):
    if FLAGS.epochs < 2 or FLAGS.pairs < 1 or FLAGS.steps < 1:
        raise UserError(f"--epochs={FLAGS.epochs} must be >= 2, --pairs={FLAGS.pairs} and --steps={FLAGS.steps} >= 1")
    loops, steps, model_steps = [], [], []
    for _ in range(FLAGS.pairs):
        with tempfile.TemporaryDirectory() as tmp:
            _run(["train.py", f"--config={FLAGS.config}", f"--workdir={tmp}/run",
                  f"--config.train.epochs={FLAGS.epochs}", "--config.train.progress_bar=False",
                  *FLAGS.config_overrides])
            rate, batch = loop_samples_per_s(Path(tmp) / "run")
        loops.append(rate)
        for rates, kind in ((steps, "pipeline"), (model_steps, "network")):
            line = _run(["bench/train_step.py", f"--config={FLAGS.config}", f"--batch={batch}",
                         f"--steps={FLAGS.steps}", f"--input={kind}", *FLAGS.config_overrides])
            rates.append(json.loads(line.strip().splitlines()[-1])["samples_per_s"])
    ratios = [a / b for a, b in zip(loops, steps)]
    model_ratios = [a / b for a, b in zip(loops, model_steps)]
    record = {"config": FLAGS.config, "batch": batch, "epochs": FLAGS.epochs, "loop_samples_per_s": loops,
              "step_samples_per_s": steps, "ratio": ratios, "ratio_median": statistics.median(ratios),
              "model_step_samples_per_s": model_steps, "ratio_model": model_ratios,
              "ratio_model_median": statistics.median(model_ratios)}
    json_line.emit(record, FLAGS.out)
    return 0


if __name__ == "__main__":
    cli.run(main)
