"""Train an experiment: python train.py --config=configs/<experiment>.py [--config.x=y] [--workdir=DIR].

The workdir (default ./workdir/<config file name>; a local folder or a bucket URL such as gs://bucket/run)
receives config.json, metrics.jsonl, TensorBoard events and Orbax checkpoints; running the same command again
resumes from its latest checkpoint. A workdir that holds a run with other settings is refused (only
run-control fields such as train.epochs may change); --overwrite deletes that run and starts over. SIGTERM or
Ctrl-C saves a checkpoint and exits (status 128 + the signal's number); a second Ctrl-C stops at once. On
Linux the command restarts itself once with transparent huge pages for XLA's buffers and with its large buffers
kept mapped between steps (--nohuge_pages, --nokeep_buffers: not). On a
TPU pod or several GPU nodes add --distributed on every host (jax.distributed.initialize finds its peers), or
give --coordinator_address, --num_processes and --process_id explicitly.
"""
import sys
from pathlib import Path

from absl import flags, logging
from ml_collections import config_flags

from iirsnn_jax import cli, hugepages

config_flags.DEFINE_config_file("config", None, "experiment config file (configs/<experiment>.py)",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "run directory (or bucket URL); default ./workdir/<config file name>")
flags.DEFINE_bool("overwrite", False, "delete the workdir's run (config.json, metrics.jsonl, tensorboard/, "
                  "checkpoints/) and start over")
flags.DEFINE_bool("huge_pages", True, "restart once with glibc.malloc.hugetlb=1 so XLA's per-step buffers sit on "
                  "transparent huge pages (iirsnn_jax/hugepages.py; 1.2-1.4x faster steps on CPU); --nohuge_pages "
                  "keeps glibc's defaults")
flags.DEFINE_bool("keep_buffers", True, "restart once with iirsnn_jax/native/buffer_cache.py preloaded, which "
                  "keeps XLA's large per-step buffers mapped between steps (CPU: conv steps up to 1.2x faster, the "
                  "same peak memory); --nokeep_buffers maps them afresh every step")
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


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {argv[1:]}")
    config = cli.config_value("config")
    # before JAX starts; says so on stderr when it restarts the command
    hugepages.ensure(FLAGS.huge_pages, FLAGS.keep_buffers)
    if FLAGS.coordinator_address or FLAGS.distributed:
        initialise_distributed()
    from iirsnn_jax.training import loop

    config_file = config_flags.get_config_filename(FLAGS["config"])
    workdir = FLAGS.workdir or str(Path("workdir") / Path(config_file).stem)
    logging.info("workdir %s", workdir)
    try:
        result = loop.train_and_evaluate(config, workdir, overwrite=FLAGS.overwrite)
    except loop.Preempted as stopped:
        print(f"{stopped} (workdir {workdir})", file=sys.stderr)
        return 128 + stopped.signal if stopped.signal else 1
    except loop.NonFiniteLoss as error:
        return cli.report(error)
    best = "no epoch trained" if result["best_epoch"] is None else \
        f"best dev epoch {result['best_epoch']} ({result['best_dev']:.5g})"
    print(f"{best}; test: " + ", ".join(f"{k} {v:.5g}" for k, v in result["test"].items() if k in ("loss", "accuracy")))
    return 0


if __name__ == "__main__":
    cli.run(main)
