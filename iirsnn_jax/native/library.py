"""Builds the CPU kernels (the *.cc files here) into one library on first use and registers them with XLA.

The library is compiled once per machine with the C++ compiler that `CXX` names (default `c++`), against the
XLA FFI headers that jaxlib ships, into compiled.py's cache directory, keyed by the sources, the flags, the JAX
version and the CPU (about 20 s with g++ on 2 cores). Without a compiler the scans stay XLA loops (`model.cpu_kernel =
"xla"` chooses that explicitly), after one warning.
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform
import shutil
import warnings
from pathlib import Path

import jax

from iirsnn_jax.native import compiled

OPTIONS = ("native", "xla")  # model.cpu_kernel: the compiled kernels, or XLA's lax.scan loops
HERE = Path(__file__).parent
SOURCES = ("spiking_scan.cc", "linear_recurrence.cc", "conv_layout.cc")
HEADERS = ("blocks.h",)
# The FFI handlers each source defines, by the names the Python wrappers call them.
TARGETS = {
    "iirsnn_spiking_scan_forward": "IirsnnSpikingScanForward",
    "iirsnn_spiking_scan_backward": "IirsnnSpikingScanBackward",
    "iirsnn_linear_recurrence_forward": "IirsnnLinearRecurrenceForward",
    "iirsnn_linear_recurrence_backward": "IirsnnLinearRecurrenceBackward",
    "iirsnn_conv_layout": "IirsnnConvLayout",
}
# FMA contraction as XLA CPU's LLVM backend contracts: the forward passes then round exactly as the XLA route.
# No trapping math: lets gcc turn selects into vector blends (the results do not change).
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=fast", "-fno-trapping-math")
ARCH_FLAGS = ("-march=native",)  # retried without, for compilers that do not know it


def _cpu_identity() -> str:
    """The CPU model and flags: -march=native code must not be reused on another CPU sharing the cache."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "|".join(sorted({l for l in lines if l.startswith(("model name", "flags", "Features"))}))
    except OSError:
        return platform.processor() or platform.machine()


def library_path(compiler: str) -> Path:
    texts = [(HERE / name).read_text() for name in SOURCES + HEADERS]
    return compiled.path_for("kernels", [*texts, " ".join(FLAGS + ARCH_FLAGS), compiler, jax.__version__,
                                         platform.machine(), _cpu_identity()])


def build(compiler: str) -> Path:
    """The compiled library for this machine: from the cache, or compiled now (RuntimeError if impossible)."""
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C++ compiler {compiler!r} on PATH (set CXX to one)")
    base = [compiler, *FLAGS, f"-I{jax.ffi.include_dir()}", *(str(HERE / s) for s in SOURCES)]
    return compiled.build(library_path(compiler), [[*base, *ARCH_FLAGS], base], "the CPU kernels")


@functools.cache
def available() -> bool:
    """Builds (once per machine) and registers the kernels; False, after one warning, if that is impossible."""
    try:
        library = ctypes.cdll.LoadLibrary(str(build(os.environ.get("CXX", "c++"))))
        for target, symbol in TARGETS.items():
            jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")
    except (OSError, RuntimeError, AttributeError) as error:
        warnings.warn(f"the scans run as XLA loops, not in the CPU kernels: {error}", stacklevel=2)
        return False
    return True


def per_feature(value, feature_shape) -> bool:
    """Whether a parameter broadcastable to [B, *F] is the same for every sample (the kernels take [F])."""
    shape = tuple(jax.numpy.shape(value))
    if len(shape) > len(feature_shape):
        return all(d == 1 for d in shape[: len(shape) - len(feature_shape)])
    return True


def feature_array(value, feature_shape, dtype):
    """A per-element parameter (None, a scalar, or broadcastable to [*F] after leading 1s) as the kernels take
    it: an [Fs] array (Fs = prod F), or one with no elements for None."""
    if value is None:
        return jax.numpy.zeros((0,), dtype)
    value = jax.numpy.asarray(value, dtype)
    value = value.reshape(value.shape[max(0, value.ndim - len(feature_shape)):])
    return jax.numpy.broadcast_to(value, feature_shape).reshape(-1)


def check_option(option: str) -> None:
    if option not in OPTIONS:
        raise ValueError(f"model.cpu_kernel must be one of {OPTIONS}, got {option!r}")


def usable(option: str, x, *per_element) -> bool:
    """Whether a scan over x [T, B, *F] (or [B, T, *F]) may run in a CPU kernel: asked for (`option`), the
    default backend a CPU, a float dtype, no empty axis, parameters the same for every sample, and the library
    built (last: the first call compiles it)."""
    return (option == "native" and jax.default_backend() == "cpu" and x.ndim >= 2 and x.size > 0
            and x.dtype in (jax.numpy.float32, jax.numpy.float64)
            and all(a is None or per_feature(a, x.shape[2:]) for a in per_element)
            and available())


def on_cpu(native, fallback, *args):
    """native(*args) when lowered for CPU, fallback(*args) elsewhere (jax.lax.platform_dependent)."""
    return jax.lax.platform_dependent(*args, cpu=native, default=fallback)
