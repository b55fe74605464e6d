"""Write the figures of a trained run as PNG files.

  python -m iirsnn_jax.plots --workdir=DIR [--out=DIR/plots] [--figures=rasters,filters,recall,curves,confusion]
      [--checkpoint=best|latest|STEP] [--split=dev] [--samples=3] [--prefix=NAME_]

Headless (Agg); DIR is a directory made by train.py, a local folder or a bucket URL (gs://bucket/run: the
PNGs then go to the bucket too, unless --out names a local folder). Without --figures every figure that
applies to the run is drawn: recall only for the associative memory, the confusion matrix only for
classifiers.
"""
from absl import flags, logging

from iirsnn_jax import cli

flags.DEFINE_string("workdir", None, "run directory made by train.py (or its bucket URL)")
flags.DEFINE_string("out", None, "output folder; default <workdir>/plots")
flags.DEFINE_list("figures", None, "kinds to draw (default: all that apply): rasters, filters, recall, curves, "
                  "confusion")
flags.DEFINE_string("checkpoint", "best", "best, latest, or a step number")
flags.DEFINE_enum("split", "dev", ["train", "dev", "test"], "split for rasters, recall and the confusion matrix")
flags.DEFINE_integer("samples", 3, "number of samples with a spike raster")
flags.DEFINE_string("prefix", "", "prefix of every file name, e.g. digits_")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {argv[1:]}")
    from iirsnn_jax.plots import make

    written = make.make_plots(FLAGS.workdir, FLAGS.out, kinds=FLAGS.figures, checkpoint=FLAGS.checkpoint,
                              split=FLAGS.split, samples=FLAGS.samples, prefix=FLAGS.prefix)
    for item in written:
        print(f"{item.path}  {item.size[0]}x{item.size[1]}")


if __name__ == "__main__":
    logging.set_verbosity(logging.WARNING)
    cli.run(main)
