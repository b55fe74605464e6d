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

from iirsnn_jax import filters, neurons, pooling


# Name of the dense and conv outputs for jax.checkpoint policies (models.REMAT_POLICIES).
SYNAPTIC_CURRENT = "synaptic_current"


class Constant(nnx.Variable):
    """A frozen quantity: saved and loaded with the model, never trained (reset_decay, frozen coefficients)."""


@jax.custom_vjp
def add_bias(x, bias):
    """x [..., C] + bias [C]. The bias gradient, a sum over every leading element (T*B*H*W of them in a conv
    layer), is computed as a matrix-vector product: XLA on CPU runs that reduction to C outputs on one thread
    at a fraction of memory speed (24-47 ms per conv layer of snn_conv_1_mnist, batch 32; with the product
    the step is 1.07x faster; bench/experiments/README.md)."""
    return x + bias


def _add_bias_fwd(x, bias):
    return x + bias, None


def _add_bias_bwd(_, cotangent):
    rows = cotangent.reshape(-1, cotangent.shape[-1])
    return cotangent, jnp.ones((rows.shape[0],), rows.dtype) @ rows


add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


def _coefficient(value, shape, dtype, trainable: bool):
    array = jnp.full(shape, value, dtype)
    return nnx.Param(array) if trainable else Constant(array)


