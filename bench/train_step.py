"""Times one jitted training step (forward, backward, optimizer update) on synthetic inputs; one JSON line.

    python bench/train_step.py --config=configs/snn_mlp_1.py                  # the config's batch and T
    python bench/train_step.py --config=configs/snn_conv_1_mnist.py --batch=32 --steps=3
    python bench/train_step.py --config=configs/snn_conv_1_gesture.py --batch=16 --length=50
    python bench/train_step.py --config=configs/snn_mlp_1.py --config.model.dtype=bfloat16   # any override
    python bench/train_step.py --config=configs/snn_conv_1_nmnist.py --config.train.microbatches=3
    python bench/train_step.py --config=configs/snn_conv_1_gesture.py --batch=16 --config.model.remat=full \
        --config.model.remat_chunk=10                                                # rematerialisation
    python bench/train_step.py --suite --out=bench/results.jsonl              # BASELINE.md's rows + time series
    python bench/train_step.py --suite --nohuge_pages --nokeep_buffers         # glibc's default memory
    python bench/train_step.py --config=configs/snn_mlp_1.py --config.model.scan=associative
    python bench/train_step.py --config=configs/snn_mlp_1.py --input=pipeline               # the step as train.py runs it

The step is the one train.py runs: `steps.make_train_step` with `optimizer.make_optimizer`, jitted with
`donate_argnums=0`. With --input=network (the default: the model's step, what the reference's step does), inputs
have the experiment's shape [B, T, *model.input_shape] and the network's dtype: analog uniform [0, 1) float32
for "copy" MNIST/digits (one frame held for T steps, the HeldInput train.py's network gets), Bernoulli events
with 2 % density for the event encodings (bool for "or", uint8 for "poisson" and the associative-memory
patterns, float32 counts for "max"/"avg"). With --input=pipeline the batch holds what the host pipeline hands
over (uint8 pixels, packed event bits, uint16 counts: random, events at 2 % density) and the step makes the
network input first, augmentation and encoding included, exactly as train.py's step does
(data.make_input_fn): bench/whole_run.py divides the loop's speed by this one.
Labels are random, the mask is ones, and MSE configs get a random filtered_target [B, T, N].

Fields: compile_s (trace + lower + XLA compile), step_ms (median over --steps timed steps after --warmup),
samples_per_s, peak_mem_mb (host peak RSS of this process on CPU, so --suite runs every row in its own process;
peak_bytes_in_use of the device on an accelerator), flops (XLA's cost analysis of the compiled step; it counts a
scan body once, not T times, so the elementwise recurrences are undercounted while the matmuls and convs outside
the scans are exact; XLA's GPU cost analysis also leaves out the cuBLAS and cuDNN calls, so on a GPU flops and
utilisation undercount: docs/performance.md divides the CPU count instead), matmul_gflops (the best of 10 jitted
2048x2048 float32 matmuls in this process, 8192x8192 on an accelerator), utilisation = flops / step time / matmul
FLOP/s, device, huge_pages (whether glibc puts malloc's memory on transparent huge pages, the default:
iirsnn_jax/hugepages.py), keep_buffers (whether XLA's large buffers stay mapped between steps, the default:
iirsnn_jax/native/buffer_cache.py), scan (the filters' solver that model.scan resolved to) and cpu_scheduler
(train.cpu_scheduler, XLA's scheduler on CPU; null on an accelerator). The machines are
shared and noisy: compare ratios measured in one run. A flag value that cannot be benchmarked (--batch=0,
--steps=0, ...) or a bad config value is one line on stderr and exit status 2, without a traceback.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # configs import `configs.default`; the library is imported from the checkout

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from iirsnn_jax import hugepages  # noqa: E402
from iirsnn_jax.native import buffer_cache  # noqa: E402

import json_line  # noqa: E402  (bench/, the script's folder)

config_flags.DEFINE_config_file("config", None, "experiment config (configs/<experiment>.py)", lock_config=True)
flags.DEFINE_integer("batch", None, "batch size (default: the config's train.batch_size)")
flags.DEFINE_integer("length", None, "time steps T (default: the config's data.length)")
flags.DEFINE_integer("steps", 10, "timed steps (the median is reported)")
flags.DEFINE_integer("warmup", 2, "untimed steps after compilation")
flags.DEFINE_bool("suite", False, "run the rows of BASELINE.md and the time-series shape, each in its own process")
flags.DEFINE_string("out", None, "append the JSON lines to this file")
flags.DEFINE_integer("seed", 0, "seed of the synthetic batch")
flags.DEFINE_enum("input", "network", ["network", "pipeline"],
                  "network: pre-encoded network inputs (the model's step); pipeline: the pipeline's compact arrays, "
                  "decoded, encoded and augmented inside the step as train.py does")
flags.DEFINE_bool("huge_pages", True, "run with transparent huge pages for XLA's buffers (iirsnn_jax/hugepages.py); "
                  "--nohuge_pages for glibc's default")
flags.DEFINE_bool("keep_buffers", True, "keep XLA's large buffers mapped between steps "
                  "(iirsnn_jax/native/buffer_cache.py); --nokeep_buffers maps them afresh every step")
FLAGS = flags.FLAGS

# (experiment, batch, timed steps, config overrides): the rows of shared/reference/BASELINE.md, each at its
# config's T, plus N-MNIST batch 48 with the gradient accumulated over 3 slices of 16 (train.microbatches),
# plus the time-series shape (Spiking Heidelberg Digits: 700 input channels, T 100), coefficients trained.
# The time-series shape of issue 14, on snn_mlp_2's config with the default scheduler (as configs/shd.py: this
# shape's step is up to 1.15x slower with the concurrency-optimised one that snn_mlp_2 chooses).
TIME_SERIES = ("--config.experiment=time_series", "--config.model.layers=L N(256) L N(20)",
               "--config.model.input_shape=(700,)", "--length=100", "--config.train.cpu_scheduler=memory")
SUITE = (
    ("snn_mlp_1", 64, 20, ()), ("snn_mlp_1", 32, 20, ()),
    ("snn_conv_1_mnist", 32, 3, ()), ("snn_conv_1_mnist", 64, 3, ()),
    ("snn_conv_1_nmnist", 48, 3, ()), ("snn_conv_1_nmnist", 48, 3, ("--config.train.microbatches=3",)),
    ("snn_conv_1_nmnist", 32, 3, ()),
    ("snn_mlp_2", 64, 20, TIME_SERIES),
)
EVENT_DENSITY = 0.02
IMAGE_SHAPE = {"mnist": (28, 28), "digits": (8, 8)}  # what the pipeline hands over; the network may flatten it


def synthetic_batch(config, batch: int, length: int, output_features: int, seed: int) -> dict:
    """A batch of the pipeline's keys, shapes and dtypes (see the module docstring)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (batch, length, *config.model.input_shape)
    encoding = config.data.encoding
    if config.data.name == "patterns" or encoding == "poisson":
        inputs = (rng.random(shape) < EVENT_DENSITY).astype(np.uint8)
    elif encoding == "or":
        inputs = rng.random(shape) < EVENT_DENSITY
    elif encoding in ("max", "avg"):
        inputs = (rng.random(shape) < EVENT_DENSITY).astype(np.float32)
    else:  # "copy": analog pixels in [0, 1), one frame held for T steps (iirsnn_jax/held_input.py)
        from iirsnn_jax.held_input import HeldInput

        inputs = HeldInput(rng.random((batch, *config.model.input_shape), dtype=np.float32), length)
    out = {"input": inputs, "label": rng.integers(0, output_features, batch).astype(np.int32),
           "mask": np.ones(batch, np.float32)}
    if config.train.loss == "mse":
        out["filtered_target"] = rng.random((batch, length, output_features), dtype=np.float32)
    return out


