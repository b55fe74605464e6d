"""Evaluate a trained run, or a reference PyTorch state_dict, on the full dev or test split.

  python eval.py --workdir=DIR [--checkpoint=best|latest|STEP] [--split=test|dev]
  python eval.py --config=configs/<experiment>.py --reference_state_dict=FILE [--split=test] [--workdir=DIR]

The first form restores the run's Orbax checkpoint with the config saved in DIR/config.json. The second
imports reference weights (an .npz of PyTorch names, or a torch checkpoint when torch is installed) through
iirsnn_jax/reference.py. Metrics are printed and, when a workdir is given, appended to DIR/metrics.jsonl.
"""
import json
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "experiment config (only with --reference_state_dict)",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "run directory made by train.py")
flags.DEFINE_string("checkpoint", "best", "best, latest, or a step number")
flags.DEFINE_enum("split", "test", ["test", "dev", "train"], "split to evaluate")
flags.DEFINE_string("reference_state_dict", None, "reference PyTorch weights (.npz or torch checkpoint)")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from iirsnn_jax import config as config_lib, data, models, reference
    from iirsnn_jax.training import checkpoint, evaluation, metrics, optimizer as optimizer_lib, parallel, steps

    workdir = Path(FLAGS.workdir) if FLAGS.workdir else None
    if FLAGS.reference_state_dict:
        if FLAGS.config is None:
            raise app.UsageError("--reference_state_dict needs --config=configs/<experiment>.py")
        config = FLAGS.config
    elif workdir is None:
        raise app.UsageError("give --workdir=DIR (a train.py run) or --config with --reference_state_dict")
    else:
        try:
            config = config_lib.read_run_config(workdir)
        except FileNotFoundError as error:
            raise app.UsageError(str(error)) from error

    mesh = parallel.make_mesh()
    model = models.build_model(config.model, seed=config.seed)
    if FLAGS.reference_state_dict:
        reference.load_state_dict(model, FLAGS.reference_state_dict)
    optimizer = optimizer_lib.make_optimizer(config.train, steps_per_epoch=1)  # its state's structure only
    graphdef, state = steps.create_train_state(model, optimizer, config.train.batch_size)
    state = parallel.replicate(state, mesh)
    if FLAGS.reference_state_dict:
        source, epoch = f"reference:{FLAGS.reference_state_dict}", None
    else:
        state, position = checkpoint.RunCheckpoints(workdir).restore(FLAGS.checkpoint, state)
        source, epoch = f"checkpoint:{FLAGS.checkpoint}", position.get("epoch", 0) - 1
    pipeline = data.build(config, FLAGS.split, batch_size=evaluation.eval_batch_size(config), shuffle=False,
                          drop_remainder=False)
    eval_step = evaluation.make_jitted_eval_step(graphdef, config.train.loss)
    _, summary = evaluation.evaluate(eval_step, state.params, state.constants, state.carry, pipeline, mesh)
    record = {"epoch": epoch, "split": FLAGS.split, "checkpoint": source, **summary}
    print(json.dumps(record))
    if workdir is not None:
        writer = metrics.MetricWriter(workdir)
        writer.write(record, int(state.step))
        writer.close()


if __name__ == "__main__":
    app.run(main)
