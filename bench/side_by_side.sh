#!/bin/bash
# Ours against the reference PyTorch code on this machine, alternating, ROUNDS times; then the table.
#
#     REF_MIRROR=/path/to/snn-iir/mirror bash bench/side_by_side.sh [ROUNDS] [OUT.jsonl]
#     OLD_ROOT=/tmp/main_head bash bench/side_by_side.sh 3      # also an older checkout of this repo
#
# Each round runs, per workload, the reference's own training step (../shared/bench/time_ref.py, which needs
# ../shared/bench/ref_venv.sh and a mirror of zhongyuchen/snn-iir) and ours (bench/train_step.py, defaults:
# huge pages on), one process each, one after the other; OLD_ROOT adds an older checkout's bench/train_step.py
# (the time-series shape has no reference: it is compared with OLD_ROOT only). The JSON lines go to OUT (default
# side_by_side.jsonl); bench/side_by_side_table.py prints medians, spreads and ratios from them.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
rounds=${1:-3}
out=${2:-side_by_side.jsonl}
python=${PYTHON:-$root/.venv/bin/python}
shared=${SHARED:-$root/../shared}
# shellcheck source=/dev/null
. "$shared/bench/ref_venv.sh" || exit 1

tag() { "$python" -c 'import json, sys; d = json.loads(sys.stdin.readlines()[-1]); d.update(workload=sys.argv[1], side=sys.argv[2], round=int(sys.argv[3])); print(json.dumps(d))' "$@"; }
reference() {  # NAME EXPERIMENT BATCH STEPS WARMUP
  local name=$1; shift
  "$REF_PY" "$shared/bench/time_ref.py" "$@" 2>/dev/null | tag "$name" reference "$round" >>"$out"
}
ours() {  # NAME FLAGS...: this checkout, then OLD_ROOT's
  local name=$1; shift
  (cd "$root" && "$python" bench/train_step.py "$@" 2>/dev/null) | tag "$name" ours "$round" >>"$out"
  if [ -n "${OLD_ROOT:-}" ]; then
    (cd "$OLD_ROOT" && "$python" bench/train_step.py "$@" 2>/dev/null) | tag "$name" old "$round" >>"$out"
  fi
}
for round in $(seq "$rounds"); do
  reference "snn_mlp_1 b64" snn_mlp_1 64 20 3
  ours "snn_mlp_1 b64" --config=configs/snn_mlp_1.py --batch=64 --steps=20
  reference "snn_conv_1_mnist b32" snn_conv_1_mnist 32 3 1
  ours "snn_conv_1_mnist b32" --config=configs/snn_conv_1_mnist.py --batch=32 --steps=3
  reference "snn_conv_1_nmnist b48" snn_conv_1_nmnist 48 3 1
  ours "snn_conv_1_nmnist b48" --config=configs/snn_conv_1_nmnist.py --batch=48 --steps=3
  ours "time series b64" --config=configs/snn_mlp_2.py --batch=64 --steps=20 --length=100 \
    --config.experiment=time_series "--config.model.layers=L N(256) L N(20)" "--config.model.input_shape=(700,)" \
    --config.train.cpu_scheduler=memory
done
"$python" "$here/side_by_side_table.py" "$out"
