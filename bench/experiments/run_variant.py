"""Scratch: one variant of one workload in its own process (peak RSS is its own), harness-style JSON line.

    python bench/experiments/run_variant.py snn_conv_1_mnist 32 3 all3+noynn
"""
import json, resource, statistics, sys, time, os
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from variants import build, experiments, P, harness
import jax

name, batch, steps, variant = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
config = experiments.load_config(name)
if len(sys.argv) > 5:
    config.data.length = int(sys.argv[5])
kind, patches, *opts = P.VARIANTS[variant]()
compiled, state, data, compile_s, temp, flops = build(config, batch, patches, kind, opts[0] if opts else None)
times = []
for i in range(steps + 1):
    t = time.perf_counter()
    state, out = compiled(state, data)
    jax.block_until_ready((state, out))
    if i:
        times.append(time.perf_counter() - t)
step = statistics.median(times)
mm = harness.matmul_flops_per_s()
print(json.dumps({"experiment": name, "batch": batch, "variant": variant, "step_ms": round(step * 1e3, 1),
                  "samples_per_s": round(batch / step, 2), "compile_s": round(compile_s, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "temp_mib": round(temp / 2**20), "utilisation": round(flops / step / mm, 3),
                  "matmul_gflops": round(mm / 1e9), "glibc": os.environ.get("GLIBC_TUNABLES", "")}), flush=True)
