"""layers.py: each NNX layer against a naive numpy route (matmul per step, conv and pooling by explicit loops).

Layout under test: x [T, B, *F]; T=13, B=3 and the feature sizes are distinct.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import signal

from iirsnn_jax import filters, layers, neurons

T, B = 13, 3
TAU_M = 4.0
DECAY = math.exp(-1.0 / TAU_M)


def _loop_neuron(current, reset_decay, reset_v=1.0):
    """SPEC 1.7 without the membrane filter, elementwise in float32: v = I - r; s = v > 1; r = d r + reset_v s."""
    current = np.asarray(current, np.float32)
    r = np.zeros(current.shape[1:], np.float32)
    out = np.zeros_like(current)
    for t in range(current.shape[0]):
        v = current[t] - r
        s = (v > np.float32(1.0)).astype(np.float32)
        r = np.float32(reset_decay) * r + np.float32(reset_v) * s
        out[t] = s
    return out


class _Capture:
    """Stands in for neurons.spiking_scan to record the current a spiking layer computes (W x + b: the scan
    adds the bias)."""

    def __init__(self, monkeypatch):
        self.current = None
        real = neurons.spiking_scan

        def capture(current, state, spec, **kw):
            bias = 0.0 if kw.get("bias") is None else np.asarray(kw["bias"])
            self.current = np.asarray(current) + bias
            return real(current, state, spec, **kw)

        monkeypatch.setattr(neurons, "spiking_scan", capture)


# ----------------------------------------------------------------------------------------------------------
# Filter layers
# ----------------------------------------------------------------------------------------------------------


def test_dual_exp_filter_layer_coefficients_and_trainability():
    shape = (4, 7, 2)
    layer = layers.DualExpFilter(shape, 4.0, 1.0)
    for name, value in zip(("alpha_1", "alpha_2", "beta_1"), (1.1466801, -0.2865048, 0.4109213)):
        var = getattr(layer, name)
        assert isinstance(var, nnx.Param)
        assert var[...].shape == shape and var[...].dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(var[...]), value, atol=3e-7)
    frozen = layers.DualExpFilter(shape, 4.0, 1.0, trainable=False)
    assert not isinstance(frozen.alpha_1, nnx.Param) and isinstance(frozen.alpha_1, layers.Constant)
    assert frozen.alpha_1[...].shape == shape


def test_dual_exp_filter_layer_uses_its_own_per_element_parameters():
    # Change the parameters to distinct per-element values; the output must follow them (lfilter per element).
    rng = np.random.default_rng(30)
    n = 5
    layer = layers.DualExpFilter((n,), 4.0, 1.0)
    a1, a2, b1 = rng.uniform(0.3, 1.1, n), rng.uniform(-0.4, -0.05, n), rng.uniform(0.1, 0.9, n)
    layer.alpha_1[...] = jnp.asarray(a1, jnp.float32)
    layer.alpha_2[...] = jnp.asarray(a2, jnp.float32)
    layer.beta_1[...] = jnp.asarray(b1, jnp.float32)
    x = rng.normal(size=(T, B, n)).astype(np.float32)
    y, state = layer(jnp.asarray(x))
    expected = np.stack([signal.lfilter([b1[i]], [1, -a1[i], -a2[i]], x[:, :, i], axis=0) for i in range(n)], -1)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=2e-5, atol=2e-6)
    assert isinstance(state, filters.DualExpState) and state.y1.shape == (B, n)
    init = layer.initial_state(B)
    assert init.y1.shape == (B, n) and float(jnp.abs(init.y1).sum() + jnp.abs(init.y2).sum()) == 0.0


@pytest.mark.parametrize("make, fields", [
    (lambda: layers.DualExpFilter((4, 7, 2), 4.0, 1.0), ("y1", "y2")),
    (lambda: layers.LowPassFilter((4, 7, 2), 4.0), ("y1",)),
    (lambda: layers.OutputFilter((4, 7, 2), 8.0, 2.0), ("m", "s")),
])
def test_filter_layers_share_shapes_and_zero_states(make, fields):
    layer = make()
    assert layer.output_shape() == (4, 7, 2)
    state = layer.initial_state(B)
    assert type(state) is layer.state_type and state._fields == fields
    assert all(s.shape == (B, 4, 7, 2) and s.dtype == jnp.float32 and not np.any(s) for s in state)
    # one buffer per field: a train step donates its state, and a buffer can be donated only once
    assert len({id(s) for s in state}) == len(fields)
    y, final = layer(jnp.ones((T, B, 4, 7, 2)), state)
    assert type(final) is layer.state_type and y.shape == (T, B, 4, 7, 2)


def test_filter_layers_accept_bool_events():
    # SPEC 1.1: event inputs are bool tensors; the filter layers promote them to float.
    events = np.random.default_rng(38).random((T, B, 4, 7, 2)) < 0.3
    for layer in (layers.DualExpFilter((4, 7, 2), 4.0, 1.0), layers.LowPassFilter((4, 7, 2), 4.0)):
        y_bool, _ = layer(jnp.asarray(events))
        y_float, _ = layer(jnp.asarray(events, jnp.float32))
        assert y_bool.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(y_bool), np.asarray(y_float))


def test_low_pass_layer():
    rng = np.random.default_rng(31)
    layer = layers.LowPassFilter((5,), 4.0)
    np.testing.assert_allclose(np.asarray(layer.alpha_1[...]), 0.7788007, atol=1e-7)
    a1 = rng.uniform(0.2, 0.95, 5)
    layer.alpha_1[...] = jnp.asarray(a1, jnp.float32)
    x = rng.normal(size=(T, B, 5)).astype(np.float32)
    y, _ = layer(jnp.asarray(x))
    expected = np.stack([signal.lfilter([1.0], [1, -a1[i]], x[:, :, i], axis=0) for i in range(5)], -1)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=2e-5, atol=2e-6)


def test_output_filter_layer_is_frozen_and_peak_normalised():
    layer = layers.OutputFilter((5,), 8.0, 2.0)
    assert not nnx.state(layer, nnx.Param)  # nothing trainable
    x = np.zeros((T, B, 5), np.float32)
    x[0] = 1.0
    y, _ = layer(jnp.asarray(x))
    # SPEC 1.16 axon/output-filter impulse response for tau 8/2.
    np.testing.assert_allclose(np.asarray(y)[:8, 1, 3],
                               [0, .584092, .869729, .982409, .997302, .959164, .894404, .818389], atol=1.5e-6)


# ----------------------------------------------------------------------------------------------------------
# SpikingDense
# ----------------------------------------------------------------------------------------------------------


def test_dense_init_is_pytorch_uniform():
    n_in, n_out = 400, 300
    layer = layers.SpikingDense(n_in, n_out, tau_m=TAU_M, rngs=nnx.Rngs(params=0))
    bound = 1.0 / math.sqrt(n_in)
    w, b = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
    assert w.shape == (n_in, n_out) and b.shape == (n_out,)
    for arr in (w, b):
        assert np.abs(arr).max() <= bound
        assert np.abs(arr).max() > 0.95 * bound  # uses the whole range, not a narrower init
    assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound  # uniform's standard deviation
    np.testing.assert_allclose(np.asarray(layer.reset_decay[...]), DECAY, rtol=1e-7)
    assert layers.SpikingDense(n_in, 7, tau_m=TAU_M, use_bias=False, rngs=nnx.Rngs(params=0)).bias is None


def test_dense_current_and_spikes_against_per_step_matmul(monkeypatch):
    n_in, n_out = 5, 4
    rng = np.random.default_rng(32)
    layer = layers.SpikingDense(n_in, n_out, tau_m=TAU_M, rngs=nnx.Rngs(params=1))
    kernel = rng.normal(size=(n_in, n_out)).astype(np.float32)
    bias = rng.normal(size=(n_out,)).astype(np.float32)
    layer.kernel[...] = jnp.asarray(kernel)
    layer.bias[...] = jnp.asarray(bias)
    x = rng.uniform(0, 1.5, size=(T, B, n_in)).astype(np.float32)
    capture = _Capture(monkeypatch)
    spikes, state = layer(jnp.asarray(x))
    expected_current = np.stack([x[t].astype(np.float64) @ kernel + bias for t in range(T)])
    assert capture.current.shape == (T, B, n_out)
    np.testing.assert_allclose(capture.current, expected_current, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(spikes), _loop_neuron(capture.current, DECAY))
    assert 0 < float(spikes.sum()) < spikes.size
    assert isinstance(state, neurons.NeuronState) and state.v.shape == (B, n_out)


# ----------------------------------------------------------------------------------------------------------
# SpikingConv
# ----------------------------------------------------------------------------------------------------------


def _naive_conv(x, kernel, bias, stride, padding):
    """Cross-correlation (PyTorch Conv2d semantics) of frames x [M, H, W, Cin] with kernel [k, k, Cin, Cout],
    zero padding, by an explicit loop over output pixels."""
    m, h, w, c_in = x.shape
    k, _, _, c_out = kernel.shape
    xp = np.zeros((m, h + 2 * padding, w + 2 * padding, c_in))
    xp[:, padding:padding + h, padding:padding + w] = x
    h_out = (h + 2 * padding - (k - 1) - 1) // stride + 1  # SPEC 1.8
    w_out = (w + 2 * padding - (k - 1) - 1) // stride + 1
    out = np.zeros((m, h_out, w_out, c_out))
    for i in range(h_out):
        for j in range(w_out):
            patch = xp[:, i * stride:i * stride + k, j * stride:j * stride + k, :]  # [M, k, k, Cin]
            for o in range(c_out):
                out[:, i, j, o] = (patch * kernel[:, :, :, o]).sum(axis=(1, 2, 3)) + bias[o]
    return out


def test_conv_current_against_naive_convolution(monkeypatch):
    h, w, c_in, c_out, k, stride, pad = 7, 6, 2, 5, 3, 2, 1
    rng = np.random.default_rng(33)
    layer = layers.SpikingConv((h, w, c_in), c_out, k, stride, pad, tau_m=TAU_M, rngs=nnx.Rngs(params=2))
    assert layer.output_shape() == (4, 3, c_out)
    kernel = rng.normal(size=(k, k, c_in, c_out)).astype(np.float32)
    bias = rng.normal(size=(c_out,)).astype(np.float32)
    layer.kernel[...] = jnp.asarray(kernel)
    layer.bias[...] = jnp.asarray(bias)
    x = rng.uniform(0, 1, size=(T, B, h, w, c_in)).astype(np.float32)
    capture = _Capture(monkeypatch)
    spikes, _ = layer(jnp.asarray(x))
    expected = _naive_conv(x.reshape(T * B, h, w, c_in), kernel, bias, stride, pad).reshape(T, B, 4, 3, c_out)
    np.testing.assert_allclose(capture.current, expected, rtol=1e-5, atol=1e-5)
    assert spikes.shape == (T, B, 4, 3, c_out)
    np.testing.assert_array_equal(np.asarray(spikes), _loop_neuron(capture.current, DECAY))


def test_conv_init_and_output_sizes_from_spec():
    layer = layers.SpikingConv((34, 34, 2), 32, 3, 1, 1, tau_m=TAU_M, rngs=nnx.Rngs(params=0))
    bound = 1.0 / math.sqrt(2 * 3 * 3)
    assert float(jnp.abs(layer.kernel[...]).max()) > 0.9 * bound
    assert layer.kernel[...].shape == (3, 3, 2, 32) and layer.output_shape() == (34, 34, 32)
    assert float(jnp.abs(layer.kernel[...]).max()) <= bound and float(jnp.abs(layer.bias[...]).max()) <= bound
    # gesture's first two layers (SPEC 0): 128 -> 42 (k7 s3 p1), 42 -> 14 (k3 s3 p0)
    abstract = lambda *a: nnx.eval_shape(lambda: layers.SpikingConv(*a, tau_m=TAU_M, rngs=nnx.Rngs(params=0)))
    g1 = abstract((128, 128, 2), 4, 7, 3, 1)
    assert g1.output_shape() == (42, 42, 4)
    g2 = abstract((42, 42, 4), 3, 3, 3, 0)
    assert g2.output_shape() == (14, 14, 3)
    with pytest.raises(ValueError):
        layers.SpikingConv((4, 4, 1), 2, 7, 1, 0, tau_m=TAU_M, rngs=nnx.Rngs(params=0))


# ----------------------------------------------------------------------------------------------------------
# MaxPool, Flatten, Dropout
# ----------------------------------------------------------------------------------------------------------


def _naive_maxpool(x, k, s, p):
    """PyTorch MaxPool2d: -inf padding, windows over frames x [M, H, W, C]."""
    m, h, w, c = x.shape
    xp = np.full((m, h + 2 * p, w + 2 * p, c), -np.inf)
    xp[:, p:p + h, p:p + w] = x
    h_out, w_out = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.empty((m, h_out, w_out, c))
    for i in range(h_out):
        for j in range(w_out):
            out[:, i, j] = xp[:, i * s:i * s + k, j * s:j * s + k].max(axis=(1, 2))
    return out


@pytest.mark.parametrize("size,k,s,p,out_size", [(34, 2, 2, 1, 18), (18, 2, 2, 0, 9), (9, 3, 2, 1, 5)])
def test_maxpool_against_naive_loop_with_negative_inputs(size, k, s, p, out_size):
    rng = np.random.default_rng(34)
    c = 2
    x = -rng.uniform(0.5, 3.0, size=(T, B, size, size, c)).astype(np.float32)  # all negative
    pool = layers.MaxPool((size, size, c), k, s, p)
    assert pool.output_shape() == (out_size, out_size, c)
    y, state = pool(jnp.asarray(x))
    assert state is None and y.shape == (T, B, out_size, out_size, c)
    expected = _naive_maxpool(x.reshape(T * B, size, size, c), k, s, p).reshape(y.shape)
    np.testing.assert_array_equal(np.asarray(y), expected)
    assert np.all(np.asarray(y) < 0)  # padding never wins: no zero, no -inf
    if (k, p) == (2, 1):
        # the corner window of (2,2,1) holds one real element, x[0, 0]
        np.testing.assert_array_equal(np.asarray(y)[..., 0, 0, :], x[..., 0, 0, :])


def test_maxpool_rejects_padding_larger_than_half_kernel():
    with pytest.raises(ValueError):
        layers.MaxPool((6, 6, 1), 2, 2, 2)


def test_flatten_is_row_major_h_w_c():
    h, w, c = 4, 7, 2
    x = np.random.default_rng(35).normal(size=(T, B, h, w, c)).astype(np.float32)
    flat = layers.Flatten((h, w, c))
    assert flat.output_shape() == (h * w * c,)
    y, _ = flat(jnp.asarray(x))
    y = np.asarray(y)
    assert y.shape == (T, B, h * w * c)
    for i in range(h):
        for j in range(w):
            for ch in range(c):
                np.testing.assert_array_equal(y[:, :, (i * w + j) * c + ch], x[:, :, i, j, ch])


def test_dropout_identity_without_key():
    x = jnp.asarray(np.random.default_rng(36).uniform(0.1, 1, (T, B, 50)).astype(np.float32))
    drop = layers.Dropout((50,), 0.3)
    y, state = drop(x)
    assert state is None
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x))


def test_dropout_with_key_scales_kept_values_and_masks_each_step():
    n, rate = 500, 0.3
    rng = np.random.default_rng(37)
    x = rng.uniform(0.1, 1.0, (T, B, n)).astype(np.float32)  # strictly positive: 0 in y means dropped
    drop = layers.Dropout((n,), rate)
    y, _ = drop(jnp.asarray(x), key=jax.random.key(0))
    y = np.asarray(y)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=1e-6)
    assert abs(kept.mean() - (1 - rate)) < 0.02  # 19500 draws: std ~ 0.0033
    # a fresh mask at every time step (and for every batch element)
    assert all(not np.array_equal(kept[t], kept[0]) for t in range(1, T))
    assert not np.array_equal(kept[:, 0], kept[:, 1])
    # scaled spikes take the values {0, 1/0.7} (SPEC 1.10)
    ys, _ = drop(jnp.ones((T, B, n), jnp.float32), key=jax.random.key(1))
    np.testing.assert_allclose(np.unique(np.asarray(ys)), [0.0, 1 / 0.7], rtol=1e-6)
    # same key -> same mask; another key -> another mask
    y_again, _ = drop(jnp.asarray(x), key=jax.random.key(0))
    y_other, _ = drop(jnp.asarray(x), key=jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(y_again), y)
    assert not np.array_equal(np.asarray(y_other) != 0, kept)


@pytest.mark.parametrize("rate", [0.3, 0.05])
def test_dropout_keep_probability_and_independence(rate):
    # 16-bit draws, two per 32-bit word: the rate holds to sampling error, and the two elements that share a
    # word (i and i + width/2) are independent.
    shape, width = (50, 64, 1000), 1000
    keep = np.asarray(layers.Dropout((width,), rate).keep_mask(shape, jax.random.key(3)))
    n = keep.size
    assert abs(keep.mean() - (1 - rate)) < 5 * math.sqrt(rate * (1 - rate) / n)
    pairs = keep[..., : width // 2] & keep[..., width // 2:]
    assert abs(pairs.mean() - (1 - rate) ** 2) < 5 * math.sqrt((1 - rate) ** 2 * (1 - (1 - rate) ** 2) / (n / 2))


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_dropout_rejects_bad_rate(rate):
    with pytest.raises(ValueError):
        layers.Dropout((5,), rate)
