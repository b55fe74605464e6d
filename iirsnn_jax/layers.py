"""Flax NNX layers: hold the parameters and call the pure dynamics of filters.py and neurons.py.

Every layer maps a time-major sequence x [T, B, *F_in] to [T, B, *F_out] and has the same call signature,
`layer(x, state=None, *, key=None) -> (y, new_state)`, so a network is a plain list of layers. `state` is the
layer's NamedTuple state or None (zeros); stateless layers return None. `key` is only used by Dropout; a
layer called without a key is in evaluation mode.

Feature shapes F are per sample: (N,) for fully connected signals and (H, W, C) for images (channels last,
which XLA runs fastest on CPU and GPU). Per-element coefficients have exactly shape F, as in the reference.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from iirsnn_jax import convolution, filters, neurons, pooling, recurrence, threefry
from iirsnn_jax.native import library


# Name of the dense and conv outputs for jax.checkpoint policies (models.REMAT_POLICIES).
SYNAPTIC_CURRENT = "synaptic_current"


class Constant(nnx.Variable):
    """A frozen quantity: saved and loaded with the model, never trained (reset_decay, frozen coefficients)."""


def dynamics_dtype(dtype):
    """The dtype of the filters and neurons (their arithmetic, states, coefficients and gradient accumulators):
    at least float32. In bfloat16 mode only the dense and conv operands are bfloat16: a coefficient step of 1e-4
    is invisible at bfloat16's resolution near 1.15, and a filter's DC gain (about 1 / (1 - alpha_1 - alpha_2))
    amplifies its rounding."""
    return jnp.promote_types(dtype, jnp.float32)


def _coefficient(value, shape, dtype, trainable: bool):
    array = jnp.full(shape, value, dtype)
    return nnx.Param(array) if trainable else Constant(array)


def _torch_uniform(key, shape, fan_in: int, dtype):
    """PyTorch's default Linear/Conv initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class _Filter(nnx.Module):
    """What the filter layers share: per-sample feature shape F, zero states, float32-or-wider arithmetic."""

    state_type: type  # the filter's NamedTuple state, every field a [B, *F] array

    def _init_filter(self, feature_shape, dtype, scan: str, cpu_kernel: str):
        if scan not in recurrence.METHODS:
            raise ValueError(f"model.scan must resolve to one of {recurrence.METHODS}, got {scan!r}")
        self.feature_shape = tuple(feature_shape)
        self.dtype = dynamics_dtype(dtype)
        library.check_option(cpu_kernel)
        self.scan = scan
        self.cpu_kernel = cpu_kernel

    def output_shape(self):
        return self.feature_shape

    def initial_state(self, batch_size: int):
        # One array per field, not one twice: a train step donates its state, and a buffer is donated once.
        zeros = lambda: jnp.zeros((batch_size, *self.feature_shape), self.dtype)
        return self.state_type(*(zeros() for _ in self.state_type._fields))


class SynapseFilter(_Filter):
    """The trained synapse filters (dual-exponential, first-order): states are the output history y[t-1], ...,
    so a network's first one can run on a held frame (held_input.py)."""

    def held(self, frame, length: int):
        """The filter, from zero state, of `frame` [B, *F] held for `length` steps (held_input.py): the step
        response g [T, 1, *F] (the recurrence on ones, once for the whole batch) times the frame.

        Returns (y [T, B, *F] time-major, final state), equal to `self` on the repeated frame up to rounding."""
        frame = _as_float(frame, self.dtype)
        response, _ = self(jnp.ones((length, 1, *frame.shape[1:]), self.dtype))
        y = response * frame[None]
        zeros = jnp.zeros_like(frame)
        return y, self.state_type(*recurrence.final_state(y, (zeros,) * len(self.state_type._fields)))


