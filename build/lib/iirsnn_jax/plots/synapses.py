"""The learned synapse filters: impulse responses and coefficients of every per-element IIR filter.

Every `F` (dual-exponential) and `L` (first-order) layer holds one filter per element of its feature shape
F. Training moves each filter's coefficients freely (SPEC 1.3: nothing keeps them dual-exponential or even
stable). Two figures:
  * impulse responses h[k], k = 0..K-1, of all P = prod(F) filters of each layer, summarised per step by the
    median and the 5-95 % and 25-75 % quantile bands, against the initial kernel;
  * histograms of each learned coefficient (alpha_1, alpha_2, beta_1 or alpha_1) against its initial value.
"""
from __future__ import annotations

import math

import numpy as np
from etils import epath
from matplotlib import ticker

from iirsnn_jax import filters, layers
from iirsnn_jax.plots import common
from iirsnn_jax.plots.run import TrainedRun

_NAMES = {layers.DualExpFilter: ("alpha_1", "alpha_2", "beta_1"), layers.LowPassFilter: ("alpha_1",)}
_TEX = {"alpha_1": r"$\alpha_1$", "alpha_2": r"$\alpha_2$", "beta_1": r"$\beta_1$"}


def filter_layers(run: TrainedRun) -> list[tuple[str, object]]:
    """(name, layer) of every trainable-kind synapse filter (F or L) of the network, in order."""
    return [(name, layer) for name, layer in zip(run.model.layer_names, run.model.layers)
            if isinstance(layer, tuple(_NAMES))]


def coefficients(layer) -> dict[str, np.ndarray]:
    """{coefficient name: float64 [P]} of one filter layer, P = prod(feature shape)."""
    return {n: np.asarray(getattr(layer, n)[...], np.float64).reshape(-1) for n in _NAMES[type(layer)]}


def initial_coefficients(run: TrainedRun, layer) -> dict[str, float]:
    """The values every element of `layer` started from (config's tau_m, tau_s)."""
    tau_m, tau_s = float(run.config.model.tau_m), float(run.config.model.tau_s)
    if isinstance(layer, layers.DualExpFilter):
        return dict(zip(_NAMES[layers.DualExpFilter], filters.dual_exp_coefficients(tau_m, tau_s)))
    return {"alpha_1": math.exp(-1.0 / tau_m)}


def impulse_responses(coefs: dict[str, np.ndarray], steps: int) -> np.ndarray:
    """[steps, P] impulse responses of P filters (coefs as `coefficients`, or scalars for one filter)."""
    size = max(np.size(v) for v in coefs.values())
    x = np.zeros((steps, 1, size))
    x[0] = 1.0
    c = {k: np.broadcast_to(np.asarray(v, np.float64), (size,)).astype(np.float32) for k, v in coefs.items()}
    if "beta_1" in c:
        y, _ = filters.dual_exp_iir(x.astype(np.float32), c["alpha_1"], c["alpha_2"], c["beta_1"])
    else:
        y, _ = filters.first_order_low_pass(x.astype(np.float32), c["alpha_1"])
    return np.asarray(y)[:, 0]


def response_steps(run: TrainedRun) -> int:
    """K: long enough to see the initial kernel decay (6 tau_m), at least 20, at most T."""
    return int(min(max(20, math.ceil(6 * float(run.config.model.tau_m))), int(run.config.data.length) or 10**6))


def _grid(count: int) -> tuple[int, int]:
    cols = min(count, 3)
    return math.ceil(count / cols), cols


