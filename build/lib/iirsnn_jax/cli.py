"""What every command of the project shares (train.py, eval.py, `python -m iirsnn_jax.<command>`, bench/):
absl flags, quiet library logs, and errors the user can fix printed as one line instead of a traceback.

  python <command> ... --traceback     shows the full traceback of such an error too (for a bug report)
"""
from __future__ import annotations

import re
import sys
from typing import Callable

from absl import app, flags, logging

from iirsnn_jax.errors import UserError

flags.DEFINE_bool("traceback", False, "print the full traceback of an error (for reporting a bug)")

# Our own errors, and the ValueError/OSError our checks raise for a bad value or a missing file.
USER_ERRORS = (UserError, ValueError, OSError, IndexError)


class _QuietLibraries:
    """Drops the INFO chatter of Orbax and JAX's runtime; warnings and errors still show."""

    def filter(self, record):
        if "Given directory is read only" in str(record.msg):  # Orbax on every read-only restore (eval, plots)
            return False
        return record.levelno >= 30 or not any(part in record.pathname for part in ("/orbax/", "/jax/", "/jaxlib/"))


def report(error: BaseException) -> int:
    """Prints a user error as one message on stderr; returns the exit status 1."""
    message = str(error).strip() or type(error).__name__
    print(f"error: {message}", file=sys.stderr)
    return 1


def config_value(flag_name: str = "config"):
    """The ConfigDict of a config_flags flag, or a UserError that says which file failed to load and why."""
    try:
        value = flags.FLAGS[flag_name].value
        value.keys()  # config_flags loads the file lazily: load it here
        return value
    except (OSError, ImportError, SyntaxError, AttributeError) as error:
        from ml_collections import config_flags

        path = config_flags.get_config_filename(flags.FLAGS[flag_name])
        reason = str(error).strip().splitlines()[-1].strip()
        raise UserError(f"cannot load the config file {path}: {reason}") from None


def _unknown_config_field(error: BaseException) -> str:
    """One sentence for a --config.a.b=v override that names no field (ml_collections raises it while absl
    parses the flags, before main runs)."""
    text = str(error.args[0] if error.args else error)
    names = re.findall(r"\w+", text)
    name = names[0] if names else text
    given = [arg.split("=")[0] for arg in sys.argv[1:] if arg.startswith("--") and re.search(rf"\.{name}\b", arg)]
    hint = re.search(r'Did you mean "(\w+)"', text)
    return (f"{given[0] if given else name}: no such config field"
            + (f"; did you mean {hint.group(1)}?" if hint else ""))


def run(main: Callable[[list[str]], int | None]) -> None:
    """app.run(main), with USER_ERRORS printed as one message (exit 1) unless --traceback is given."""
    started = []

    def wrapped(argv):
        started.append(True)
        logging.get_absl_handler().addFilter(_QuietLibraries())
        try:
            return main(argv)
        except USER_ERRORS as error:
            if flags.FLAGS.traceback:
                raise
            return report(error)

    try:
        app.run(wrapped)
    except (AttributeError, KeyError) as error:
        if started or "--traceback" in sys.argv:
            raise
        sys.exit(report(UserError(_unknown_config_field(error))))
