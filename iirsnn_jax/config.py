"""The config schema: every field, what it means, and its reference value; and a run's saved config.

`default_config()` is the schema with the defaults shared by every experiment; the experiment files in the
repository's configs/ folder start from it (configs/default.py re-exports it) and override fields. Configs are
locked by train.py, so a misspelt key on the command line is an error. A network is data: `model.layers` in
the notation of iirsnn_jax/architecture.py (and of SPEC.md).

`read_run_config(workdir)` reads the config.json that train.py saved in a run's workdir, over today's
defaults; it needs nothing outside this package, so eval.py, the plots and the NIR export work on a workdir
from any folder.
"""
from __future__ import annotations

import json

import ml_collections
from etils import epath


def default_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "default"  # experiment name, as in SPEC.md section 0
    config.seed = 2  # the reference's torch/numpy seed; we seed parameters, dropout and shuffling from it

    model = config.model = ml_collections.ConfigDict()
    model.layers = "F N(500) D F N(500) D F N(10)"  # see iirsnn_jax/architecture.py
    model.input_shape = (784,)  # per-sample input shape in our layout: (N,) or (H, W, C)
    model.tau_m = 4.0  # synapse filter and neuron reset time constant (steps)
    model.tau_s = 1.0  # synapse filter fast time constant (steps)
    model.output_tau_m = 8.0  # output filter `O` slow time constant (associative memory)
    model.output_tau_s = 2.0  # output filter `O` fast time constant
    model.train_coefficients = True  # train the per-element filter coefficients (True in every experiment)
    model.train_bias = True  # dense and conv layers have a trained bias
    model.membrane_filter = False  # v[t] += decay_v * v[t-1]; False everywhere in the reference (yaml typo)
    model.reset_v = 1.0  # reset trace increment per spike
    model.threshold = 1.0  # firing threshold (hard-coded 1.0 in the reference)
    model.surrogate = "gaussian"  # gaussian | fast_sigmoid | atan | triangle (iirsnn_jax/surrogate.py)
    model.surrogate_width = 0.4  # sigma of the reference's Gaussian surrogate
    model.dropout_rate = 0.3  # rate of every `D` layer (hard-coded 0.3 in the reference)
    model.preserve_state = False  # carry layer states across batches (snn_mlp_1_non_zero)
    # Rematerialisation, to trade compute for memory on long sequences (iirsnn_jax/models.py): the network
    # runs in chunks of remat_chunk time steps (0 = all T), and the backward pass recomputes each chunk from
    # its input, keeping "scans": the dense/conv outputs, or "full": nothing. "none": keep everything.
    # For accelerators: on CPU, XLA runs conv gradients inside the chunk loop slowly; use train.microbatches.
    model.remat = "none"
    model.remat_chunk = 0
    # How the reference lays out spatial inputs: "hw" (rows, columns: MNIST) or "xy" (event cameras:
    # N-MNIST and DVS Gesture store (polarity, x, y)). Our frames are always (H=y, W=x, C); reference.py
    # uses this to transpose weights and signals when it converts between the two.
    model.reference_spatial_order = "hw"
    model.dtype = "float32"  # compute dtype: float32 | bfloat16 (mixed precision) | float64 (golden checks)
    model.param_dtype = "float32"  # parameter dtype
    model.scan = "auto"  # filter recurrences: auto | sequential | associative (iirsnn_jax/models.py)
    # The spiking scans and the filters' recurrences on CPU: "native", C++ kernels compiled on first use
    # (iirsnn_jax/native; the same spikes, faster; they also lay out the conv kernel gradients' operands), or
    # "xla", lax.scans and XLA's transposes. Accelerators always run the lax.scans.
    model.cpu_kernel = "native"

    data = config.data = ml_collections.ConfigDict()
    data.name = "mnist"  # mnist | nmnist | gesture | patterns | digits | uea | shd | ssc
    data.root = "./data"  # folder that holds the dataset as TFDS, tonic or the IDX distribution lay it out
    data.length = 25  # T, time steps per sample
    data.encoding = "copy"  # copy | poisson | or | max | avg (per source, see iirsnn_jax/data)
    data.source = "auto"  # MNIST: auto | tfds | idx
    data.augment = True  # MNIST: the reference's crop + rotation on the train split (SPEC 4.1)
    data.augment_dev = False  # also augment dev, as the reference did by accident (SPEC 6.7)
    # Where the augmentation runs: "device" (inside the jitted step, same distributions as the reference) or
    # "host_pillow" (per sample on the host with Pillow, as torchvision did: slow, for parity checks).
    data.augment_on = "device"
    data.split_seed = 42  # seed of the reference's train/dev random_split
    data.dev_size = -1  # -1: the reference's count (10000, or 128 for gesture), scaled down for partial copies
    data.cache = True  # event datasets: bin every file once, keep the packed frames on disk
    data.cache_dir = ""  # "" means <data.root>/iirsnn_cache
    data.skip_corrupt = False  # skip and log corrupt event files instead of stopping
    data.drop_remainder = False  # train only: drop the last partial batch instead of padding it
    data.prefetch = 4  # batches made ahead of use in background threads
    data.num_workers = 0  # batch and cache threads; 0 = up to 4 for batches, up to 8 for cache building
    data.pattern_samples = 1000  # associative memory: samples per split (10 patterns x 100 corruptions)
    data.dataset = ""  # uea: the archive's problem name, e.g. "JapaneseVowels" (iirsnn_jax/data/uea.py)
    data.upsample = 1  # uea: repeat every time step this many times (short series, SNNs need more steps)
    data.bin_ms = 10.0  # shd, ssc: frame width in ms; frame t counts spikes at t*dt <= time < (t+1)*dt
    data.channel_pool = 1  # shd, ssc: sum groups of this many neighbouring channels (700 -> 700 / k)

    train = config.train = ml_collections.ConfigDict()
    train.loss = "cross_entropy"  # cross_entropy (on spike counts) | mse (filtered output vs target)
    train.optimizer = "adam"  # adam | adamw
    train.learning_rate = 1e-4
    train.weight_decay = 0.0  # AdamW only
    train.milestones = (50, 100)  # MultiStepLR epochs at which the learning rate is multiplied by gamma
    train.gamma = 0.1
    train.batch_size = 64
    train.microbatches = 1  # accumulate the gradient over this many slices of each batch (less memory)
    train.epochs = 100
    train.eval_batch_size = 0  # batch size for dev/test; 0 = train.batch_size
    train.checkpoint_every_steps = 0  # also checkpoint every N steps (0: only at the end of each epoch)
    # An epoch's end saves the latest checkpoint only when the last save is at least this many seconds old
    # (0: every epoch); the last epoch, a stop request and checkpoint_every_steps always save. Tiny epochs
    # (the digits quick start: 0.1 s) would otherwise spend more time saving than training; a new best is held
    # on the device and saved, before the latest, with the next save.
    train.checkpoint_min_interval_s = 10.0
    # Dev metric that picks the best checkpoint: auto (accuracy for classifiers, as the reference; loss for mse)
    # | accuracy | loss (steadier when dev is small: it moves with every sample, not in steps of 1/n).
    train.best_metric = "auto"
    train.keep_checkpoints = 3  # how many of the latest checkpoints to keep (the best is kept apart), >= 1
    # The host reads the step's metric sums every this many steps (and before every save); between those reads
    # the device runs ahead. 0: every 20 steps. A NaN is still named with its step; a single-process run
    # reacts to SIGTERM/Ctrl-C at the next step, a multi-process run at the next read (all hosts agree there).
    train.sync_every_steps = 0
    train.progress_bar = True
    # XLA's CPU scheduler for the jitted steps (training/compiler.py): memory (the peak stays low: conv
    # networks) | concurrency (independent kernels overlap: 1.05-1.10x on the MLPs). Same results either way.
    train.cpu_scheduler = "memory"
    return config


def read_run_config(workdir) -> ml_collections.ConfigDict:
    """The resolved config that train.py saved in workdir/config.json, over today's defaults: a run made
    before a config field existed reads it with its default (e.g. model.remat = "none"). workdir may be a
    local folder or a bucket URL (gs://bucket/run)."""
    path = epath.Path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the workdir must be a directory made by train.py")
    config = default_config()
    _merge(config, json.loads(path.read_text()))
    return config


def _merge(config: ml_collections.ConfigDict, saved: dict) -> None:
    for key, value in saved.items():
        if isinstance(value, dict) and isinstance(config.get(key), ml_collections.ConfigDict):
            _merge(config[key], value)
        else:
            config[key] = value
