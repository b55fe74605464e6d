"""The project's own errors: problems with what the user gave (config, data, workdir, checkpoint), not bugs.

Commands (train.py, eval.py, `python -m iirsnn_jax.*`, bench/) print a `UserError` as one message and exit
non-zero, without a traceback; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message names the file, key or value and what was expected."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work (wrong type, out of range, inconsistent with the data or network)."""


class WorkdirError(UserError):
    """A workdir that cannot be used as asked: missing, locked by another run, or saved with other settings."""


class CheckpointError(UserError):
    """A checkpoint that does not exist or cannot be read."""
