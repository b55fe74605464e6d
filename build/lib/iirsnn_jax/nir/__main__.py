"""Export a trained run to NIR, or check a NIR file against the run it came from.

  python -m iirsnn_jax.nir export --workdir=DIR [--checkpoint=best|latest|STEP] --out=FILE.nir [--approximate]
  python -m iirsnn_jax.nir check FILE.nir --workdir=DIR [--checkpoint=...] [--samples=256] [--split=dev]

`export` writes the graph (docs/nir.md explains every node) and lists its node types; a layer without an
exact NIR form is an error unless --approximate, which then measures the approximation on dev samples.
`check` re-imports the file and runs it next to the checkpoint: exit status 0 only if every spiking
layer's spikes are identical.
"""
import sys

from absl import app, flags, logging

flags.DEFINE_string("workdir", None, "run directory made by train.py")
flags.DEFINE_string("checkpoint", "best", "best, latest, or a step number")
flags.DEFINE_string("out", None, "export: the NIR file to write")
flags.DEFINE_bool("approximate", False, "export: approximate layers without an exact NIR form, and report the error")
flags.DEFINE_float("dt", 1.0, "time units per network step (tau = dt / (1 - pole))")
flags.DEFINE_integer("samples", 256, "samples of the split to compare")
flags.DEFINE_enum("split", "dev", ["train", "dev", "test"], "split whose samples are compared")
FLAGS = flags.FLAGS
USAGE = "usage: python -m iirsnn_jax.nir export --workdir=DIR --out=FILE.nir | check FILE.nir --workdir=DIR"


def _report(agreement, samples) -> bool:
    for line in agreement.lines():
        print(line)
    verdict = "identical" if agreement.identical else "NOT identical"
    print(f"spikes on {samples} {FLAGS.split} samples: {verdict}")
    return agreement.identical


def main(argv):
    from iirsnn_jax.nir import NIRExportError, NIRImportError, workdir

    command, *rest = argv[1:] or [None]
    problem = None
    if command not in ("export", "check"):
        problem = f"expected a command, export or check, got {command!r}"
    elif FLAGS.workdir is None:
        problem = "--workdir is required"
    elif command == "export" and (rest or FLAGS.out is None):
        problem = "export takes --out=FILE.nir and no arguments"
    elif command == "check" and len(rest) != 1:
        problem = "check takes one NIR file"
    if problem:
        print(f"error: {problem}; {USAGE}", file=sys.stderr)
        return 2
    try:
        if command == "export":
            graph, run = workdir.export_run(FLAGS.workdir, FLAGS.out, checkpoint=FLAGS.checkpoint,
                                            approximate=FLAGS.approximate, dt=FLAGS.dt)
            if run.step is None:
                print(f"warning: no {FLAGS.checkpoint!r} checkpoint in {FLAGS.workdir}: exported the network at "
                      "initialisation", file=sys.stderr)
            types = ", ".join(f"{k} x{v}" for k, v in workdir.node_types(graph).items())
            print(f"wrote {FLAGS.out}: {len(graph.nodes)} nodes ({types}), step {run.step}")
            notes = graph.metadata.get("approximations")
            if notes:
                print(f"APPROXIMATED (not exact):\n{notes}")
                agreement, samples, _ = workdir.check_run(FLAGS.out, run, samples=FLAGS.samples, split=FLAGS.split,
                                                          dt=FLAGS.dt)
                _report(agreement, samples)
            return 0
        agreement, samples, _ = workdir.check_run(rest[0], FLAGS.workdir, checkpoint=FLAGS.checkpoint,
                                                  samples=FLAGS.samples, split=FLAGS.split, dt=FLAGS.dt)
        return 0 if _report(agreement, samples) else 1
    except (NIRExportError, NIRImportError, ValueError, FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)  # one line, no traceback
        return 2


if __name__ == "__main__":
    logging.set_verbosity(logging.WARNING)
    app.run(main)
