#!/bin/bash
# The benchmarks to run on a GPU or TPU machine, in one go (device time is scarce), most wanted first: the
# filters' two solvers on the four workloads of issue 14, the larger batches an accelerator is for, the whole
# run next to its step, DVS Gesture at T = 50 with and without rematerialisation, and BASELINE.md's suite.
# One JSON line per row, appended to $OUT/accelerator.jsonl (or ./accelerator.jsonl).
#
#     bash bench/accelerator.sh            # uses the python on PATH; needs jax for the device, flax, optax,
#                                          # orbax-checkpoint, ml-collections, absl-py, tqdm, tensorboardX
#     DEADLINE_S=480 bash bench/accelerator.sh   # start no row after 480 s, and cut the last one off there
set -u
out="${OUT:-.}/accelerator.jsonl"
python=${PYTHON:-python3}
deadline=${DEADLINE_S:-100000}
# timeout LIMIT COMMAND..., LIMIT cut to the time left before the deadline; a row that cannot start is skipped.
bounded() {
  local limit=$1 left=$((deadline - SECONDS)); shift
  if [ "$left" -lt 20 ]; then echo "row skipped (deadline): $*" >&2; return; fi
  [ "$left" -lt "$limit" ] && limit=$left
  timeout "$limit" "$@" || echo "row failed or cut off: $*" >&2
}
bench() { bounded "${ROW_TIMEOUT:-240}" "$python" bench/train_step.py --out="$out" "$@"; }
whole() { bounded "${ROW_TIMEOUT:-600}" "$python" bench/whole_run.py --out="$out" "$@"; }
host() { bounded "${ROW_TIMEOUT:-300}" "$python" bench/host_loop.py --out="$out" "$@"; }

"$python" -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
# The filters' two solvers (model.scan) on issue 14's workloads; "auto" picks associative on accelerators.
for scan in sequential associative; do
  bench --config=configs/snn_mlp_1.py --batch=64 --steps=20 --config.model.scan=$scan
  bench --config=configs/snn_conv_1_mnist.py --batch=32 --steps=20 --config.model.scan=$scan
  bench --config=configs/snn_conv_1_nmnist.py --batch=48 --steps=20 --config.model.scan=$scan
  bench --config=configs/snn_mlp_2.py --batch=64 --steps=20 --length=100 --config.experiment=time_series \
    "--config.model.layers=L N(256) L N(20)" "--config.model.input_shape=(700,)" --config.model.scan=$scan
done
# The golden checks (float64, exact spikes) and the solvers' equality on this device's kernels: the golden files
# travel only where IIRSNN_GOLDEN_DIR names a copy beside the tree.
if [ -d "${IIRSNN_GOLDEN_DIR:-}" ]; then
  bounded "${TEST_TIMEOUT:-200}" "$python" -m pytest -q -x -p no:cacheprovider tests/test_golden_layers.py \
    tests/test_golden_networks.py tests/test_gradients.py 2>&1 | tail -15
fi
for experiment in snn_conv_1_mnist snn_conv_1_nmnist; do
  bench --config=configs/$experiment.py --batch=256 --steps=10
done
# The whole run next to its step (issue 13): train.py's own samples/s over the step's. MNIST needs the IDX
# files: carry an ignored folder (e.g. data/mnist, written by ../shared/data/mnist_idx.sh) with the tree.
whole --config=configs/digits.py --epochs=4 --pairs=1 --steps=200
# The loop's host time per step (no network): the shortest step the host keeps fed.
host --config=configs/digits.py --epochs=4
if [ -d "${MNIST:-data/mnist}" ]; then
  whole --config=configs/snn_mlp_1.py --epochs=3 --steps=200 --config_overrides=--config.data.root="${MNIST:-data/mnist}"
  host --config=configs/snn_mlp_1.py --epochs=3 --config.data.root="${MNIST:-data/mnist}"
fi
for setting in "" "--config.model.remat=scans --config.model.remat_chunk=10" \
               "--config.model.remat=full --config.model.remat_chunk=10"; do
  for batch in 16 128; do
    bench --config=configs/snn_conv_1_gesture.py --batch=$batch --steps=10 $setting
  done
done
bench --config=configs/snn_conv_1_gesture.py --batch=128 --steps=10 --config.model.dtype=bfloat16
bench --suite
