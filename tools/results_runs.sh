#!/usr/bin/env bash
# The training runs of docs/results.md (issue 15). Each starts, or resumes where it stopped (the same
# command), in the background at nice 19, in RUNS/<experiment>, its output appended to RUNS/<experiment>.log.
#
#   tools/results_runs.sh [RUNS [MNIST]] EXPERIMENT...   run these one after another (2 cores: one at a time)
#   tools/results_runs.sh [RUNS [MNIST]] status          epochs done per workdir, and which run is live
#
# EXPERIMENT@SEED (snn_mlp_2@0) trains with --config.seed=SEED in RUNS/<experiment>_seed<SEED>: the seed
# spread of docs/results.md. A plain EXPERIMENT keeps the config's seed (2, the reference's, for MNIST).
#
# RUNS: the workdirs' folder, outside the repository (default /work/runs). MNIST: --config.data.root, a
# folder with the four IDX files (default /work/data/mnist; ../shared/data/mnist_idx.sh DIR writes them). Both are
# paths with a slash (./runs for a relative one), so that a misspelt experiment is not taken for a folder.
# EXPERIMENT: snn_mlp_1 snn_mlp_2 snn_mlp_1_non_zero snn_mlp_1_poisson_input snn_mlp_2_poisson_input
# associative_memory snn_conv_1_mnist. Stop a run with `kill -TERM PID` (status shows PID): it saves a
# checkpoint and exits, the queue stops with it; the same command resumes it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py="$repo/.venv/bin/python"
experiments=(snn_mlp_1 snn_mlp_2 snn_mlp_1_non_zero snn_mlp_1_poisson_input snn_mlp_2_poisson_input
             associative_memory snn_conv_1_mnist)
runs=/work/runs
if [[ ${1:-} == */* ]]; then runs=$1; shift; fi
mnist=/work/data/mnist
if [[ ${1:-} == */* ]]; then mnist=$1; shift; fi
runs=$(realpath -m "$runs") mnist=$(realpath -m "$mnist")

case "$runs/" in
  "$repo"/*) echo "error: RUNS ($runs) is inside the repository; use a folder outside it" >&2; exit 1;;
esac

# One experiment in the foreground (the queue below puts it in the background). Huge pages make XLA's large
# per-step buffers cheap on CPU (docs/performance.md).
# train NAME SEED [FLAGS...]: SEED empty keeps the config's seed.
train() {
  local name=$1 seed=$2 run=$1; shift 2
  if [ -n "$seed" ]; then run="${name}_seed$seed"; set -- "$@" --config.seed="$seed"; fi
  echo "=== $(date '+%F %T') start or resume $run" >> "$runs/$run.log"
  (cd "$repo" && GLIBC_TUNABLES=glibc.malloc.hugetlb=1 nice -n 19 "$py" train.py --config="configs/$name.py" \
    --workdir="$runs/$run" --config.train.progress_bar=False "$@") >> "$runs/$run.log" 2>&1
}

snn_mlp_1() { train snn_mlp_1 "$1" --config.data.root="$mnist"; }
snn_mlp_2() { train snn_mlp_2 "$1" --config.data.root="$mnist"; }
snn_mlp_1_non_zero() { train snn_mlp_1_non_zero "$1" --config.data.root="$mnist"; }
snn_mlp_1_poisson_input() { train snn_mlp_1_poisson_input "$1" --config.data.root="$mnist"; }
snn_mlp_2_poisson_input() { train snn_mlp_2_poisson_input "$1" --config.data.root="$mnist"; }
associative_memory() { train associative_memory "$1"; }
# An epoch of the conv net is ~780 steps of several seconds: also save mid-epoch, so a crash loses little.
snn_conv_1_mnist() { train snn_conv_1_mnist "$1" --config.data.root="$mnist" --config.train.checkpoint_every_steps=100; }

status() {
  ls "$runs"/*/config.json >/dev/null 2>&1 || { echo "no runs in $runs yet"; return; }
  for dir in "$runs"/*/; do
    [ -f "$dir/config.json" ] || continue
    "$py" - "$dir" <<'PY'
import json, os, sys
d = sys.argv[1]
records = []
for line in open(os.path.join(d, "metrics.jsonl")) if os.path.exists(os.path.join(d, "metrics.jsonl")) else []:
    try:
        records.append(json.loads(line))
    except ValueError:  # a line cut off by a crash
        pass
dev = {r["epoch"]: r for r in records if r.get("split") == "dev"}  # the last record of an epoch counts
tests = [r for r in records if r.get("split") == "test"]
text = f"{os.path.basename(d.rstrip('/'))}: {len(dev)}/{json.load(open(d + '/config.json'))['train']['epochs']} epochs"
key, scale = ("accuracy", 100) if "accuracy" in next(iter(dev.values()), {"accuracy": 0}) else ("loss", 1)
if dev:
    text += f", last dev {key} {scale * dev[max(dev)][key]:.4g} (epoch {max(dev)})"
try:
    pid = json.load(open(os.path.join(d, "run.lock")))["pid"]
    os.kill(pid, 0)
    text += f"; running, pid {pid}"
except (OSError, ValueError, KeyError):
    text += f"; finished, test {key} {scale * tests[-1][key]:.4g}" if tests else "; stopped"
print(text)
PY
  done
}

[ $# -eq 0 ] && set -- status
if [ "$1" = status ]; then status; exit 0; fi
for spec in "$@"; do
  name=${spec%@*}
  [[ " ${experiments[*]} " == *" $name "* ]] || { echo "error: $name is not one of: ${experiments[*]}" >&2; exit 1; }
  [[ $spec != *@* || ${spec#*@} =~ ^[0-9]+$ ]] || {
    echo "error: the seed in $spec is not a non-negative integer (EXPERIMENT@SEED, e.g. snn_mlp_2@0)" >&2; exit 1; }
  [ "$name" = associative_memory ] || [ -d "$mnist" ] || {
    echo "error: no MNIST folder $mnist; write it with ../shared/data/mnist_idx.sh $mnist" >&2; exit 1; }
done
mkdir -p "$runs"
# The queue stops at the first run that fails or is stopped (SIGTERM), so the next does not start in its place.
(trap '' HUP; for spec in "$@"; do
   seed=; [[ $spec == *@* ]] && seed=${spec#*@}
   "${spec%@*}" "$seed" || break
 done) </dev/null >/dev/null 2>&1 &
echo "started in the background (queue pid $!): $*; logs: $runs/<experiment>.log (<experiment>_seed<N>.log for EXPERIMENT@N); progress: $0 $runs $mnist status"
