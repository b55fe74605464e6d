#!/bin/bash
# The benchmarks to run on a GPU or TPU machine, in one go (device time is scarce): the suite of BASELINE.md,
# the larger batches an accelerator is for, and DVS Gesture at T = 50 with and without rematerialisation.
# One JSON line per row, appended to $OUT/accelerator.jsonl (or ./accelerator.jsonl).
#
#     bash bench/accelerator.sh            # uses the python on PATH; needs jax for the device, flax, optax,
#                                          # orbax-checkpoint, ml-collections, absl-py (no dataset)
set -u
out="${OUT:-.}/accelerator.jsonl"
python=${PYTHON:-python3}
bench() { timeout "${ROW_TIMEOUT:-240}" "$python" bench/train_step.py --out="$out" "$@" || echo "row failed: $*" >&2; }

"$python" -c "import jax; print(jax.__version__, jax.devices())"
bench --suite
# The filters' two solvers (model.scan): "auto" picks associative on accelerators without a measurement yet.
for scan in sequential associative; do
  bench --config=configs/snn_mlp_1.py --batch=64 --steps=20 --config.model.scan=$scan
  bench --config=configs/snn_conv_1_mnist.py --batch=32 --steps=10 --config.model.scan=$scan
  bench --config=configs/snn_conv_1_nmnist.py --batch=48 --steps=10 --config.model.scan=$scan
  bench --config=configs/snn_mlp_2.py --batch=64 --steps=20 --length=100 --config.experiment=time_series \
    "--config.model.layers=L N(256) L N(20)" "--config.model.input_shape=(700,)" --config.model.scan=$scan
done
for experiment in snn_conv_1_mnist snn_conv_1_nmnist; do
  bench --config=configs/$experiment.py --batch=256 --steps=10
done
for setting in "" "--config.model.remat=scans --config.model.remat_chunk=10" \
               "--config.model.remat=full --config.model.remat_chunk=10"; do
  for batch in 16 128; do
    bench --config=configs/snn_conv_1_gesture.py --batch=$batch --steps=10 $setting
  done
done
bench --config=configs/snn_conv_1_gesture.py --batch=128 --steps=10 --config.model.dtype=bfloat16
# The whole run next to its step (issue 13): train.py's own samples/s over the step's. MNIST needs the IDX
# files: carry an ignored folder (e.g. data/mnist, written by ../shared/data/mnist_idx.sh) with the tree.
whole() { timeout "${ROW_TIMEOUT:-600}" "$python" bench/whole_run.py --out="$out" "$@" || echo "row failed: $*" >&2; }
whole --config=configs/digits.py --epochs=6 --pairs=2 --steps=1000
# The loop's host time per step (no network): the shortest step the host keeps fed.
host() { timeout "${ROW_TIMEOUT:-300}" "$python" bench/host_loop.py --out="$out" "$@" || echo "row failed: $*" >&2; }
host --config=configs/digits.py --epochs=6
if [ -d "${MNIST:-data/mnist}" ]; then
  whole --config=configs/snn_mlp_1.py --epochs=3 --steps=200 --config_overrides=--config.data.root="${MNIST:-data/mnist}"
  host --config=configs/snn_mlp_1.py --epochs=3 --config.data.root="${MNIST:-data/mnist}"
fi