class DualExpFilter(SynapseFilter):
    """Dual-exponential IIR synapse filter with coefficients alpha_1, alpha_2, beta_1 of shape F."""

    state_type = filters.DualExpState

    def __init__(self, feature_shape: Sequence[int], tau_m: float, tau_s: float, *, trainable: bool = True,
                 dtype=jnp.float32, param_dtype=jnp.float32, scan: str = "sequential", cpu_kernel: str = "native"):
        self._init_filter(feature_shape, dtype, scan, cpu_kernel)
        a1, a2, b1 = filters.dual_exp_coefficients(tau_m, tau_s)
        param_dtype = dynamics_dtype(param_dtype)
        self.alpha_1 = _coefficient(a1, self.feature_shape, param_dtype, trainable)
        self.alpha_2 = _coefficient(a2, self.feature_shape, param_dtype, trainable)
        self.beta_1 = _coefficient(b1, self.feature_shape, param_dtype, trainable)

    def coefficients(self) -> tuple:
        """(alpha_1, alpha_2, beta_1) in the filter's dtype, as recurrence.py takes them."""
        return tuple(c[...].astype(self.dtype) for c in (self.alpha_1, self.alpha_2, self.beta_1))

    def __call__(self, x, state=None, *, key=None, time_axis: int = 0):
        """x [T, B, *F] ([B, T, *F] with time_axis=1) -> (y [T, B, *F], DualExpState)."""
        return filters.dual_exp_iir(_as_float(x, self.dtype), *self.coefficients(), state, scan=self.scan,
                                    time_axis=time_axis, cpu_kernel=self.cpu_kernel)


class LowPassFilter(SynapseFilter):
    """First-order low-pass filter y[t] = alpha_1 * y[t-1] + x[t], alpha_1 = exp(-1/tau) of shape F."""

    state_type = filters.LowPassState

    def __init__(self, feature_shape: Sequence[int], tau: float, *, trainable: bool = True,
                 dtype=jnp.float32, param_dtype=jnp.float32, scan: str = "sequential", cpu_kernel: str = "native"):
        self._init_filter(feature_shape, dtype, scan, cpu_kernel)
        self.alpha_1 = _coefficient(math.exp(-1.0 / tau), self.feature_shape, dynamics_dtype(param_dtype),
                                    trainable)

    def coefficients(self) -> tuple:
        return (self.alpha_1[...].astype(self.dtype),)

    def __call__(self, x, state=None, *, key=None, time_axis: int = 0):
        """x [T, B, *F] ([B, T, *F] with time_axis=1) -> (y [T, B, *F], LowPassState)."""
        return filters.first_order_low_pass(_as_float(x, self.dtype), *self.coefficients(), state,
                                            scan=self.scan, time_axis=time_axis, cpu_kernel=self.cpu_kernel)


def _as_float(x, dtype):
    """Event inputs (bool, integer) and narrower floats become the filter's dtype (SPEC 1.1)."""
    return x.astype(dtype) if x.dtype != dtype else x


class OutputFilter(_Filter):
    """Frozen, peak-normalised dual-exponential readout filter (associative memory), per feature of shape F."""

    state_type = filters.OutputFilterState

    def __init__(self, feature_shape: Sequence[int], tau_m: float, tau_s: float, *, dtype=jnp.float32,
                 param_dtype=jnp.float32):
        self._init_filter(feature_shape, dtype, "sequential", "xla")  # its own lax.scan, no recurrence.solve
        param_dtype = dynamics_dtype(param_dtype)
        self.decay_m = Constant(jnp.asarray(math.exp(-1.0 / tau_m), param_dtype))
        self.decay_s = Constant(jnp.asarray(math.exp(-1.0 / tau_s), param_dtype))
        self.v0 = Constant(jnp.asarray(filters.dual_exp_peak_normaliser(tau_m, tau_s), param_dtype))

    def __call__(self, x, state=None, *, key=None):
        cast = lambda v: v[...].astype(self.dtype)
        return filters.dual_exp_output_filter(_as_float(x, self.dtype), cast(self.decay_m), cast(self.decay_s),
                                              cast(self.v0), state)


