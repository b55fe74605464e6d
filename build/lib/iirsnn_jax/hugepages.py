"""Transparent huge pages for XLA's buffers on Linux: on by default in bench/train_step.py (and train.py).

XLA on CPU allocates a step's large buffers afresh every step. With glibc's defaults each is a new mmap, and
the first touch of every 4 KiB page faults and zeroes it: 8-15 thousand page faults and a fifth to a third of
the CPU time of an MLP step, 300-400 thousand (0.4-0.5 s of CPU) for a conv network. glibc's tunable
`glibc.malloc.hugetlb=1` makes malloc ask for transparent huge pages (2 MiB per fault). Measured on 2 shared
cores (docs/performance.md): snn_mlp_1 b64 1.25x and the time-series shape 1.24x less CPU time per step,
snn_conv_1_mnist b32 1.16-1.40x faster, peak memory unchanged.

Tried and rejected: also keeping freed memory mapped (glibc.malloc.mmap_max=0, arena_max=1, a huge
trim_threshold) removes every page fault and was 1.27x faster still in one run, but the single heap
fragments: snn_conv_1_nmnist b48 then peaked at 11 GB instead of 5 GB.

glibc reads tunables only when a process starts, so `ensure()` starts the same command again, once, with the
tunable added to GLIBC_TUNABLES, and says so on stderr. It does nothing when turned off (`--nohuge_pages`),
when GLIBC_TUNABLES already sets any glibc.malloc tunable (the user's choice wins), off Linux/glibc, or when
the kernel's transparent huge pages are disabled.
"""
from __future__ import annotations

import os
import platform
import sys

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


def ensure(enabled: bool) -> None:
    """Restarts this command with huge pages on (see the module docstring); returns when nothing is to be done."""
    if not enabled:
        return
    env = environment(dict(os.environ))
    if env is None:
        return
    print(f"huge pages: restarting with GLIBC_TUNABLES={env['GLIBC_TUNABLES']} (--nohuge_pages keeps glibc's "
          "defaults)", file=sys.stderr, flush=True)
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def _kernel_thp() -> str:
    """The kernel's transparent huge page mode ("always", "madvise" or "never"); "" when unknown."""
    try:
        with open(_THP_SETTING) as f:
            text = f.read()
    except OSError:
        return ""
    return text[text.find("[") + 1:text.find("]")] if "[" in text else ""