def synthetic_pipeline_batch(config, batch: int, output_features: int, seed: int) -> dict:
    """A batch as the host pipeline hands it to train.py's step (data/device_encoding.py lists the forms):
    uint8 pixels, digits' intensities, packed event bits or uint16 counts, with the rows' split (train), epoch
    and index that key the step's random draws."""
    import numpy as np

    from iirsnn_jax.data import device_encoding

    spec = device_encoding.input_spec(config)
    rng = np.random.default_rng(seed)
    if spec.name == "mnist":
        inputs = rng.integers(0, 256, (batch, *IMAGE_SHAPE["mnist"]), dtype=np.uint8)
    elif spec.name == "digits":
        inputs = rng.random((batch, *IMAGE_SHAPE["digits"]), dtype=np.float32)
    elif spec.name in ("nmnist", "gesture") and spec.encoding == "or":
        events = rng.random((batch, int(np.prod(spec.frame_shape)))) < EVENT_DENSITY
        inputs = np.packbits(events, axis=-1)
    elif spec.name in ("nmnist", "gesture"):
        inputs = (rng.random((batch, *spec.frame_shape)) < EVENT_DENSITY).astype(np.uint16)
    else:  # patterns and time series: the pipeline hands over the network input itself
        return synthetic_batch(config, batch, int(config.data.length), output_features, seed)
    out = synthetic_batch(config, batch, 1, output_features, seed)
    out.update(input=inputs, split=np.zeros(batch, np.int32), epoch=np.zeros(batch, np.int32),
               index=np.arange(batch, dtype=np.int32))
    return out


