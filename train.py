"""Train an experiment: python train.py --config=configs/<experiment>.py [--config.x=y] [--workdir=DIR].

The workdir (default ./workdir/<config file name>) receives config.json, metrics.jsonl, TensorBoard events
and Orbax checkpoints; running the same command again resumes from its latest checkpoint. On a TPU pod or
several GPU nodes add --distributed on every host (jax.distributed.initialize finds its peers), or give
--coordinator_address, --num_processes and --process_id explicitly.
"""
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "experiment config file (configs/<experiment>.py)",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "run directory; default ./workdir/<config file name>")
flags.DEFINE_bool("distributed", False, "initialise multi-process JAX (TPU pods, multi-node GPU clusters)")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-process runs")
flags.DEFINE_integer("num_processes", None, "number of processes of a multi-process run")
flags.DEFINE_integer("process_id", None, "this process's index in a multi-process run")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def initialise_distributed() -> None:
    import jax

    if FLAGS.coordinator_address:
        # CPU processes need a collectives backend to talk to each other (GPUs and TPUs bring their own).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    elif FLAGS.distributed:
        jax.distributed.initialize()


class _QuietLibraries:
    """Drops the INFO chatter of Orbax and JAX's distributed runtime; warnings and errors still show."""

    def filter(self, record):
        return record.levelno >= 30 or not any(part in record.pathname for part in ("/orbax/", "/jax/"))


def main(argv):
    logging.get_absl_handler().addFilter(_QuietLibraries())
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.coordinator_address or FLAGS.distributed:
        initialise_distributed()
    from iirsnn_jax.training import loop

    config_file = config_flags.get_config_filename(FLAGS["config"])
    workdir = FLAGS.workdir or str(Path("workdir") / Path(config_file).stem)
    logging.info("workdir %s", workdir)
    result = loop.train_and_evaluate(FLAGS.config, workdir)
    print(f"best dev epoch {result['best_epoch']} ({result['best_dev']:.5g}); test: "
          + ", ".join(f"{k} {v:.5g}" for k, v in result["test"].items() if k in ("loss", "accuracy")))


if __name__ == "__main__":
    app.run(main)
