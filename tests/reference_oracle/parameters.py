"""Parameters of a reference network: PyTorch default init, perturbed coefficients, firing-rate
calibration, float32 rounding.  Names and layouts are the PyTorch `state_dict()`'s."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .architectures import architecture, taus
from .cells import conv2d, time_slice
from .networks import apply_stage

SIGMA = 0.4


def _f32_scalar(value: float) -> np.float64:
    """A frozen scalar constant as the reference stores it: a float32 value, kept as float64."""
    return np.float64(np.float32(value))


def _uniform(rng, bound, shape):
    return rng.uniform(-bound, bound, size=shape)


def init_params(experiment: str, rng: np.random.Generator) -> dict:
    """Unscaled parameters in float64 (weights not yet calibrated), PyTorch names and layouts."""
    tau_m, tau_s = taus(experiment)
    dm, ds = math.exp(-1.0 / tau_m), math.exp(-1.0 / tau_s)
    eta = tau_m / tau_s
    v0 = eta ** (eta / (eta - 1.0)) / (eta - 1.0)
    perturb = lambda shape: rng.uniform(0.95, 1.05, size=shape)
    params = {}
    for stage in architecture(experiment):
        kind = stage[0]
        if kind == "iir":
            p, shape = f"{stage[1]}.dual_exp_iir_cell.", stage[2]
            params[p + "v_0"] = _f32_scalar(v0)
            params[p + "alpha_1"] = (dm + ds) * perturb(shape)
            params[p + "alpha_2"] = -(dm * ds) * perturb(shape)
            params[p + "beta_1"] = (dm - ds) * perturb(shape)
        elif kind == "lowpass":
            params[f"{stage[1]}.first_order_low_pass_cell.alpha_1"] = dm * perturb(stage[2])
        elif kind in ("dense", "conv"):
            if kind == "dense":
                _, module, n_in, n_out = stage
                p = f"{module}.neuron_cell."
                fan_in, w_shape, w_name, b_name, state_shape = n_in, (n_out, n_in), "weight.weight", "weight.bias", (n_out,)
            else:
                _, module, c_in, c_out, k, s, pad, (h, w) = stage
                p = f"{module}.conv2d_cell."
                h_out, w_out = (h + 2 * pad - (k - 1) - 1) // s + 1, (w + 2 * pad - (k - 1) - 1) // s + 1
                fan_in, w_shape, w_name, b_name = c_in * k * k, (c_out, c_in, k, k), "conv.weight", "conv.bias"
                state_shape = (c_out, h_out, w_out)
            bound = 1.0 / math.sqrt(fan_in)
            params[p + "sigma"] = _f32_scalar(SIGMA)
            params[p + "reset_decay"] = np.full(state_shape, np.float32(dm), np.float32)
            params[p + "reset_v"] = np.ones(state_shape, np.float32)
            params[p + "decay_v"] = np.full(state_shape, np.float32(dm), np.float32)
            params[p + w_name] = _uniform(rng, bound, w_shape)
            params[p + b_name] = _uniform(rng, bound, w_shape[:1])
        elif kind == "output":
            p = f"{stage[1]}."
            params[p + "filter_v0"] = _f32_scalar(v0)
            params[p + "filter_decay_m"] = _f32_scalar(dm)
            params[p + "filter_decay_s"] = _f32_scalar(ds)
    return params


def _rate_with_scale(currents, reset_decay, scale):
    """Firing rate over (batch, neuron, step) slots of the neuron recurrence driven by scale * currents."""
    r = np.zeros(currents.shape[:-1])
    n_spikes = 0
    for t in range(currents.shape[-1]):
        s = (scale * currents[..., t] - r) > 1.0
        r = reset_decay * r + s
        n_spikes += int(s.sum())
    return n_spikes / currents.size


def _calibration_scale(currents, reset_decay, low=0.04, high=0.30, goal=(0.08, 0.2)):
    """A factor c so that the layer driven by c * currents fires at a rate within `goal` (inside [low, high])."""
    rate = _rate_with_scale(currents, reset_decay, 1.0)
    if goal[0] <= rate <= goal[1]:
        return 1.0
    lo, hi = (0.0, 1.0) if rate > goal[1] else (1.0, None)
    c = 1.0
    for _ in range(200):
        c = (lo + hi) / 2 if hi is not None else c * 2.0
        rate = _rate_with_scale(currents, reset_decay, c)
        if goal[0] <= rate <= goal[1]:
            return c
        if rate > goal[1]:
            hi = c
        else:
            lo = c
    if low <= rate <= high:
        return c
    raise RuntimeError(f"could not calibrate a layer: rate {rate} at scale {c}")


def _stage_currents(stage, params, x):
    """All currents of a spiking stage at once (calibration only): [B, ..., T]."""
    x = jnp.asarray(x)
    if stage[0] == "dense":
        p = f"{stage[1]}.neuron_cell."
        w, b = (jnp.asarray(np.asarray(params[p + n], np.float64)) for n in ("weight.weight", "weight.bias"))
        return np.asarray(jnp.einsum("bit,oi->bot", x, w, precision="highest") + b[None, :, None])
    _, module, _, _, _, stride, padding, _ = stage
    p = f"{module}.conv2d_cell."
    w, b = (jnp.asarray(np.asarray(params[p + n], np.float64)) for n in ("conv.weight", "conv.bias"))
    return np.stack([np.asarray(conv2d(time_slice(x, t), w, b, stride, padding)) for t in range(x.shape[-1])], axis=-1)


def calibrate(experiment: str, params: dict, x) -> dict:
    """Scales each spiking layer's weight and bias, in forward order, so that it fires at 4-30 % of its
    (neuron, step) slots, then rounds every parameter to float32.  Runs in float64."""
    params = dict(params)
    with jax.enable_x64(True):
        x = jnp.asarray(np.asarray(x, np.float64))
        for stage in architecture(experiment):
            if stage[0] in ("dense", "conv"):
                cell = "neuron_cell" if stage[0] == "dense" else "conv2d_cell"
                names = ("weight.weight", "weight.bias") if stage[0] == "dense" else ("conv.weight", "conv.bias")
                p = f"{stage[1]}.{cell}."
                currents = _stage_currents(stage, params, x)
                c = _calibration_scale(currents, np.asarray(params[p + "reset_decay"], np.float64))
                for name in names:
                    params[p + name] = np.float32(c) * np.asarray(params[p + name], np.float64)
            params = {k: (v if np.ndim(v) == 0 else np.asarray(v, np.float32)) for k, v in params.items()}
            p64 = {k: jnp.asarray(np.asarray(v, np.float64)) for k, v in params.items()}
            x, _ = apply_stage(stage, p64, x)
    return params