class SpikingLayer(nnx.Module):
    """Shared neuron half of SpikingDense and SpikingConv: frozen reset constants and the spiking scan.

    `dtype` is the dtype of the dense/conv operands (bfloat16 for mixed precision); the currents, the neuron
    scan and its state are at least float32 (`dynamics_dtype`)."""

    def _init_neuron(self, output_shape, tau_m, reset_v, membrane_filter, surrogate_name, surrogate_width,
                     threshold, dtype, param_dtype, cpu_kernel):
        decay = math.exp(-1.0 / tau_m)
        self.neuron_shape = tuple(output_shape)
        param_dtype = dynamics_dtype(param_dtype)
        self.reset_decay = Constant(jnp.asarray(decay, param_dtype))
        self.reset_v = Constant(jnp.asarray(reset_v, param_dtype))
        self.decay_v = Constant(jnp.asarray(decay, param_dtype))
        self.membrane_filter = bool(membrane_filter)
        self.surrogate_name = surrogate_name
        self.surrogate_width = float(surrogate_width)
        self.threshold = float(threshold)
        library.check_option(cpu_kernel)
        self.cpu_kernel = cpu_kernel
        self.dtype = dtype
        self.state_dtype = dynamics_dtype(dtype)

    def output_shape(self):
        return self.neuron_shape

    def initial_state(self, batch_size: int) -> neurons.NeuronState:
        # Two arrays, not one twice: a train step donates its state, and a buffer can be donated only once.
        return neurons.NeuronState(*(jnp.zeros((batch_size, *self.neuron_shape), self.state_dtype)
                                     for _ in range(2)))

    def current(self, x):
        """The synaptic current without the bias, [T, B, *F_out] in state_dtype (the bias joins the scan)."""
        raise NotImplementedError

    def run(self, x, state=None, *, dropout: "Dropout | None" = None, dropout_key=None,
            next_filter: DualExpFilter | LowPassFilter | None = None, filter_state=None,
            keep_spikes: bool = False, pool: "MaxPool | None" = None) -> neurons.ScanOutput:
        """The layer over x [T, B, *F_in], optionally followed by `dropout` and `next_filter` in the same scan
        (one pass per layer boundary, see neurons.py), and by `pool` (a 2x2, stride-2 MaxPool after the filter:
        `fuses_after_filter`); without a filter `out` is the spikes."""
        keep = None if dropout is None else dropout.keep_mask((x.shape[0], x.shape[1], *self.neuron_shape),
                                                              dropout_key)
        cast = lambda v: v[...].astype(self.state_dtype)
        spec = neurons.NeuronSpec(self.membrane_filter, self.threshold, self.surrogate_name, self.surrogate_width,
                                  0.0 if keep is None else dropout.rate, keep_spikes, self.cpu_kernel,
                                  None if pool is None else pool.padding)
        current = checkpoint_name(self.current(x), SYNAPTIC_CURRENT)
        return neurons.spiking_scan(
            current, state, spec, reset_decay=cast(self.reset_decay), reset_v=cast(self.reset_v),
            decay_v=cast(self.decay_v), bias=None if self.bias is None else cast(self.bias), keep=keep,
            filter_coefficients=None if next_filter is None else next_filter.coefficients(),
            filter_state=filter_state)

    def __call__(self, x, state=None, *, key=None):
        """x [T, B, *F_in] -> (spikes [T, B, *F_out], NeuronState)."""
        out = self.run(x, state)
        return out.out, out.neuron_state


class SpikingDense(SpikingLayer):
    """Fully connected spiking layer: I = x W + b for all T*B frames in one matmul, then the neuron scan.

    kernel [N_in, N_out] (the transpose of PyTorch's Linear.weight), bias [N_out] when use_bias.
    """

    def __init__(self, in_features: int, out_features: int, *, tau_m: float, use_bias: bool = True,
                 reset_v: float = 1.0, membrane_filter: bool = False, surrogate_name: str = "gaussian",
                 surrogate_width: float = 0.4, threshold: float = 1.0, dtype=jnp.float32,
                 param_dtype=jnp.float32, cpu_kernel: str = "native", rngs: nnx.Rngs):
        self.kernel = nnx.Param(_torch_uniform(rngs.params(), (in_features, out_features), in_features, param_dtype))
        self.bias = (nnx.Param(_torch_uniform(rngs.params(), (out_features,), in_features, param_dtype))
                     if use_bias else None)
        self._init_neuron((out_features,), tau_m, reset_v, membrane_filter, surrogate_name, surrogate_width,
                          threshold, dtype, param_dtype, cpu_kernel)

    def current(self, x):
        # One [T*B, N_in] x [N_in, N_out] product. As a 2-D matmul, not an einsum over (t, b): XLA CPU runs the
        # kernel gradient of the einsum, a contraction over two axes, through transposed copies of both inputs.
        t, b = x.shape[:2]
        rows = x.reshape(t * b, x.shape[-1]).astype(self.dtype)
        current = jnp.matmul(rows, self.kernel[...].astype(self.dtype), preferred_element_type=self.state_dtype)
        return current.reshape(t, b, -1)


