"""XLA compiler options for the jitted steps, checked against the running jaxlib.

The CPU options below are experimental names of this jax release (docs/performance.md has the measurements):

- YNNPACK fusions (the default in jax 0.10) run this network's kernel-gradient convolutions and its
  reductions over [T*B] 2-3x slower than XLA's own kernels: off, a conv network's step is ~1.4x faster.
- The scheduler (`train.cpu_scheduler`): XLA's default, concurrency-optimised one places the copies of every
  scan's zero-filled output buffer near the top of the program, so they all live through most of the step;
  the memory-optimised one makes them when they are needed: N-MNIST batch 48 once peaked at 5.1 instead of
  7.4 GB and ran 1.15-1.3x faster (fewer page faults). It is the default ("memory"). On a small network the
  other one can win: snn_mlp_1's step is 1.05-1.08x faster with it (its dense layers' weight gradients run
  beside the next layer's backward instead of after all of them), while the time-series shape's is up to
  1.15x slower, so the MLP configs choose "concurrency". The order of the operations changes, not their
  results.

A jaxlib that renamed or dropped one of them must still run: each option is tried once per process on a tiny
program, and one that XLA rejects is left out with a warning.
"""
from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import jaxlib

CPU_SCHEDULERS = {"memory": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
                  "concurrency": "CPU_SCHEDULER_TYPE_CONCURRENCY_OPTIMIZED"}
CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "",
               "xla_cpu_scheduler_type": CPU_SCHEDULERS["memory"]}


def cpu_options(scheduler: str = "memory") -> dict:
    """CPU_OPTIONS with the scheduler `scheduler` (a key of CPU_SCHEDULERS: train.cpu_scheduler)."""
    if scheduler not in CPU_SCHEDULERS:
        raise ValueError(f"train.cpu_scheduler={scheduler!r} must be one of {tuple(CPU_SCHEDULERS)}")
    return {**CPU_OPTIONS, "xla_cpu_scheduler_type": CPU_SCHEDULERS[scheduler]}


def compiler_options(candidates: dict | None = None, *, scheduler: str = "memory") -> dict:
    """The options for the steps' jit: `candidates` (default: cpu_options(scheduler) on CPU, none elsewhere),
    less those this jaxlib does not accept (each named in a warning)."""
    if candidates is None:
        candidates = cpu_options(scheduler) if jax.default_backend() == "cpu" else {}
    return dict(_accepted(tuple(sorted(candidates.items()))))


@functools.cache
def _accepted(items: tuple) -> tuple:
    accepted = []
    for name, value in items:
        try:
            jax.jit(lambda x: x + 1).lower(jnp.zeros((), jnp.float32)).compile(compiler_options={name: value})
        except Exception as error:  # XLA reports an unknown name or value as a runtime error (INVALID_ARGUMENT)
            warnings.warn(f"XLA compiler option {name}={value!r} is not accepted by this jaxlib "
                          f"(jaxlib {jaxlib.__version__}): "
                          f"{str(error).splitlines()[0]}; compiling without it", RuntimeWarning, stacklevel=3)
        else:
            accepted.append((name, value))
    return tuple(accepted)
