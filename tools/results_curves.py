"""Our runs next to the reference's published numbers: one dev-curve figure per run and a Markdown table row.

    python tools/results_curves.py --workdir=/work/runs/snn_mlp_1 --workdir=/work/runs/snn_mlp_2 \
        [--out=docs/images]

For each workdir (made by train.py; only config.json and metrics.jsonl are read, no checkpoint) it writes
<out>/results_<experiment>.png: our dev accuracy per epoch (dev MSE for the associative memory) over the
reference's per-epoch checkpoints, and prints a Markdown table (header once, one row per workdir): epochs
done, best dev (epoch), train accuracy at that epoch, test of the best checkpoint, training time, each beside
the reference's number. A run resumed after a crash can hold an epoch twice: the last record counts.

Training time = sum over epochs of the train pass (the epoch's samples / its samples_per_s) and the dev
evaluation (dev record's time stamp - train record's). Start-up, the final test and the pauses of a stopped
and resumed run are not in it; the first epoch's train pass includes compilation.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the library is imported from the checkout

from absl import flags  # noqa: E402

flags.DEFINE_multi_string("workdir", [], "run directory made by train.py; repeat the flag or give a comma list")
flags.DEFINE_string("out", "docs/images", "folder for the PNGs")
FLAGS = flags.FLAGS


class Reference(NamedTuple):
    """The reference's numbers for one experiment, in % (MSE for the associative memory)."""

    train: float | None  # running train accuracy at the best-dev epoch [csv]; None where no source gives it
    dev: float
    best_epoch: int
    test: float | None
    curve: dict[int, float]  # epoch -> dev accuracy (or dev MSE) logged after that epoch


# Source: /work/shared/reference/SPEC.md section 7 (zhongyuchen/snn-iir's README and *_acc.csv files; the
# per-epoch dev-accuracy checkpoints) and section 3.4 (the associative memory's dev loss, associative_memory.ipynb).
_EPOCHS = (0, 1, 4, 9, 19, 49, 50, 99)
REFERENCE = {
    "snn_mlp_1": Reference(99.122, 98.58, 72, 98.94,
                           dict(zip(_EPOCHS, (87.88, 92.64, 95.24, 96.72, 97.54, 97.98, 98.26, 98.28)))),
    "snn_mlp_1_non_zero": Reference(98.956, 98.488, 93, 98.858,
                                    dict(zip(_EPOCHS, (84.73, 89.11, 93.65, 95.66, 97.16, 98.18, 98.08, 98.37)))),
    "snn_mlp_1_poisson_input": Reference(99.158, 98.628, 98, 98.928,
                                         dict(zip(_EPOCHS, (87.73, 92.29, 94.67, 96.10, 97.32, 98.04, 98.29, 98.55)))),
    "snn_mlp_2": Reference(99.172, 98.66, 72, 98.96,
                           dict(zip(_EPOCHS, (89.45, 92.93, 95.21, 96.66, 97.44, 98.16, 98.39, 98.48)))),
    "snn_mlp_2_poisson_input": Reference(99.224, 98.748, 96, 98.978,
                                         dict(zip(_EPOCHS, (89.03, 92.74, 94.95, 96.25, 97.37, 97.78, 98.35, 98.41)))),
    "snn_conv_1_mnist": Reference(99.802, 99.47, 99, 99.59,
                                  dict(zip(_EPOCHS, (95.29, 97.32, 98.34, 98.67, 98.82, 99.19, 99.21, 99.47)))),
    "snn_conv_1_mnist_poisson_input": Reference(
        99.790, 99.479, 93, 99.519, dict(zip(_EPOCHS, (96.28, 97.06, 98.30, 98.67, 98.83, 99.02, 99.16, 99.26)))),
    "snn_conv_1_nmnist": Reference(None, 98.708, 89, 98.558, {}),
    "snn_conv_1_gesture": Reference(90.625, 85.156, 46, 66.319, {20: 67.19, 49: 79.69, 99: 84.38}),
    "snn_conv_1_gesture_30": Reference(94.754, 85.938, 59, 68.75, {}),
    "snn_conv_1_gesture_max": Reference(96.336, 75.781, 68, 70.486, {}),
    # train: the reference's 0.0031 is the lowest last-batch MSE over all epochs (epoch 93), not at epoch 92.
    "associative_memory": Reference(None, 0.003688, 92, 0.0042, {0: 0.1409, 10: 0.0586, 20: 0.0130, 30: 0.0090,
                                                                  49: 0.00577, 50: 0.00454, 70: 0.00412,
                                                                  92: 0.003688, 99: 0.00400}),
}
REFERENCE["nmnist"] = REFERENCE["snn_conv_1_nmnist"]  # configs/nmnist.py is snn_conv_1_nmnist renamed

HEADER = ("| experiment | epochs | dev, best (epoch) | ref. dev (epoch) | train at best dev | ref. train "
          "| test | ref. test | training time |\n|---|---|---|---|---|---|---|---|---|")


class Summary(NamedTuple):
    """What one workdir's metrics.jsonl says, in the table's units (% or MSE)."""

    experiment: str
    classifier: bool
    epochs_done: int
    epochs: int
    dev: list[tuple[int, float]]  # (epoch, dev number), one per epoch
    best_epoch: int | None
    best_dev: float | None
    train_at_best: float | None
    test: float | None
    test_epoch: int | None
    seconds: float


