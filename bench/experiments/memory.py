"""Scratch: XLA's buffer assignment (temp bytes) of the train step for variants, compile only."""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from variants import build, experiments, P
name, batch = sys.argv[1], int(sys.argv[2])
for v in sys.argv[3:]:
    config = experiments.load_config(name)
    if v.startswith("T="):
        config.data.length = int(v[2:]); continue
    kind, patches, *opts = P.VARIANTS[v]()
    _, _, _, compile_s, temp, flops = build(config, batch, patches, kind, opts[0] if opts else None)
    print(f"{name} b{batch} {v:40s} temp {temp / 2**20:8.0f} MiB  compile {compile_s:.1f} s", flush=True)
