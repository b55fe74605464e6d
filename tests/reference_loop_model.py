"""An independent re-implementation of the reference (zhongyuchen/snn-iir) networks, in the reference's style.

Written from shared/reference/SPEC.md (sections 1, 2 and 6) and NOT from our library: nothing here imports
iirsnn_jax.  It keeps the reference's layout and habits on purpose, so that it shares as few decisions as
possible with the library it is used to check:

* time is the LAST axis, channels first: FC signals [B, N, T], conv signals [B, C, A1, A2, T];
* every layer runs its own Python loop over the T time steps (SPEC 1.1), starting from zero states of the
  per-sample shape that broadcast against the batch on the first step, and stacks its outputs on the last axis;
* parameters are a flat dict keyed by the PyTorch `state_dict()` names, in PyTorch layouts (Linear [out, in],
  Conv2d [O, I, kh, kw] applied NCHW to the two spatial axes in their stored order);
* spike = max(0, sign(v - 1)) with the Gaussian surrogate exp(-(1-v)^2 / (2 sigma^2)) / (2.506628 sigma);
  the reset variable r is not detached;
* max-pooling per time slice pads with -inf; flattening is `reshape(B, -1, T)` of [B, C, H, W, T].

`make_golden(experiment, seed)` builds a whole golden file (the format of shared/golden/README.md) for any of
the 13 reference experiments: random PyTorch-default parameters, IIR coefficients perturbed per element,
weights scaled per spiking layer until it fires at 4-30 % of its slots, everything rounded to float32, then
the float64 forward pass, loss and gradients of this loop model.  Evaluation mode: dropout is the identity
and every layer starts from zero states (so snn_mlp_1_non_zero is snn_mlp_1 on its first call); the Poisson,
non_zero and gesture variants share their base network and differ only in their inputs.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

SQRT_2PI = 2.506628  # the constant the reference writes for sqrt(2 pi)
SIGMA = 0.4

# --------------------------------------------------------------------------------------------------------
# Architectures (SPEC section 2).  A network is a list of stages in forward order:
#   ("reshape", shape)                  [B, 784, T] -> [B, *shape, T] row-major (conv nets on MNIST)
#   ("iir", module, shape)              dual-exponential IIR filter, per-element coefficients of `shape`
#   ("lowpass", module, shape)          first-order low-pass filter
#   ("dense", module, n_in, n_out)      fully connected spiking layer
#   ("conv", module, c_in, c_out, k, s, p, (h_in, w_in))  spiking conv layer
#   ("pool", k, s, p)                   max-pool of each time slice
#   ("flatten",)                        [B, C, H, W, T] -> [B, C*H*W, T]
#   ("output", module)                  the associative memory's dual-exponential output filter
# --------------------------------------------------------------------------------------------------------

TAUS = {"default": (4.0, 1.0), "associative": (8.0, 2.0)}


def _mlp(filter_kind):
    f = "iir" if filter_kind == "iir" else "lowpass"
    return [(f, "axon1", (784,)), ("dense", "snn1", 784, 500),
            (f, "axon2", (500,)), ("dense", "snn2", 500, 500),
            (f, "axon3", (500,)), ("dense", "snn3", 500, 10)]


def _conv_mnist_like(c_in, size, pool1_pad, n_hidden, reshape):
    s = size
    s4 = (s + 2 * pool1_pad - 2) // 2 + 1
    s6 = s4 // 2
    stages = [("reshape", (1, 28, 28))] if reshape else []
    stages += [
        ("iir", "axon1", (c_in, s, s)), ("conv", "conv1", c_in, 32, 3, 1, 1, (s, s)),
        ("iir", "axon2", (32, s, s)), ("conv", "conv2", 32, 32, 3, 1, 1, (s, s)),
        ("iir", "axon3", (32, s, s)), ("conv", "conv3", 32, 64, 3, 1, 1, (s, s)),
        ("iir", "axon4", (64, s, s)), ("pool", 2, 2, pool1_pad),
        ("iir", "axon5", (64, s4, s4)), ("conv", "conv5", 64, 64, 3, 1, 1, (s4, s4)),
        ("iir", "axon6", (64, s4, s4)), ("pool", 2, 2, 0), ("flatten",),
        ("iir", "axon7", (64 * s6 * s6,)), ("dense", "snn7", 64 * s6 * s6, n_hidden),
        ("iir", "axon8", (n_hidden,)), ("dense", "snn8", n_hidden, 10),
    ]
    return stages


def _gesture():
    return [
        ("iir", "axon1", (2, 128, 128)), ("conv", "conv1", 2, 64, 7, 3, 1, (128, 128)),
        ("iir", "axon2", (64, 42, 42)), ("conv", "conv2", 64, 32, 3, 3, 0, (42, 42)),
        ("iir", "axon3", (32, 14, 14)), ("conv", "conv3", 32, 32, 3, 1, 1, (14, 14)), ("flatten",),
        ("iir", "axon4", (6272,)), ("dense", "snn4", 6272, 256),
        ("iir", "axon5", (256,)), ("dense", "snn5", 256, 11),
    ]


def _associative():
    return [("iir", "axon1", (300,)), ("dense", "dense1", 300, 500),
            ("iir", "axon2", (500,)), ("dense", "dense2", 500, 200),
            ("iir", "axon3", (200,)), ("dense", "dense3", 200, 500),
            ("iir", "axon4", (500,)), ("dense", "dense4", 500, 300),
            ("output", "output_filter")]


def architecture(experiment: str) -> list[tuple]:
    """The stage list of a reference experiment (SPEC 2.1-2.6)."""
    if experiment == "associative_memory":
        return _associative()
    if experiment.startswith("snn_mlp_1"):
        return _mlp("iir")
    if experiment.startswith("snn_mlp_2"):
        return _mlp("lowpass")
    if experiment.startswith("snn_conv_1_mnist"):
        return _conv_mnist_like(1, 28, 0, 512, reshape=True)
    if experiment == "snn_conv_1_nmnist":
        return _conv_mnist_like(2, 34, 1, 256, reshape=False)
    if experiment.startswith("snn_conv_1_gesture"):
        return _gesture()
    raise ValueError(f"unknown experiment {experiment!r}")


def taus(experiment: str) -> tuple[float, float]:
    return TAUS["associative" if experiment == "associative_memory" else "default"]


def is_classifier(experiment: str) -> bool:
    return experiment != "associative_memory"


# --------------------------------------------------------------------------------------------------------
# Cells and layers (SPEC 1.2-1.9), each with its own loop over time.
# --------------------------------------------------------------------------------------------------------

# Each layer is a Python loop over time that calls a per-step "cell" (as the reference's *_layer / *_cell
# classes do).  Cells are jitted one step at a time, so a 300-step loop costs a few compilations, not 300.
# The loop reads x[..., t] and writes the output's [..., t] with a traced t, for the same reason.

@jax.jit
def time_slice(x, t):
    """x[..., t]: the input of step t (the reference splits the last axis into T slices)."""
    return jax.lax.dynamic_index_in_dim(x, t, axis=-1, keepdims=False)


@jax.jit
def _write_time_slice(outputs, y, t):
    return jax.lax.dynamic_update_index_in_dim(outputs, y, t, axis=-1)


def _time_loop(cell, x, state, *args):
    """for t in 0..T-1: y[t], state = cell(x[t], state, *args); returns the y stacked on the last axis."""
    n_steps = x.shape[-1]
    # Zero states of the per-sample shape broadcast against the batch on the first step; broadcasting them
    # once before the loop is the same arithmetic and saves compiling every cell for a batch-less state.
    state = jax.tree.map(lambda z: jnp.broadcast_to(z, x.shape[:1] + z.shape), state)
    outputs = None
    for t in range(n_steps):
        y, state = cell(time_slice(x, t), state, *args)
        if outputs is None:
            outputs = jnp.zeros(y.shape + (n_steps,), y.dtype)
        outputs = _write_time_slice(outputs, y, t)
    return outputs


@jax.custom_vjp
def spike_fn(v, sigma):
    """max(0, sign(v - 1)): strictly greater than the hard-coded threshold 1."""
    return jnp.maximum(jnp.zeros_like(v), jnp.sign(v - 1.0))


def _spike_fwd(v, sigma):
    return spike_fn(v, sigma), (v, sigma)


def _spike_bwd(residual, grad_output):
    v, sigma = residual
    surrogate = jnp.exp(-(1.0 - v) ** 2 / (2.0 * sigma ** 2)) / (SQRT_2PI * sigma)
    return grad_output * surrogate, jnp.zeros_like(sigma)  # no gradient for sigma


spike_fn.defvjp(_spike_fwd, _spike_bwd)


@jax.jit
def dual_exp_iir_cell(x_t, state, alpha_1, alpha_2, beta_1):
    """y[t] = alpha_1 y[t-1] + alpha_2 y[t-2] + beta_1 x[t]; new state (y[t], y[t-1])."""
    y_1, y_2 = state
    y = alpha_1 * y_1 + alpha_2 * y_2 + beta_1 * x_t
    return y, (y, y_1)


def dual_exp_iir_layer(x, alpha_1, alpha_2, beta_1):
    """States (y[t-1], y[t-2]) start as zeros of the per-sample shape."""
    zeros = jnp.zeros(alpha_1.shape, x.dtype)
    return _time_loop(dual_exp_iir_cell, x, (zeros, zeros), alpha_1, alpha_2, beta_1)


@jax.jit
def first_order_low_pass_cell(x_t, y_1, alpha_1):
    """y[t] = alpha_1 y[t-1] + x[t]."""
    y = alpha_1 * y_1 + x_t
    return y, y


def first_order_low_pass_layer(x, alpha_1):
    return _time_loop(first_order_low_pass_cell, x, jnp.zeros(alpha_1.shape, x.dtype), alpha_1)


def _neuron_update(current, state, reset_decay, reset_v, decay_v, sigma, membrane_filter):
    """The v / s / r step of SPEC 1.7; returns (s[t], (v[t], r[t]))."""
    v, r = state
    if membrane_filter:
        v = decay_v * v + current - r
    else:
        v = current - r
    s = spike_fn(v, sigma)
    r = reset_decay * r + reset_v * s
    return s, (v, r)


@functools.partial(jax.jit, static_argnames=("membrane_filter",))
def neuron_cell(x_t, state, weight, bias, reset_decay, reset_v, decay_v, sigma, membrane_filter=False):
    """I[t] = x[t] W^T + b (PyTorch Linear, W [out, in]), then the neuron step."""
    current = x_t @ weight.T + bias
    return _neuron_update(current, state, reset_decay, reset_v, decay_v, sigma, membrane_filter)


def neuron_layer(x, weight, bias, reset_decay, reset_v, decay_v, sigma, membrane_filter=False):
    """x [B, in, T] -> spikes [B, out, T]; states (v, r) start as zeros of shape (out,)."""
    zeros = jnp.zeros(reset_decay.shape, x.dtype)
    return _time_loop(functools.partial(neuron_cell, membrane_filter=membrane_filter), x, (zeros, zeros),
                      weight, bias, reset_decay, reset_v, decay_v, sigma)


def conv2d(x_t, weight, bias, stride, padding):
    """PyTorch Conv2d of one time slice [B, C, A1, A2] with weight [O, I, k, k]."""
    out = jax.lax.conv_general_dilated(x_t, weight, window_strides=(stride, stride),
                                       padding=((padding, padding), (padding, padding)),
                                       dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                       precision=jax.lax.Precision.HIGHEST)
    return out + bias[None, :, None, None]


@functools.partial(jax.jit, static_argnames=("stride", "padding", "membrane_filter"))
def conv2d_cell(x_t, state, weight, bias, reset_decay, reset_v, decay_v, sigma, stride, padding,
                membrane_filter=False):
    current = conv2d(x_t, weight, bias, stride, padding)
    return _neuron_update(current, state, reset_decay, reset_v, decay_v, sigma, membrane_filter)


def conv2d_layer(x, weight, bias, stride, padding, reset_decay, reset_v, decay_v, sigma, membrane_filter=False):
    """x [B, C, A1, A2, T] -> spikes [B, O, A1', A2', T]; states zeros of shape (O, A1', A2')."""
    zeros = jnp.zeros(reset_decay.shape, x.dtype)
    cell = functools.partial(conv2d_cell, stride=stride, padding=padding, membrane_filter=membrane_filter)
    return _time_loop(cell, x, (zeros, zeros), weight, bias, reset_decay, reset_v, decay_v, sigma)


@functools.partial(jax.jit, static_argnames=("kernel", "stride", "padding"))
def maxpooling2d_cell(x_t, state, kernel, stride, padding):
    """MaxPool2d of one slice [B, C, A1, A2], implicit -inf padding; no state."""
    y = jax.lax.reduce_window(x_t, -jnp.inf, jax.lax.max, (1, 1, kernel, kernel), (1, 1, stride, stride),
                              ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    return y, state


def maxpooling2d_layer(x, kernel, stride, padding):
    cell = functools.partial(maxpooling2d_cell, kernel=kernel, stride=stride, padding=padding)
    return _time_loop(cell, x, ())


@jax.jit
def filter_cell(x_t, state, v0, decay_m, decay_s):
    """Output filter step (SPEC 1.6): m = dm m + x, s = ds s + x, out = v0 (m - s)."""
    m, s = state
    m = decay_m * m + x_t
    s = decay_s * s + x_t
    return v0 * (m - s), (m, s)


def filter_layer(x, v0, decay_m, decay_s):
    zeros = jnp.zeros(x.shape[1:-1], x.dtype)
    return _time_loop(filter_cell, x, (zeros, zeros), v0, decay_m, decay_s)


# --------------------------------------------------------------------------------------------------------
# Whole networks
# --------------------------------------------------------------------------------------------------------

def _apply_stage(stage, params, x):
    """Runs one stage; returns (output, spikes or None)."""
    kind = stage[0]
    if kind == "reshape":
        return x.reshape(x.shape[0], *stage[1], x.shape[-1]), None
    if kind == "iir":
        p = f"{stage[1]}.dual_exp_iir_cell."
        return dual_exp_iir_layer(x, params[p + "alpha_1"], params[p + "alpha_2"], params[p + "beta_1"]), None
    if kind == "lowpass":
        return first_order_low_pass_layer(x, params[f"{stage[1]}.first_order_low_pass_cell.alpha_1"]), None
    if kind == "dense":
        p = f"{stage[1]}.neuron_cell."
        s = neuron_layer(x, params[p + "weight.weight"], params[p + "weight.bias"], params[p + "reset_decay"],
                         params[p + "reset_v"], params[p + "decay_v"], params[p + "sigma"])
        return s, s
    if kind == "conv":
        _, module, _, _, _, stride, padding, _ = stage
        p = f"{module}.conv2d_cell."
        s = conv2d_layer(x, params[p + "conv.weight"], params[p + "conv.bias"], stride, padding,
                         params[p + "reset_decay"], params[p + "reset_v"], params[p + "decay_v"], params[p + "sigma"])
        return s, s
    if kind == "pool":
        return maxpooling2d_layer(x, *stage[1:]), None
    if kind == "flatten":
        return x.reshape(x.shape[0], -1, x.shape[-1]), None
    if kind == "output":
        p = f"{stage[1]}."
        return filter_layer(x, params[p + "filter_v0"], params[p + "filter_decay_m"], params[p + "filter_decay_s"]), None
    raise ValueError(kind)


def forward(experiment: str, params: dict, x):
    """Returns (output, {module: spikes}); output = last spikes, or (spikes, filtered) for the associative net."""
    layer_spikes = {}
    last_spikes = None
    for stage in architecture(experiment):
        x, spikes = _apply_stage(stage, params, x)
        if spikes is not None:
            layer_spikes[stage[1]] = spikes
            last_spikes = spikes
    if experiment == "associative_memory":
        return (last_spikes, x), layer_spikes
    return last_spikes, layer_spikes


def cross_entropy_of_counts(output_spikes, labels):
    counts = output_spikes.sum(axis=-1)
    log_probs = counts - jax.scipy.special.logsumexp(counts, axis=-1, keepdims=True)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))


def loss_fn(experiment: str, trainable: dict, frozen: dict, x, target):
    """Loss (cross-entropy of counts vs labels, or MSE of the filtered output vs filtered target) and aux."""
    out, layer_spikes = forward(experiment, {**frozen, **trainable}, x)
    if experiment == "associative_memory":
        spikes, filtered = out
        loss = jnp.mean((filtered - target) ** 2)
        return loss, (spikes, filtered, layer_spikes)
    return cross_entropy_of_counts(out, target), (out, None, layer_spikes)


def is_trainable(name: str) -> bool:
    return name.endswith(("alpha_1", "alpha_2", "beta_1", "weight.weight", "weight.bias", "conv.weight",
                          "conv.bias"))


def run(experiment: str, params: dict, x, target):
    """Float64 forward and backward of the loop model, in evaluation mode (dropout is the identity).

    Runs op by op (the cells are jitted, the loops are not): jitting the whole unrolled network compiles
    for minutes at T = 300, while the cells compile once per shape and are shared by every experiment and
    golden file with the same layer shapes.

    params: {state_dict name: array} (any float dtype; used as float64); x: reference-layout input;
    target: labels [B] (int) or filtered_target [B, 300, T].  Returns dict with loss, output_spikes,
    filtered_output (associative only), layer_spikes {module: [B, ..., T]} and grads {name: array}.
    """
    with jax.enable_x64(True):
        params64 = {k: jnp.asarray(np.asarray(v, np.float64)) for k, v in params.items()}
        trainable = {k: v for k, v in params64.items() if is_trainable(k)}
        frozen = {k: v for k, v in params64.items() if not is_trainable(k)}
        x = jnp.asarray(np.asarray(x, np.float64))
        target = jnp.asarray(target) if is_classifier(experiment) else jnp.asarray(np.asarray(target, np.float64))
        value_and_grad = jax.value_and_grad(functools.partial(loss_fn, experiment), has_aux=True)
        (loss, (spikes, filtered, layer_spikes)), grads = value_and_grad(trainable, frozen, x, target)
        return {
            "loss": float(loss),
            "output_spikes": np.asarray(spikes),
            "filtered_output": None if filtered is None else np.asarray(filtered),
            "layer_spikes": {k: np.asarray(v) for k, v in layer_spikes.items()},
            "grads": {k: np.asarray(v) for k, v in grads.items()},
        }


# --------------------------------------------------------------------------------------------------------
# Parameters: PyTorch default init, perturbed coefficients, firing-rate calibration, float32 rounding
# --------------------------------------------------------------------------------------------------------

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
            x, _ = _apply_stage(stage, p64, x)
    return params


# --------------------------------------------------------------------------------------------------------
# Inputs (reference layout, time last) and golden files
# --------------------------------------------------------------------------------------------------------

DEFAULT_LENGTH = {
    "associative_memory": 24,
    "snn_conv_1_gesture": 7,
}


def default_length(experiment: str) -> int:
    if experiment in DEFAULT_LENGTH:
        return DEFAULT_LENGTH[experiment]
    if experiment.startswith("snn_conv"):
        return 6
    return 8


def make_input(experiment: str, rng: np.random.Generator, batch: int = 2, length: int | None = None):
    """A float32 input in the reference layout for `experiment`."""
    T = length or default_length(experiment)
    if experiment == "associative_memory":
        return (rng.random((batch, 300, T)) < 0.05).astype(np.float32)
    if experiment.startswith(("snn_mlp", "snn_conv_1_mnist")):
        pixels = rng.random((batch, 784)) * (rng.random((batch, 784)) < 0.6)  # MNIST-like: many zeros
        if experiment.endswith("poisson_input"):
            return (pixels[:, :, None] > rng.random((batch, 784, T))).astype(np.float32)
        return np.repeat(pixels[:, :, None], T, axis=-1).astype(np.float32)
    if experiment == "snn_conv_1_nmnist":
        return (rng.random((batch, 2, 34, 34, T)) < 0.05).astype(np.float32)
    if experiment in ("snn_conv_1_gesture", "snn_conv_1_gesture_30"):
        return (rng.random((batch, 2, 128, 128, T)) < 0.05).astype(np.float32)
    if experiment in ("snn_conv_1_gesture_max", "snn_conv_1_gesture_avg"):
        # per bin: number of active 1 ms slots (of 20) per pixel/polarity, then per-frame normalisation
        counts = rng.binomial(20, 0.01, size=(batch, 2, 128, 128, T)).astype(np.float64)
        counts[:, 0, 64, 64, :] += 1.0  # no empty frame (the reference would divide 0 by 0)
        norm = counts.max(axis=(1, 2, 3), keepdims=True) if experiment.endswith("max") else \
            counts.sum(axis=(1, 2, 3), keepdims=True)
        return (counts / norm).astype(np.float32)
    raise ValueError(f"unknown experiment {experiment!r}")


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