def plot_impulse_responses(run: TrainedRun, out, prefix: str = "") -> common.Written:
    named = filter_layers(run)
    if not named:
        raise ValueError(f"{run.name} has no F or L synapse filter to draw")
    steps = response_steps(run)
    rows, cols = _grid(len(named))
    caption = (f"Response to a unit input at step 0 of every per-element IIR filter, per layer: median and quantiles "
               f"over elements vs the initial kernel (tau_m {run.config.model.tau_m}, tau_s {run.config.model.tau_s}).")
    fig = common.new_figure(4.0 * cols + 0.4, 3.0 * rows + 0.5, caption)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    k = np.arange(steps)
    for ax, (name, layer) in zip(axes, named):
        h = impulse_responses(coefficients(layer), steps)
        initial = impulse_responses(initial_coefficients(run, layer), steps)[:, 0]
        q05, q25, q50, q75, q95 = np.quantile(h, [0.05, 0.25, 0.5, 0.75, 0.95], axis=1)
        ax.fill_between(k, q05, q95, color=common.TRAINED, alpha=0.18, lw=0, label="learned, 5-95 %")
        ax.fill_between(k, q25, q75, color=common.TRAINED, alpha=0.35, lw=0, label="learned, 25-75 %")
        ax.plot(k, q50, color=common.TRAINED, lw=1.8, label="learned, median")
        ax.plot(k, initial, color=common.INITIAL, lw=1.3, ls="--", label="initial kernel")
        low, high = min(q05.min(), initial.min(), 0.0), max(q95.max(), initial.max())
        ax.set_ylim(low - 0.05 * (high - low), high + 0.12 * (high - low))
        kind = "dual-exp" if isinstance(layer, layers.DualExpFilter) else "first-order"
        ax.set_title(f"{name}: {h.shape[1]} {kind} filters", fontsize=10)
        ax.set_xlabel("time step after the input spike")
        ax.set_ylabel("response h[k]")
        ax.grid(alpha=0.3)
    for ax in axes[len(named):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"{run.name}: learned synapse filters (impulse responses), checkpoint step {run.step}", fontsize=12)
    return common.save(fig, epath.Path(out) / f"{prefix}filter_impulse_responses.png")


def plot_coefficients(run: TrainedRun, out, prefix: str = "") -> common.Written:
    named = filter_layers(run)
    if not named:
        raise ValueError(f"{run.name} has no F or L synapse filter to draw")
    cols = max(len(_NAMES[type(layer)]) for _, layer in named)
    caption = ("y[t] = alpha_1 y[t-1] + alpha_2 y[t-2] + beta_1 x[t] (F; L has y[t] = alpha_1 y[t-1] + x[t]), one "
               "filter per input element; 'moved' = changed by more than 1e-6 (inputs that never fire stay put).")
    fig = common.new_figure(3.6 * cols + 0.4, 2.3 * len(named) + 0.5, caption)
    axes = fig.subplots(len(named), cols, squeeze=False)
    for row, (name, layer) in enumerate(named):
        learned, initial = coefficients(layer), initial_coefficients(run, layer)
        for col in range(cols):
            ax = axes[row, col]
            if col >= len(learned):
                ax.set_visible(False)
                continue
            coef = _NAMES[type(layer)][col]
            values, start = learned[coef], initial[coef]
            spread = max(np.ptp(values), 1e-3 * max(abs(start), 1e-3))
            ax.hist(values, bins=np.linspace(values.min() - 0.05 * spread, values.max() + 0.05 * spread, 41),
                    color=common.TRAINED, alpha=0.8)
            ax.axvline(start, color=common.INITIAL, ls="--", lw=1.3)
            moved = np.mean(np.abs(values - start) > 1e-6)
            ax.set_title(f"{name} {_TEX[coef]}: {100 * moved:.0f} % of {values.size} moved\nfrom the initial "
                         f"{start:.4f} (dashed)", fontsize=9.5)
            ax.set_xlabel(f"{_TEX[coef]} value")
            ax.set_ylabel("filters")
            ax.tick_params(labelsize=8)
            ax.xaxis.set_major_locator(ticker.MaxNLocator(5))
    fig.suptitle(f"{run.name}: learned IIR coefficients vs initial values, checkpoint step {run.step}", fontsize=12)
    return common.save(fig, epath.Path(out) / f"{prefix}filter_coefficients.png")


def plot(run: TrainedRun, out, prefix: str = "") -> list[common.Written]:
    return [plot_impulse_responses(run, out, prefix), plot_coefficients(run, out, prefix)]
