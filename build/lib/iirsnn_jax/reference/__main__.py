"""Check our networks against golden files of the reference, or convert a reference checkpoint.

  python -m iirsnn_jax.reference check FILE.npz [FILE.npz ...]
  python -m iirsnn_jax.reference convert CHECKPOINT OUT.npz

`check` builds each file's experiment from its experiment file (run it from the repository root), loads the reference
parameters, runs forward and backward in float64 and prints every comparison (golden.py). Exit status 0 only
if every spike matches exactly, the loss to 1e-9 relative and every gradient to 1e-5 of its largest
magnitude. `convert` saves a torch checkpoint's state_dict as an .npz of PyTorch names (needs torch).
"""
import numpy as np
from absl import app, logging

from iirsnn_jax import cli

COMMANDS = ("check", "convert")


def main(argv):
    args = argv[1:]
    if not args or args[0] not in COMMANDS:
        raise app.UsageError(f"give a command: {' or '.join(COMMANDS)} (see --help)")
    command, args = args[0], args[1:]
    if command == "convert":
        if len(args) != 2:
            raise app.UsageError("convert takes two arguments: CHECKPOINT OUT.npz")
        from iirsnn_jax.reference import state_dict

        arrays = state_dict.read_state_dict(args[0])
        np.savez(args[1], **arrays)
        print(f"wrote {args[1]}")
        return 0
    if not args:
        raise app.UsageError("check takes one or more golden .npz files")
    from iirsnn_jax.reference import golden

    failed = False
    for path in args:
        print(f"== {path}")
        try:
            results = golden.check_file(path)
        except (OSError, ValueError, KeyError) as error:
            print(f"ERROR     {error}")
            failed = True
            continue
        for result in results:
            print(result.line())
        bad = sum(not r.ok for r in results)
        print(f"{'OK' if not bad else 'MISMATCH'}: {len(results) - bad} of {len(results)} comparisons match")
        failed |= bool(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    logging.set_verbosity(logging.WARNING)
    cli.run(main)
