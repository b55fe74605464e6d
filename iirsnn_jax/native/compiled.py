"""Compiled libraries of this package, cached per machine: where they live and how one is compiled.

`$IIRSNN_CACHE_DIR` (default `$XDG_CACHE_HOME/iirsnn_jax` or `~/.cache/iirsnn_jax`) holds one file per build,
named by a hash of everything that went into it, so a changed source, flag or machine compiles anew. No JAX
import here: the buffer cache is built before a command restarts itself, ahead of JAX.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    if os.environ.get("IIRSNN_CACHE_DIR"):
        return Path(os.environ["IIRSNN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "iirsnn_jax"


def path_for(stem: str, key_parts: list[str]) -> Path:
    """cache_dir()/<stem>-<hash of key_parts>.so"""
    key = hashlib.sha256("\n".join(key_parts).encode()).hexdigest()[:16]
    return cache_dir() / f"{stem}-{key}.so"


def build(output: Path, commands: list[list[str]], what: str) -> Path:
    """output if it exists, else compiled by the first of `commands` that succeeds (each gets `-o FILE` appended;
    the result appears atomically: a concurrent process sees no file or the whole one). RuntimeError naming
    `what` when every command fails."""
    if output.exists():
        return output
    output.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for command in commands:
        with tempfile.NamedTemporaryFile(dir=output.parent, suffix=".so", delete=False) as tmp:
            partial = Path(tmp.name)
        result = subprocess.run([*command, "-o", str(partial)], capture_output=True, text=True)
        if result.returncode == 0:
            os.replace(partial, output)
            return output
        partial.unlink(missing_ok=True)
        errors.append(f"{' '.join(command)}\n{result.stderr[-2000:]}")
    raise RuntimeError(f"compiling {what} failed:\n" + "\n".join(errors))