def summarize(config, records: list[dict]) -> Summary:
    """config: the run's (read_run_config); records: its metrics.jsonl (read_metrics)."""
    from iirsnn_jax.plots.curves import per_epoch

    classifier = config.train.loss == "cross_entropy"
    key, scale = ("accuracy", 100.0) if classifier else ("loss", 1.0)
    train, dev = per_epoch(records, "train"), per_epoch(records, "dev")
    curve = [(int(r["epoch"]), scale * r[key]) for r in dev]
    best_epoch, best_dev = None, None
    if curve:  # first best, as the reference's argmax and our loop's strict improvement pick it
        best_epoch, best_dev = (max if classifier else min)(curve, key=lambda point: point[1])
    train_of = {int(r["epoch"]): r for r in train}
    seconds = 0.0
    for r in dev:
        t = train_of.get(int(r["epoch"]))
        if t is not None:  # the epoch's train pass, then the dev evaluation between the two records
            seconds += t["count"] / t["samples_per_s"] + r["time"] - t["time"]
    at_best = train_of.get(best_epoch)
    tests = [r for r in records if r.get("split") == "test"]
    return Summary(config.experiment, classifier, len(dev), int(config.train.epochs), curve, best_epoch, best_dev,
                   scale * at_best[key] if at_best else None, scale * tests[-1][key] if tests else None,
                   tests[-1].get("epoch") if tests else None, seconds)


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def table_row(s: Summary) -> str:
    ref = REFERENCE.get(s.experiment)

    def ours(value, epoch=None):
        if value is None:
            return "–"
        text = f"{value:.2f}" if s.classifier else f"{value:.4g}"
        return text + (f" ({epoch})" if epoch is not None else "")

    def theirs(value, epoch=None):
        return "–" if value is None else f"{value:g}" + (f" ({epoch})" if epoch is not None else "")

    cells = [s.experiment + ("" if s.classifier else " (MSE)"), f"{s.epochs_done} / {s.epochs}",
             ours(s.best_dev, s.best_epoch), theirs(ref and ref.dev, ref and ref.best_epoch),
             ours(s.train_at_best), theirs(ref and ref.train), ours(s.test), theirs(ref and ref.test),
             duration(s.seconds)]
    return "| " + " | ".join(cells) + " |"


def plot(s: Summary, config, workdir, out) -> Path:
    """results_<experiment>.png: our dev curve, the reference's checkpoints and both tests."""
    from iirsnn_jax.plots import common

    ref = REFERENCE.get(s.experiment)
    points = sorted({**ref.curve, ref.best_epoch: ref.dev}.items()) if ref else []
    last = max([e for e, _ in s.dev] + [1])
    # Draw the reference up to its first checkpoint at or after our last epoch; list the rest in the caption.
    shown_to = min([e for e, _ in points if e >= last], default=last)
    hidden = [(e, v) for e, v in points if e > shown_to]
    milestones = [m for m in config.train.milestones if m <= max(last, shown_to)]
    caption = (f"Ours: {Path(workdir).name}/metrics.jsonl, the whole dev split after each epoch"
               + (", not augmented (the reference's dev was, SPEC 6.7)" if config.data.name == "mnist"
                  and not config.data.augment_dev else "")
               + (". Reference: SPEC.md " + ("7 (*_acc.csv)" if s.classifier else "3.4 (notebook log)")
                  + " with its best dev epoch" if ref else ". No reference numbers for this experiment")
               + (f". Not drawn, reference after epoch {shown_to}: " + ", ".join(f"{e}: {v:g}" for e, v in hidden)
                  if hidden else "")
               + ". Stars: test of the best dev checkpoint"
               + (". Grey line: learning rate x0.1 from epoch " + ", ".join(map(str, milestones)) if milestones
                  else "") + ".")
    fig = common.new_figure(7.5, 4.2, caption)
    ax = fig.subplots()
    if s.dev:
        ax.plot(*zip(*s.dev), marker="o", ms=3, color=common.SPLIT_COLOURS["dev"], label="ours, dev")
    if points:
        drawn = [(e, v) for e, v in points if e <= shown_to]
        ax.plot(*zip(*drawn), marker="s", ms=5, ls=":", color="black", label="reference, dev (checkpoints)")
    if s.test is not None and s.test_epoch is not None:
        ax.plot([s.test_epoch], [s.test], marker="*", ms=13, ls="none", color=common.SPLIT_COLOURS["test"],
                label=f"ours, test: {s.test:.4g}")
    if ref and ref.test is not None and ref.best_epoch <= shown_to:
        ax.plot([ref.best_epoch], [ref.test], marker="*", ms=13, ls="none", mfc="none", color="black",
                label=f"reference, test: {ref.test:g}")
    for milestone in milestones:
        ax.axvline(milestone - 0.5, color="0.6", lw=1)
    if s.classifier:
        ax.set_ylabel("accuracy (%)")
    else:
        ax.set_ylabel("MSE, filtered output vs target")
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{s.experiment}: dev {'accuracy' if s.classifier else 'loss'}, ours ({s.epochs_done} of "
                 f"{s.epochs} epochs)" + (" and the reference" if ref else ""), fontsize=11)
    return common.save(fig, Path(out) / f"results_{s.experiment}.png").path


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {argv[1:]}")
    workdirs = [w for flag in FLAGS.workdir for w in flag.split(",") if w]
    if not workdirs:
        raise ValueError("give at least one --workdir=DIR (a run directory made by train.py)")
    from iirsnn_jax.config import read_run_config
    from iirsnn_jax.training.metrics import read_metrics

    print(HEADER)
    for workdir in workdirs:
        config = read_run_config(workdir)
        s = summarize(config, read_metrics(workdir))
        path = plot(s, config, workdir, FLAGS.out)
        print(table_row(s))
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    from iirsnn_jax import cli

    cli.run(main)
