#!/bin/bash
# Scratch: base vs optimised prototypes, each row in its own processes, alternating, with and without huge pages.
cd "$(dirname "$0")/../.."
OUT=${1:-/tmp/bench/compare.jsonl}
H=glibc.malloc.hugetlb=1
for row in "snn_mlp_1 64 30" "snn_mlp_1 32 30" "snn_conv_1_mnist 32 3" "snn_conv_1_mnist 64 2" "snn_conv_1_nmnist 48 2" "snn_conv_1_nmnist 32 2"; do
  for v in base all3v2+noynn; do
    for g in "" "$H"; do
      GLIBC_TUNABLES=$g .venv/bin/python bench/experiments/run_variant.py $row $v 2>/dev/null | tail -1 >> "$OUT"
    done
  done
done
