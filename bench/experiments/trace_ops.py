"""Scratch: per-HLO-op time of one train step from a jax.profiler trace, with each op's shape and computation.

    python bench/experiments/trace_ops.py snn_conv_1_mnist 32 [variant]
"""
import collections, glob, re, shutil, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax
from jax.profiler import ProfileData
from variants import build
import prototypes as P
from iirsnn_jax import experiments

name, batch = sys.argv[1], int(sys.argv[2])
variant = sys.argv[3] if len(sys.argv) > 3 else "base"
config = experiments.load_config(name)
kind, patches, *opts = P.VARIANTS[variant]()
compiled, state, data, *_ = build(config, batch, patches, kind, opts[0] if opts else None)
hlo = compiled.as_text()
Path(f"/tmp/bench/{name}_{variant}.hlo.txt").write_text(hlo)
info, comp = {}, None
for line in hlo.splitlines():
    m = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
    if m and not line.startswith(" "):
        comp = m.group(1)
    m = re.match(r"^\s+(?:ROOT )?%?([\w.\-]+) = (\S+) (\w[\w\-]*)\(", line)
    if m:
        kindm = re.search(r"kind=(\w+)", line)
        info[m.group(1)] = (comp, m.group(2)[:40], m.group(3) + ("/" + kindm.group(1) if kindm else ""))
for _ in range(2):
    state, out = compiled(state, data); jax.block_until_ready(out)
d = f"/tmp/bench/trace_{name}_{variant}"
shutil.rmtree(d, ignore_errors=True)
jax.profiler.start_trace(d)
t = time.perf_counter()
state, out = compiled(state, data); jax.block_until_ready(out)
wall = time.perf_counter() - t
jax.profiler.stop_trace()
pd = ProfileData.from_file(glob.glob(f"{d}/**/*.xplane.pb", recursive=True)[-1])
agg, cnt = collections.Counter(), collections.Counter()
for plane in pd.planes:
    for line in plane.lines:
        if not line.name.startswith("tf_XLAEigen"):
            continue
        for ev in line.events:
            if ev.name in info:
                agg[ev.name] += ev.duration_ns; cnt[ev.name] += 1
print(f"step wall {wall*1e3:.0f} ms; op time summed over threads (while ops include their bodies)")
bycomp = collections.Counter()
for k, v in agg.items():
    if not info[k][2].startswith("while"):
        bycomp[info[k][0]] += v
print("by computation (leaf ops):")
for k, v in bycomp.most_common(25):
    print(f"  {v/1e6:8.1f} ms  {k}")
byop = collections.Counter()
for k, v in agg.items():
    if not info[k][2].startswith("while"):
        byop[info[k][2]] += v
print("by op kind (leaf ops):")
for k, v in byop.most_common(15):
    print(f"  {v/1e6:8.1f} ms  {k}")
print("top ops:")
for k, v in agg.most_common(int(sys.argv[4]) if len(sys.argv) > 4 else 45):
    c, shape, op = info[k]
    print(f"  {v/1e6:8.1f} ms x{cnt[k]:<4d} {k[:32]:32s} {op[:26]:26s} {shape:40s} in {c[:40]}")
