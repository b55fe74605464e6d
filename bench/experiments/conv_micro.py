"""Scratch: forward+backward time of the conv layers of snn_conv_1_mnist (N = T*B frames), three formulations."""
import os, sys, time, statistics
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent)); sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import jax, jax.numpy as jnp
from prototypes import _patches

N = int(sys.argv[1]) if len(sys.argv) > 1 else 800
LAYERS = [(28, 1, 32), (28, 32, 32), (28, 32, 64), (14, 64, 64)]

def lax_conv(x, k):
    return jax.lax.conv_general_dilated(x, k, (1, 1), [(1, 1), (1, 1)], dimension_numbers=("NHWC", "HWIO", "NHWC"))

def im2col(x, k):
    kh, kw, ci, co = k.shape
    return _patches(x, kh, kw, 1, 1, x.shape[1], x.shape[2]) @ k.reshape(-1, co)

def taps(x, k):
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h, w = x.shape[1:3]
    return sum(xp[:, i:i + h, j:j + w, :] @ k[i, j] for i in range(3) for j in range(3))

def bench(fn, args, reps=4):
    fn(*args); ts = []
    for _ in range(reps):
        t = time.perf_counter(); jax.block_until_ready(fn(*args)); ts.append(time.perf_counter() - t)
    return statistics.median(ts)

total = {}
for hw, ci, co in LAYERS:
    x = jax.random.uniform(jax.random.PRNGKey(0), (N, hw, hw, ci)); k = jax.random.uniform(jax.random.PRNGKey(1), (3, 3, ci, co))
    fl = 2 * N * hw * hw * ci * co * 9
    row = []
    for name, f in (("lax", lax_conv), ("im2col", im2col), ("taps", taps)):
        fwd = jax.jit(f)
        g = jax.jit(lambda x, k, f=f: jax.vjp(f, x, k)[1](jnp.ones((N, hw, hw, co))))
        both = jax.jit(lambda x, k, f=f: jax.grad(lambda x, k: (f(x, k) * 0.5).sum(), (0, 1))(x, k))
        tf, tb = bench(fwd, (x, k)), bench(both, (x, k))
        total[name] = total.get(name, 0) + tb
        row.append(f"{name} fwd {tf*1e3:6.1f} ms ({fl/tf/1e9:4.0f} GF/s) fwd+bwd {tb*1e3:6.1f} ms ({3*fl/tb/1e9:4.0f} GF/s)")
    print(f"{hw}x{hw} {ci:2d}->{co:2d}: " + " | ".join(row), flush=True)
print(os.environ.get("XLA_FLAGS", "")[:60], {k: round(v * 1e3) for k, v in total.items()})
