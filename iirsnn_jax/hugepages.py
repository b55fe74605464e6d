"""Transparent huge pages for XLA's buffers on Linux: on by default in bench/train_step.py (and train.py).

XLA on CPU allocates a step's large buffers afresh every step. With glibc's defaults each is a new mmap, and
the first touch of every 4 KiB page faults and zeroes it: 8-15 thousand page faults and a fifth to a third of
the CPU time of an MLP step, 300-400 thousand (0.4-0.5 s of CPU) for a conv network. glibc's tunable
`glibc.malloc.hugetlb=1` makes malloc ask for transparent huge pages (2 MiB per fault). Measured on 2 shared
cores (docs/performance.md): snn_mlp_1 b64 1.25x and the time-series shape 1.24x less CPU time per step,
snn_conv_1_mnist b32 1.16-1.40x faster, peak memory unchanged.

Tried and rejected: keeping all freed memory mapped (glibc.malloc.mmap_max=0, arena_max=1, a huge
trim_threshold) removes every page fault, but the single heap fragments: snn_conv_1_nmnist b48 then peaked at
11 GB instead of 5 GB. iirsnn_jax/native/buffer_cache.py keeps only XLA's large blocks, by size, instead.

glibc reads tunables only when a process starts, so `ensure()` starts the same command again, once, with the
tunable added to GLIBC_TUNABLES (and, asked to, the buffer cache in LD_PRELOAD), and says so on stderr. Huge
pages are left out when turned off (`--nohuge_pages`), when GLIBC_TUNABLES already sets any glibc.malloc tunable
(the user's choice wins), off Linux/glibc, or when the kernel's transparent huge pages are disabled.
"""
from __future__ import annotations

import os
import platform
import sys

from iirsnn_jax.native import buffer_cache

TUNABLES = ("glibc.malloc.hugetlb=1",)
_THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def active() -> bool:
    """Whether this process runs with these tunables."""
    return set(TUNABLES) <= set(os.environ.get("GLIBC_TUNABLES", "").split(":"))


def environment(env: dict) -> dict | None:
    """The environment to restart with, or None when nothing is to be done (see the module docstring)."""
    if "glibc.malloc." in env.get("GLIBC_TUNABLES", ""):
        return None
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc" or _kernel_thp() == "never":
        return None
    tunables = ":".join(t for t in (env.get("GLIBC_TUNABLES", ""), *TUNABLES) if t)
    return {**env, "GLIBC_TUNABLES": tunables}


def ensure(enabled: bool, keep_buffers: bool = False) -> None:
    """Restarts this command, once, with huge pages on (see the module docstring) and, with `keep_buffers`, with
    XLA's large buffers kept mapped between steps (iirsnn_jax/native/buffer_cache.py); returns when there is
    nothing to do."""
    env = environment(dict(os.environ)) if enabled else None
    cached = buffer_cache.environment(env or dict(os.environ), huge_pages=enabled) if keep_buffers else None
    env = cached or env
    if env is None:
        return
    changed = " ".join(f"{k}={env[k]}" for k in ("GLIBC_TUNABLES", "LD_PRELOAD") if env.get(k) != os.environ.get(k))
    print(f"memory settings: restarting with {changed} (--nohuge_pages, --nokeep_buffers: glibc's defaults)",
          file=sys.stderr, flush=True)
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def _kernel_thp() -> str:
    """The kernel's transparent huge page mode ("always", "madvise" or "never"); "" when unknown."""
    try:
        with open(_THP_SETTING) as f:
            text = f.read()
    except OSError:
        return ""
    return text[text.find("[") + 1:text.find("]")] if "[" in text else ""
