"""Whole golden files (the format of shared/golden/README.md) computed by the loop model."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .architectures import is_classifier
from .cells import filter_layer
from .inputs import make_input
from .networks import run
from .parameters import calibrate, init_params


def _output_filter_target(params, target):
    """The filtered target: the output filter of SPEC 1.6 applied in float64."""
    with jax.enable_x64(True):
        p = "output_filter."
        out = filter_layer(jnp.asarray(np.asarray(target, np.float64)), params[p + "filter_v0"],
                           params[p + "filter_decay_m"], params[p + "filter_decay_s"])
        return np.asarray(out)


def make_golden(experiment: str, seed: int, length: int | None = None, batch: int = 2) -> dict:
    """A full golden-format dict (shared/golden/README.md) computed by this loop model."""
    rng = np.random.default_rng(seed)
    x = make_input(experiment, rng, batch, length)
    params = calibrate(experiment, init_params(experiment, rng), x)
    golden = {"experiment": np.str_(experiment), "input": x}
    if is_classifier(experiment):
        n_classes = 11 if "gesture" in experiment else 10
        labels = rng.integers(0, n_classes, size=batch).astype(np.int64)
        golden["labels"] = labels
        target = labels
    else:
        delayed = np.zeros_like(x)
        delayed[:, :, 4:] = x[:, :, :-4]
        golden["target"] = delayed
        golden["filtered_target"] = _output_filter_target(params, delayed).astype(np.float32)
        target = golden["filtered_target"]
    result = run(experiment, params, x, target)
    golden["output_spikes"] = result["output_spikes"].astype(np.uint8)
    if is_classifier(experiment):
        golden["spike_counts"] = result["output_spikes"].sum(axis=-1).astype(np.float32)
    else:
        golden["filtered_output"] = result["filtered_output"].astype(np.float32)
    golden["loss"] = np.float64(result["loss"])
    for name, value in params.items():
        golden[f"param/{name}"] = np.float64(value) if np.ndim(value) == 0 else np.asarray(value, np.float32)
    for name in params:
        if name in result["grads"]:
            golden[f"grad/{name}"] = result["grads"][name].astype(np.float32)
    for module, spikes in result["layer_spikes"].items():
        rate = float(spikes.mean())
        if not 0.04 <= rate <= 0.30:
            raise RuntimeError(f"{experiment} seed {seed}: {module} fires at {rate:.3f} of its slots, not 4-30 %")
        golden[f"layer_spikes/{module}"] = spikes.astype(np.uint8)
    return golden