def _torch_uniform(key, shape, fan_in: int, dtype):
    """PyTorch's default Linear/Conv initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class DualExpFilter(nnx.Module):
    """Dual-exponential IIR synapse filter with coefficients alpha_1, alpha_2, beta_1 of shape F."""

    def __init__(self, feature_shape: Sequence[int], tau_m: float, tau_s: float, *, trainable: bool = True,
                 dtype=jnp.float32, param_dtype=jnp.float32):
        a1, a2, b1 = filters.dual_exp_coefficients(tau_m, tau_s)
        self.feature_shape = tuple(feature_shape)
        self.alpha_1 = _coefficient(a1, self.feature_shape, param_dtype, trainable)
        self.alpha_2 = _coefficient(a2, self.feature_shape, param_dtype, trainable)
        self.beta_1 = _coefficient(b1, self.feature_shape, param_dtype, trainable)
        self.dtype = dtype

    def output_shape(self):
        return self.feature_shape

    def initial_state(self, batch_size: int) -> filters.DualExpState:
        # Two arrays, not one twice: a train step donates its state, and a buffer can be donated only once.
        return filters.DualExpState(*(jnp.zeros((batch_size, *self.feature_shape), self.dtype) for _ in range(2)))

    def __call__(self, x, state=None, *, key=None):
        return filters.dual_exp_iir(x.astype(self.dtype), self.alpha_1[...].astype(self.dtype),
                                    self.alpha_2[...].astype(self.dtype), self.beta_1[...].astype(self.dtype),
                                    state)


class LowPassFilter(nnx.Module):
    """First-order low-pass filter y[t] = alpha_1 * y[t-1] + x[t], alpha_1 = exp(-1/tau) of shape F."""

    def __init__(self, feature_shape: Sequence[int], tau: float, *, trainable: bool = True,
                 dtype=jnp.float32, param_dtype=jnp.float32):
        self.feature_shape = tuple(feature_shape)
        self.alpha_1 = _coefficient(math.exp(-1.0 / tau), self.feature_shape, param_dtype, trainable)
        self.dtype = dtype

    def output_shape(self):
        return self.feature_shape

    def initial_state(self, batch_size: int) -> filters.LowPassState:
        return filters.LowPassState(jnp.zeros((batch_size, *self.feature_shape), self.dtype))

    def __call__(self, x, state=None, *, key=None):
        return filters.first_order_low_pass(x.astype(self.dtype), self.alpha_1[...].astype(self.dtype), state)


class OutputFilter(nnx.Module):
    """Frozen, peak-normalised dual-exponential readout filter (associative memory), per feature of shape F."""

    def __init__(self, feature_shape: Sequence[int], tau_m: float, tau_s: float, *, dtype=jnp.float32,
                 param_dtype=jnp.float32):
        self.feature_shape = tuple(feature_shape)
        self.decay_m = Constant(jnp.asarray(math.exp(-1.0 / tau_m), param_dtype))
        self.decay_s = Constant(jnp.asarray(math.exp(-1.0 / tau_s), param_dtype))
        self.v0 = Constant(jnp.asarray(filters.dual_exp_peak_normaliser(tau_m, tau_s), param_dtype))
        self.dtype = dtype

    def output_shape(self):
        return self.feature_shape

    def initial_state(self, batch_size: int) -> filters.OutputFilterState:
        # Two arrays, not one twice: a train step donates its state, and a buffer can be donated only once.
        return filters.OutputFilterState(*(jnp.zeros((batch_size, *self.feature_shape), self.dtype) for _ in range(2)))

    def __call__(self, x, state=None, *, key=None):
        cast = lambda v: v[...].astype(self.dtype)
        return filters.dual_exp_output_filter(x.astype(self.dtype), cast(self.decay_m), cast(self.decay_s),
                                              cast(self.v0), state)


class _SpikingLayer(nnx.Module):
    """Shared neuron half of SpikingDense and SpikingConv: frozen reset constants and the spiking scan."""

    def _init_neuron(self, output_shape, tau_m, reset_v, membrane_filter, surrogate_name, surrogate_width,
                     threshold, dtype, param_dtype):
        decay = math.exp(-1.0 / tau_m)
        self.neuron_shape = tuple(output_shape)
        self.reset_decay = Constant(jnp.asarray(decay, param_dtype))
        self.reset_v = Constant(jnp.asarray(reset_v, param_dtype))
        self.decay_v = Constant(jnp.asarray(decay, param_dtype))
        self.membrane_filter = bool(membrane_filter)
        self.surrogate_name = surrogate_name
        self.surrogate_width = float(surrogate_width)
        self.threshold = float(threshold)
        self.dtype = dtype

    def output_shape(self):
        return self.neuron_shape

    def initial_state(self, batch_size: int) -> neurons.NeuronState:
        # Two arrays, not one twice: a train step donates its state, and a buffer can be donated only once.
        return neurons.NeuronState(*(jnp.zeros((batch_size, *self.neuron_shape), self.dtype) for _ in range(2)))

    def _spikes(self, current, state):
        cast = lambda v: v[...].astype(self.dtype)
        return neurons.spiking_neuron(
            current, state, reset_decay=cast(self.reset_decay), reset_v=cast(self.reset_v),
            decay_v=cast(self.decay_v), membrane_filter=self.membrane_filter, threshold=self.threshold,
            surrogate_name=self.surrogate_name, surrogate_width=self.surrogate_width)


class SpikingDense(_SpikingLayer):
    """Fully connected spiking layer: I = x W + b for all T*B frames in one matmul, then the neuron scan.

    kernel [N_in, N_out] (the transpose of PyTorch's Linear.weight), bias [N_out] when use_bias.
    """

    def __init__(self, in_features: int, out_features: int, *, tau_m: float, use_bias: bool = True,
                 reset_v: float = 1.0, membrane_filter: bool = False, surrogate_name: str = "gaussian",
                 surrogate_width: float = 0.4, threshold: float = 1.0, dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.kernel = nnx.Param(_torch_uniform(rngs.params(), (in_features, out_features), in_features, param_dtype))
        self.bias = (nnx.Param(_torch_uniform(rngs.params(), (out_features,), in_features, param_dtype))
                     if use_bias else None)
        self._init_neuron((out_features,), tau_m, reset_v, membrane_filter, surrogate_name, surrogate_width,
                          threshold, dtype, param_dtype)

    def __call__(self, x, state=None, *, key=None):
        current = jnp.einsum("tbi,io->tbo", x.astype(self.dtype), self.kernel[...].astype(self.dtype))
        if self.bias is not None:
            current = add_bias(current, self.bias[...].astype(self.dtype))
        return self._spikes(checkpoint_name(current, SYNAPTIC_CURRENT), state)


class SpikingConv(_SpikingLayer):
    """2-D convolutional spiking layer over [T, B, H, W, C]: one NHWC conv over all T*B frames, then the scan.

    kernel [k, k, C_in, C_out] (HWIO), bias [C_out]; symmetric zero padding; dilation 1 (as the reference).
    """

    def __init__(self, input_shape: Sequence[int], out_channels: int, kernel_size: int, stride: int,
                 padding: int, *, tau_m: float, use_bias: bool = True, reset_v: float = 1.0,
                 membrane_filter: bool = False, surrogate_name: str = "gaussian", surrogate_width: float = 0.4,
                 threshold: float = 1.0, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
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
                          surrogate_width, threshold, dtype, param_dtype)

    def __call__(self, x, state=None, *, key=None):
        t, b = x.shape[:2]
        frames = x.reshape(t * b, *x.shape[2:]).astype(self.dtype)
        current = jax.lax.conv_general_dilated(
            frames, self.kernel[...].astype(self.dtype), (self.stride, self.stride),
            [(self.padding, self.padding)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))
        if self.bias is not None:
            current = add_bias(current, self.bias[...].astype(self.dtype))
        current = checkpoint_name(current.reshape(t, b, *current.shape[1:]), SYNAPTIC_CURRENT)
        return self._spikes(current, state)


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

    def __call__(self, x, state=None, *, key=None):
        if key is None or self.rate == 0.0:
            return x, None
        keep = jax.random.bernoulli(key, 1.0 - self.rate, x.shape)
        return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros_like(x)), None
