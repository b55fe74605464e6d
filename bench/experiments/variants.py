"""Scratch: time variants of the real train step in one process, round-robin, by patching library functions
at trace time (the library files are not edited).

    python bench/experiments/variants.py snn_conv_1_mnist 32 3 base no_filter no_neuron ...
"""
from __future__ import annotations

import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import os  # noqa: E402
if os.environ.get("MALLOPT"):  # before JAX starts its threads: one arena, no mmap, never trim
    import ctypes
    _libc = ctypes.CDLL("libc.so.6")
    assert _libc.mallopt(-8, 1) and _libc.mallopt(-4, 0) and _libc.mallopt(-1, 2**62)  # ARENA_MAX, MMAP_MAX, TRIM
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from iirsnn_jax import experiments, filters, layers, models, neurons, surrogate  # noqa: E402
from iirsnn_jax.training import optimizer as optimizer_lib  # noqa: E402
from iirsnn_jax.training import steps as steps_lib  # noqa: E402
import train_step as harness  # noqa: E402
import prototypes as P  # noqa: E402


@contextlib.contextmanager
def patched(patches):
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    try:
        for obj, name, new in patches:
            setattr(obj, name, new)
        yield
    finally:
        for obj, name, old in saved:
            setattr(obj, name, old)


def build(config, batch, patches, kind="train", options=None):
    """(compiled, state, batch arrays, memory analysis) of one variant."""
    with patched(patches):
        model = models.build_model(config.model, seed=config.seed)
        out_features = int(np.prod(model.output_shape))
        opt = optimizer_lib.make_optimizer(config.train, 1000)
        graphdef, state = steps_lib.create_train_state(model, opt, batch)
        state = jax.tree.map(lambda x: x.copy(), state)
        data = jax.device_put(harness.synthetic_batch(config, batch, int(config.data.length), out_features, 0))
        step = steps_lib.make_train_step(graphdef, opt, config.train.loss, config.seed)
        if kind == "train":
            fn = jax.jit(step, donate_argnums=0)
        else:
            def loss(params, st, b):
                m = nnx.merge(graphdef, params, st.constants)
                out = m(b["input"], key=jax.random.PRNGKey(0))
                per, _ = steps_lib._per_sample(out, b, config.train.loss)
                return per.mean()
            if kind == "fwd":
                fn = jax.jit(lambda st, b: (st, loss(st.params, st, b)))
            elif kind == "grad":
                fn = jax.jit(lambda st, b: (st, jax.grad(loss)(st.params, st, b)))
            elif kind == "grad_adam":  # grad + adam, without the metrics and finiteness check
                def f(st, b):
                    g = jax.grad(loss)(st.params, st, b)
                    u, o = opt.update(g, st.opt_state, st.params)
                    return st._replace(params=optax.apply_updates(st.params, u), opt_state=o), 0.0
                fn = jax.jit(f, donate_argnums=0)
        start = time.perf_counter()
        compiled = fn.lower(state, data).compile(compiler_options=options or None)
        compile_s = time.perf_counter() - start
    mem = compiled.memory_analysis()
    flops = compiled.cost_analysis().get("flops", float("nan"))
    return compiled, state, data, compile_s, getattr(mem, "temp_size_in_bytes", -1), flops


def main():
    name, batch, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    names = sys.argv[4:]
    config = experiments.load_config(name)
    for override in [n for n in names if "=" in n]:
        key, value = override.split("=")
        setattr(config.data if key == "length" else config.model, key, type(getattr(config.data if key == "length" else config.model, key))(value))
    names = [n for n in names if "=" not in n]
    built = {}
    for v in names:
        kind, patches, *options = P.VARIANTS[v]()
        built[v] = list(build(config, batch, patches, kind, options[0] if options else None))
        print(f"# built {v}: compile {built[v][3]:.1f}s temp {built[v][4] / 2**20:.0f} MiB", flush=True)
    times = {v: [] for v in names}
    cpu = {v: [] for v in names}
    for r in range(rounds + 1):
        for v in names:
            compiled, state, data = built[v][:3]
            t0, c0 = time.perf_counter(), time.process_time()
            state, out = compiled(state, data)
            jax.block_until_ready((state, out))
            if r:  # round 0 is warm-up
                times[v].append(time.perf_counter() - t0)
                cpu[v].append(time.process_time() - c0)
            built[v][1] = state
    base = statistics.median(times[names[0]])
    for v in names:
        med = statistics.median(times[v])
        print(json.dumps({"variant": v, "step_ms": round(med * 1e3, 1), "min_ms": round(min(times[v]) * 1e3, 1),
                          "cpu_ms": round(statistics.median(cpu[v]) * 1e3, 1),
                          "speedup_vs_first": round(base / med, 3), "compile_s": round(built[v][3], 1),
                          "temp_mib": round(built[v][4] / 2**20), "gflops": round(built[v][5] / 1e9, 2)}), flush=True)


if __name__ == "__main__":
    main()
