"""XLA's large per-step buffers kept mapped between steps: buffer_cache.c, preloaded into the process.

XLA on CPU allocates a step's temporary buffer (2.5 GB for snn_conv_1_nmnist b48) anew every step and frees it at
the end; glibc maps it afresh each time, so the kernel zeroes every page again on first touch: about 0.5 s of
system time per N-MNIST step, 0.07 s per snn_conv_1_mnist step. buffer_cache.c keeps freed blocks of 64 MiB or
more mapped for the next request of the same size (XLA asks for the next step's buffer a moment before it frees
the last one: the request waits for it, up to 5 ms, so one block serves every step and the peak memory stays
the same). Measured on 2 cores in one process each, alternating (docs/performance.md): snn_conv_1_nmnist b48
1.12-1.19x faster, peak RSS 2.9-3.0 GB either way. MLP steps have no such buffers and do not change.

It is on by default for train.py and bench/train_step.py (`--nokeep_buffers` turns it off), which restart
themselves once with it in LD_PRELOAD (iirsnn_jax/hugepages.py's `ensure` does the restart, saying so on stderr).
IIRSNN_BUFFER_CACHE_LIMIT caps the idle bytes kept (default: a quarter of physical memory).
"""
from __future__ import annotations

import ctypes
import os
import platform
import shutil
import sys
import warnings
from pathlib import Path

from iirsnn_jax.native import compiled

SOURCE = Path(__file__).with_name("buffer_cache.c")
FLAGS = ("-O2", "-shared", "-fPIC")
STEM = "buffer-cache"


def supported() -> bool:
    """Linux with glibc: the interposed allocator calls glibc's own entry points."""
    return sys.platform == "linux" and platform.libc_ver()[0] == "glibc"


def build(compiler: str | None = None) -> Path:
    """The compiled buffer_cache.c (from the cache directory, or compiled now: RuntimeError if impossible)."""
    compiler = compiler or os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C compiler {compiler!r} on PATH (set CC to one)")
    output = compiled.path_for(STEM, [SOURCE.read_text(), " ".join(FLAGS), compiler, platform.machine()])
    return compiled.build(output, [[compiler, *FLAGS, str(SOURCE), "-ldl", "-lpthread"]], "the buffer cache")


def environment(env: dict, huge_pages: bool) -> dict | None:
    """`env` with the buffer cache added to LD_PRELOAD (its blocks on transparent huge pages if `huge_pages`), or
    None when nothing is to be done: already preloaded, not Linux/glibc, or no compiler (after a warning)."""
    if not supported() or f"{STEM}-" in env.get("LD_PRELOAD", ""):
        return None
    try:
        path = build()
    except RuntimeError as error:
        warnings.warn(f"XLA's buffers are not kept between steps: {error}", RuntimeWarning, stacklevel=2)
        return None
    preload = " ".join(p for p in (str(path), env.get("LD_PRELOAD", "")) if p)
    return {**env, "LD_PRELOAD": preload, "IIRSNN_BUFFER_CACHE_HUGE_PAGES": "1" if huge_pages else "0"}


def statistics() -> dict | None:
    """hits, misses, idle_bytes and mapped_bytes of this process's buffer cache; None when it is not loaded."""
    try:
        function = ctypes.CDLL(None).iirsnn_buffer_cache_stats
    except AttributeError:
        return None
    values = (ctypes.c_uint64 * 4)()
    function(values)
    return dict(zip(("hits", "misses", "idle_bytes", "mapped_bytes"), map(int, values)))


def active() -> bool:
    """Whether this process runs with the buffer cache."""
    return statistics() is not None