class SpikingConv(SpikingLayer):
    """2-D convolutional spiking layer over [T, B, H, W, C]: one NHWC conv over all T*B frames, then the scan.

    kernel [k, k, C_in, C_out] (HWIO), bias [C_out]; symmetric zero padding; dilation 1 (as the reference).
    """

    def __init__(self, input_shape: Sequence[int], out_channels: int, kernel_size: int, stride: int,
                 padding: int, *, tau_m: float, use_bias: bool = True, reset_v: float = 1.0,
                 membrane_filter: bool = False, surrogate_name: str = "gaussian", surrogate_width: float = 0.4,
                 threshold: float = 1.0, dtype=jnp.float32, param_dtype=jnp.float32, cpu_kernel: str = "native",
                 rngs: nnx.Rngs):
        h, w, c_in = input_shape
        fan_in = c_in * kernel_size * kernel_size
        self.kernel = nnx.Param(_torch_uniform(rngs.params(), (kernel_size, kernel_size, c_in, out_channels),
                                               fan_in, param_dtype))
        self.bias = nnx.Param(_torch_uniform(rngs.params(), (out_channels,), fan_in, param_dtype)) if use_bias else None
        self.stride = int(stride)
        self.padding = int(padding)
        h_out = (h + 2 * padding - kernel_size) // stride + 1
        w_out = (w + 2 * padding - kernel_size) // stride + 1
        if h_out < 1 or w_out < 1:
            raise ValueError(f"conv k={kernel_size} s={stride} p={padding} does not fit input {tuple(input_shape)}")
        self._init_neuron((h_out, w_out, out_channels), tau_m, reset_v, membrane_filter, surrogate_name,
                          surrogate_width, threshold, dtype, param_dtype, cpu_kernel)

    def current(self, x):
        t, b = x.shape[:2]
        frames = x.reshape(t * b, *x.shape[2:]).astype(self.dtype)
        current = convolution.conv2d(frames, self.kernel[...].astype(self.dtype), self.stride, self.padding,
                                     self.state_dtype, self.cpu_kernel)
        return current.reshape(t, b, *current.shape[1:])


class MaxPool(nnx.Module):
    """Max-pooling of each frame of [T, B, H, W, C], padded with minus infinity (PyTorch semantics)."""

    def __init__(self, input_shape: Sequence[int], kernel_size: int, stride: int, padding: int):
        h, w, c = input_shape
        if 2 * padding > kernel_size:
            raise ValueError(f"pool padding {padding} must be at most half the kernel size {kernel_size}")
        self.kernel_size, self.stride, self.padding = int(kernel_size), int(stride), int(padding)
        self._output_shape = ((h + 2 * padding - kernel_size) // stride + 1,
                              (w + 2 * padding - kernel_size) // stride + 1, c)

    def output_shape(self):
        return self._output_shape

    def fuses_after_filter(self) -> bool:
        """Whether the spiking scan before it can pool its filter's output itself (SpikingLayer.run)."""
        return self.kernel_size == self.stride == 2 and self.padding in (0, 1)

    def __call__(self, x, state=None, *, key=None):
        return pooling.max_pool(x, self.kernel_size, self.stride, self.padding), None


class Flatten(nnx.Module):
    """[T, B, *F] -> [T, B, prod(F)] in row-major order of our layout ((h, w, c) for images)."""

    def __init__(self, input_shape: Sequence[int]):
        self._output_shape = (math.prod(input_shape),)

    def output_shape(self):
        return self._output_shape

    def __call__(self, x, state=None, *, key=None):
        return x.reshape(*x.shape[:2], -1), None


class Dropout(nnx.Module):
    """Dropout with an independent mask for every (t, b, feature), kept values scaled by 1/(1-rate).

    Active only when called with a key (training); the identity otherwise, as the reference in eval mode.
    """

    def __init__(self, input_shape: Sequence[int], rate: float):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self._output_shape = tuple(input_shape)
        self.rate = float(rate)

    def output_shape(self):
        return self._output_shape

    def keep_mask(self, shape, key):
        """bool mask of the kept elements, or None when dropout is off (no key, or rate 0).

        Each element draws 16 random bits (the two halves of one 32-bit threefry draw serve two elements):
        the keep probability is 1 - rate to within 2^-17, for half the random-number work of
        `jax.random.bernoulli`. The words are `jax.random.bits`', computed as threefry.random_bits (one fused
        loop on CPU: snn_mlp_1's two masks in 0.6 instead of 1.3 ms)."""
        if key is None or self.rate == 0.0:
            return None
        width = shape[-1]
        # the barrier keeps XLA from fusing (and so computing twice) the bits into both halves' comparisons
        bits = jax.lax.optimization_barrier(threefry.random_bits(key, (*shape[:-1], (width + 1) // 2)))
        threshold = round((1.0 - self.rate) * 2 ** 16)
        return jnp.concatenate([(bits & 0xFFFF) < threshold, (bits >> 16) < threshold], axis=-1)[..., :width]

    def __call__(self, x, state=None, *, key=None):
        keep = self.keep_mask(x.shape, key)
        if keep is None:
            return x, None
        return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros_like(x)), None
