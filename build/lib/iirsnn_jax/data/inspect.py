"""Write the exact input the network receives for one sample, in the reference's layout, to an .npz.

    python -m iirsnn_jax.data.inspect --config=configs/snn_conv_1_nmnist.py --split=train --index=0 \
        --out=/tmp/sample.npz [--epoch=0] [--config.data.root=DIR]

Keys: `input`: the sample as the network receives it (the pipeline's batch of this one sample, made into the
network input by the device's function, data.make_input_fn, run here on the CPU), reshaped to
config.model.input_shape as the network does and converted to the reference's time-last layout ([N, T] for
vectors, [C, A1, A2, T] for frames, with (A1, A2) = (x, y) for the event cameras, see iirsnn_jax.layout);
`label`; `index`, `epoch`, `split`; `input_ours` ([T, *S], our layout); for the associative memory also
`target` and `filtered_target` ([300, T]). `index` counts within the split (after the train/dev split);
random encodings (Poisson, augmentation, corruption) are those of `epoch`.
"""
from __future__ import annotations

import os

import numpy as np
from absl import flags
from ml_collections import config_flags

from iirsnn_jax import cli
from iirsnn_jax.data.device_encoding import host_input_fn
from iirsnn_jax.data.pipeline import make_batch, make_source
from iirsnn_jax.layout import to_reference_signal

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file, e.g. configs/snn_mlp_1.py")
_SPLIT = flags.DEFINE_enum("split", "train", ["train", "dev", "test"], "split to read")
_INDEX = flags.DEFINE_integer("index", 0, "sample index within the split")
_EPOCH = flags.DEFINE_integer("epoch", 0, "epoch whose random encoding to use")
_OUT = flags.DEFINE_string("out", None, "output .npz file")


def network_batch(config, source, indices, epoch: int = 0) -> dict[str, np.ndarray]:
    """The pipeline's batch of split-local samples `indices` of `source`, with `input` replaced by what the
    network receives, [B, T, *S] (computed on the CPU by the device's input function)."""
    batch = make_batch(source, np.asarray(indices, np.int64), epoch)
    return {**batch, "input": host_input_fn(config)(batch)}


def sample_arrays(config, split: str, index: int, epoch: int = 0) -> dict[str, np.ndarray]:
    """The arrays that inspect writes for sample `index` of `split` (see the module docstring)."""
    source = make_source(config, split)
    if not 0 <= index < source.num_examples:
        raise IndexError(f"--index={index} is outside the {source.num_examples} samples of split {split!r} "
                         f"(0 to {source.num_examples - 1})")
    batch = network_batch(config, source, [index], epoch)
    order = config.model.reference_spatial_order
    x = batch["input"]
    # The network reshapes [B, T, *S] row-major to its input shape, e.g. MNIST (28, 28, 1) -> (784,).
    shape = tuple(config.model.input_shape)
    ref = to_reference_signal(x.reshape(1, x.shape[1], *shape), order)[0]
    out = {"input": ref, "input_ours": x[0], "label": np.asarray(batch["label"][0]),
           "index": np.asarray(index), "epoch": np.asarray(epoch), "split": np.asarray(split)}
    for key in ("target", "filtered_target"):
        if key in batch:
            out[key] = np.moveaxis(batch[key][0], 0, -1)  # [T, N] -> [N, T]
    return out


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {argv[1:]}")
    if _OUT.value is None:
        raise ValueError("--out=FILE.npz is required")
    folder = os.path.dirname(os.path.abspath(_OUT.value))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--out={_OUT.value}: the folder {folder} does not exist")
    arrays = sample_arrays(cli.config_value("config"), _SPLIT.value, _INDEX.value, _EPOCH.value)
    np.savez(_OUT.value, **arrays)
    print(f"wrote {_OUT.value}: input {arrays['input'].shape} {arrays['input'].dtype} (time last), "
          f"label {int(arrays['label'])}")
    return 0


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    cli.run(main)
