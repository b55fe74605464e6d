"""Evaluate a trained run, or a reference PyTorch state_dict, on the full dev or test split.

  python eval.py --workdir=DIR [--checkpoint=best|latest|STEP] [--split=test|dev|train] [--out=FILE.json]
  python eval.py --config=configs/<experiment>.py --reference_state_dict=FILE [--split=test] [--out=FILE.json]

The first form restores the run's Orbax checkpoint with the config saved in DIR/config.json (the run's own
settings: --config is refused with --workdir). The second imports reference weights (an .npz of PyTorch
names, or a torch checkpoint when torch is installed) through iirsnn_jax/reference. Evaluation only reads:
the result is one JSON line on stdout and, with --out, also written to that file; the workdir is never
written (it may be read-only, or in use by a running train.py).
"""
import json

from absl import flags
from ml_collections import config_flags

from iirsnn_jax import cli
from iirsnn_jax.errors import UserError

config_flags.DEFINE_config_file("config", None, "experiment config (only with --reference_state_dict)",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "run directory made by train.py (or its bucket URL)")
flags.DEFINE_string("checkpoint", "best", "best, latest, or a step number")
flags.DEFINE_enum("split", "test", ["test", "dev", "train"], "split to evaluate")
flags.DEFINE_string("reference_state_dict", None, "reference PyTorch weights (.npz or torch checkpoint)")
flags.DEFINE_string("out", None, "also write the JSON result to this file")
FLAGS = flags.FLAGS


def _epoch_label(position) -> dict:
    """What a checkpoint's Position says about its place in the run: the last finished epoch at an epoch
    boundary, or the epoch and batch it was saved in."""
    if position.batch:
        return {"epoch": position.epoch, "batch": position.batch}
    return {"epoch": position.epoch - 1}


def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments: {argv[1:]}")
    from iirsnn_jax import config as config_lib, data, models, reference
    from iirsnn_jax.training import checkpoint, evaluation, optimizer as optimizer_lib, parallel, steps

    given_config = FLAGS["config"].present
    if FLAGS.reference_state_dict:
        if not given_config:
            raise UserError("--reference_state_dict needs --config=configs/<experiment>.py")
        if FLAGS.workdir:
            raise UserError("--workdir and --reference_state_dict exclude each other: evaluate a run, or weights")
        config = cli.config_value("config")
    elif FLAGS.workdir is None:
        raise UserError("give --workdir=DIR (a train.py run) or --config with --reference_state_dict")
    elif given_config:
        raise UserError(f"--config is only read with --reference_state_dict; --workdir evaluates the run with its "
                        f"own settings ({FLAGS.workdir}/config.json)")
    else:
        config = config_lib.read_run_config(FLAGS.workdir)

    mesh = parallel.make_mesh()
    model = models.build_model(config.model, seed=config.seed)
    if FLAGS.reference_state_dict:
        reference.load_state_dict(model, FLAGS.reference_state_dict)
    optimizer = optimizer_lib.make_optimizer(config.train, steps_per_epoch=1)  # its state's structure only
    graphdef, state = steps.create_train_state(model, optimizer, config.train.batch_size)
    state = parallel.place_state(state, mesh)
    if FLAGS.reference_state_dict:
        label = {"epoch": None, "checkpoint": f"reference:{FLAGS.reference_state_dict}"}
    else:
        state, position = checkpoint.restore_read_only(FLAGS.workdir, FLAGS.checkpoint, state)
        label = {**_epoch_label(position), "step": int(state.step), "checkpoint": FLAGS.checkpoint}
    pipeline = data.build(config, FLAGS.split, batch_size=evaluation.eval_batch_size(config), shuffle=False,
                          drop_remainder=False)
    eval_step = evaluation.make_jitted_eval_step(graphdef, config.train.loss, mesh, data.make_input_fn(config),
                                                 config.train.cpu_scheduler)
    _, summary = evaluation.evaluate(eval_step, state.params, state.constants, state.carry, pipeline, mesh)
    line = json.dumps({**label, "split": FLAGS.split, **summary})
    print(line)
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    cli.run(main)