def matmul_flops_per_s(n: int | None = None, repeats: int = 10) -> float:
    """Dense float32 matmul FLOP/s (JAX's default precision, as the step's) of the default device, measured now
    (best of `repeats`). n defaults to 2048 on CPU and 8192 elsewhere: a 2048 product takes tens of microseconds
    on a GPU, about its launch and synchronisation time, which would halve the rate."""
    import jax
    import jax.numpy as jnp

    n = n or (2048 if jax.default_backend() == "cpu" else 8192)
    a = jax.random.uniform(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.uniform(jax.random.PRNGKey(1), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2.0 * n ** 3 / min(times)  # the ceiling: the fastest repeat, least disturbed by other load


def _cost_flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", float("nan")))


def _peak_memory_mb(device) -> float:
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return stats["peak_bytes_in_use"] / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def benchmark(config, batch: int, length: int, steps: int, warmup: int, seed: int = 0,
              pipeline_input: bool = False) -> dict:
    import jax
    import numpy as np

    from iirsnn_jax import data, models
    from iirsnn_jax.training import optimizer as optimizer_lib
    from iirsnn_jax.training import compiler, steps as steps_lib

    device = jax.devices()[0]
    model = models.build_model(config.model, seed=config.seed)
    output_features = int(np.prod(model.output_shape))
    optimizer = optimizer_lib.make_optimizer(config.train, steps_per_epoch=1000)
    graphdef, state = steps_lib.create_train_state(model, optimizer, batch)
    parameters = models.count_trainable_parameters(model)
    model_scan = model.scan
    del model
    input_fn = data.make_input_fn(config) if pipeline_input else None
    train_step = jax.jit(steps_lib.make_train_step(graphdef, optimizer, config.train.loss, config.seed,
                                                   config.train.microbatches, input_fn),
                         donate_argnums=0,
                         compiler_options=compiler.compiler_options(scheduler=config.train.cpu_scheduler))
    host_batch = (synthetic_pipeline_batch(config, batch, output_features, seed) if pipeline_input
                  else synthetic_batch(config, batch, length, output_features, seed))
    batch_arrays = jax.device_put(host_batch)

    start = time.perf_counter()
    compiled = train_step.lower(state, batch_arrays).compile()
    compile_s = time.perf_counter() - start
    flops = _cost_flops(compiled)

    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        state, sums = compiled(state, batch_arrays)
        jax.block_until_ready((state, sums))
        if i >= warmup:
            times.append(time.perf_counter() - start)
    if not np.isfinite(float(sums["loss_sum"])):
        raise FloatingPointError("the benchmarked step produced a non-finite loss")
    step_s = statistics.median(times)
    peak_mb = _peak_memory_mb(device)  # before the matmul probe, whose 8192x8192 operands would count on a GPU
    matmul = matmul_flops_per_s()
    return {
        "experiment": config.experiment, "batch": batch, "length": length, "steps": steps,
        "compile_s": round(compile_s, 3), "step_ms": round(step_s * 1e3, 3),
        "step_ms_min": round(min(times) * 1e3, 3), "samples_per_s": round(batch / step_s, 3),
        "peak_mem_mb": round(peak_mb, 1), "flops": flops,
        "flops_per_sample": flops / batch, "matmul_gflops": round(matmul / 1e9, 2),
        "utilisation": round(flops / step_s / matmul, 4), "parameters": parameters,
        "microbatches": int(config.train.microbatches), "remat": config.model.remat,
        "remat_chunk": int(config.model.remat_chunk), "dtype": config.model.dtype,
        "device": f"{device.platform}:{device.device_kind}",
        "device_count": jax.device_count(), "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""), "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "huge_pages": hugepages.active(), "keep_buffers": buffer_cache.active(), "scan": model_scan,
        "cpu_scheduler": config.train.cpu_scheduler if device.platform == "cpu" else None,
        "input": "pipeline" if pipeline_input else "network",
    }


def run_suite(out: str | None, warmup: int, huge_pages: bool, keep_buffers: bool) -> None:
    """Every row in a fresh process, so each peak RSS is that row's own."""
    for experiment, batch, steps, overrides in SUITE:
        command = [sys.executable, str(Path(__file__).resolve()), f"--config={ROOT / 'configs' / experiment}.py",
                   f"--batch={batch}", f"--steps={steps}", f"--warmup={warmup}", f"--huge_pages={huge_pages}",
                   f"--keep_buffers={keep_buffers}", *overrides]
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        lines = result.stdout.strip().splitlines()
        if result.returncode or not lines:
            line = json.dumps({"experiment": experiment, "batch": batch, "error": result.stderr[-2000:]})
        else:
            line = lines[-1]
        json_line.emit(line, out)


def _check_flags(config) -> tuple[int, int]:
    """(batch, length), or one line on stderr and exit 2 for a value that cannot be benchmarked."""
    batch = int(config.train.batch_size) if FLAGS.batch is None else FLAGS.batch
    length = int(config.data.length) if FLAGS.length is None else FLAGS.length
    if FLAGS.input == "pipeline" and length != int(config.data.length):
        _fail(f"--input=pipeline encodes data.length={int(config.data.length)} steps: give "
              f"--config.data.length={length} instead of --length={length}")
    for name, value, least in (("--batch", batch, 1), ("--length", length, 1), ("--steps", FLAGS.steps, 1),
                               ("--warmup", FLAGS.warmup, 0)):
        if value < least:
            _fail(f"{name}={value}: must be at least {least}")
    microbatches = int(config.train.microbatches)
    if microbatches < 1 or batch % microbatches:
        _fail(f"--config.train.microbatches={microbatches} must be at least 1 and divide the batch size {batch}")
    return batch, length


def _fail(message: str):
    print(f"bench/train_step.py: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.suite:
        if FLAGS.steps < 1 or FLAGS.warmup < 0:
            _fail(f"--steps must be at least 1 and --warmup at least 0, got {FLAGS.steps} and {FLAGS.warmup}")
        hugepages.ensure(FLAGS.huge_pages, FLAGS.keep_buffers)
        run_suite(FLAGS.out, FLAGS.warmup, FLAGS.huge_pages, FLAGS.keep_buffers)
        return
    config = FLAGS.config
    if config is None:
        _fail("give --config=configs/<experiment>.py or --suite")
    batch, length = _check_flags(config)
    hugepages.ensure(FLAGS.huge_pages, FLAGS.keep_buffers)
    try:
        result = benchmark(config, batch, length, FLAGS.steps, FLAGS.warmup, FLAGS.seed, FLAGS.input == "pipeline")
    except ValueError as error:  # the library's config checks (layers, dtype, scan, ...): one line, no traceback
        _fail(f"bad config: {error}")
    json_line.emit(result, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
