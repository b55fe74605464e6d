"""Scratch prototypes of library changes, as drop-in replacements patched in at trace time (variants.py)."""
from __future__ import annotations

import functools
import sys

import jax
import jax.numpy as jnp

from iirsnn_jax import filters, layers, neurons, surrogate
from iirsnn_jax.training import steps as steps_lib

UNROLL = {'f': 1, 'n': 1}  # unroll of the custom-VJP scans, set by variant components
_orig_dual = filters.dual_exp_iir
_orig_low = filters.first_order_low_pass
_orig_neuron = neurons.spiking_neuron
_orig_conv_call = layers.SpikingConv.__call__


# ---------------------------------------------------------------- attribution (not exact computations)
def dual_identity(x, alpha_1, alpha_2, beta_1, state=None):
    x = filters._float_input(x, alpha_1, alpha_2, beta_1)
    z = jnp.zeros(x.shape[1:], x.dtype)
    return beta_1 * x + 0.0 * (alpha_1 + alpha_2), filters.DualExpState(z, z)


def neuron_elementwise(current, state=None, *, reset_decay, reset_v, decay_v, membrane_filter=False,
                       threshold=1.0, surrogate_name="gaussian", surrogate_width=0.4):
    z = jnp.zeros(current.shape[1:], current.dtype)
    return surrogate.spike(current, threshold, surrogate_name, surrogate_width), neurons.NeuronState(z, z)


def conv_cheap(self, x, state=None, *, key=None):
    """Replaces the conv by a 1x1 'conv' (channel matmul) + strided slice of the right output shape."""
    t, b = x.shape[:2]
    frames = x.reshape(t * b, *x.shape[2:]).astype(self.dtype)
    h, w, c = self.neuron_shape
    p, s = self.padding, self.stride
    frames = jnp.pad(frames, ((0, 0), (p, p), (p, p), (0, 0)))[:, : s * (h - 1) + 1: s, : s * (w - 1) + 1: s]
    k = self.kernel[...].astype(self.dtype)
    current = frames @ k.sum(axis=(0, 1))
    current = current + self.bias[...].astype(self.dtype)
    return self._spikes(current.reshape(t, b, *current.shape[1:]), state)


# ---------------------------------------------------------------- scan unrolling (exact)
def dual_unroll(unroll):
    def f(x, alpha_1, alpha_2, beta_1, state=None):
        x = filters._float_input(x, alpha_1, alpha_2, beta_1)
        if state is None:
            z = jnp.zeros(x.shape[1:], x.dtype)
            state = filters.DualExpState(z, z)
        drive = beta_1 * x

        def step(carry, d):
            y1, y2 = carry
            y = alpha_1 * y1 + alpha_2 * y2 + d
            return filters.DualExpState(y, y1), y

        final, y = jax.lax.scan(step, state, drive, unroll=unroll)
        return y, final
    return f


def neuron_unroll(unroll):
    def f(current, state=None, *, reset_decay, reset_v, decay_v, membrane_filter=False, threshold=1.0,
          surrogate_name="gaussian", surrogate_width=0.4):
        if state is None:
            z = jnp.zeros(current.shape[1:], current.dtype)
            state = neurons.NeuronState(z, z)

        def step(carry, c):
            v_prev, r_prev = carry
            v = decay_v * v_prev + c - r_prev if membrane_filter else c - r_prev
            s = surrogate.spike(v, threshold, surrogate_name, surrogate_width)
            r = reset_decay * r_prev + reset_v * s
            return neurons.NeuronState(v, r), s

        final, s = jax.lax.scan(step, state, current, unroll=unroll)
        return s, final
    return f


# ---------------------------------------------------------------- spiking scan with a hand-written VJP
def neuron_custom_vjp(current, state=None, *, reset_decay, reset_v, decay_v, membrane_filter=False,
                      threshold=1.0, surrogate_name="gaussian", surrogate_width=0.4):
    """Forward stores only the surrogate slope g[t] ([T, B, *F]); the backward is one fused reverse scan.
    The frozen constants (reset_decay, reset_v, decay_v) and the incoming state get no gradient."""
    if state is None:
        z = jnp.zeros(current.shape[1:], current.dtype)
        state = neurons.NeuronState(z, z)
    state = jax.lax.stop_gradient(state)
    consts = jax.lax.stop_gradient((reset_decay, reset_v, decay_v))
    sg = surrogate.SURROGATES[surrogate_name]

    def forward(current, state, consts, need_slope):
        rd, rv, dv = consts

        def step(carry, c):
            v_prev, r_prev = carry
            v = dv * v_prev + c - r_prev if membrane_filter else c - r_prev
            s = (v > threshold).astype(c.dtype)
            r = rd * r_prev + rv * s
            out = (s, sg(v - threshold, surrogate_width).astype(c.dtype)) if need_slope else s
            return neurons.NeuronState(v, r), out

        return jax.lax.scan(step, state, current, unroll=UNROLL['n'])

    @jax.custom_vjp
    def run(current, state, consts):
        final, s = forward(current, state, consts, False)
        return s, final

    def run_fwd(current, state, consts):
        final, (s, g) = forward(current, state, consts, True)
        return (s, final), (g, consts, state)

    def run_bwd(res, cts):
        g, consts, state = res
        ct_s, ct_final = cts
        rd, rv, dv = consts

        def step(carry, inp):
            ct_r, ct_v = carry  # cotangents of r[t] and v[t] flowing from step t+1
            ct_s_t, g_t = inp
            ct_vt = g_t * (ct_s_t + rv * ct_r) + ct_v
            ct_r_prev = rd * ct_r - ct_vt
            ct_v_prev = dv * ct_vt if membrane_filter else jnp.zeros_like(ct_vt)
            return (ct_r_prev, ct_v_prev), ct_vt

        zero_final = jnp.zeros_like(g[0])
        ct_r0 = zero_final if type(ct_final.r) is jax.custom_derivatives.SymbolicZero else ct_final.r
        ct_v0 = zero_final if type(ct_final.v) is jax.custom_derivatives.SymbolicZero else ct_final.v
        _, ct_current = jax.lax.scan(step, (jnp.broadcast_to(ct_r0, zero_final.shape),
                                            jnp.broadcast_to(ct_v0, zero_final.shape)), (ct_s, g), reverse=True, unroll=UNROLL['n'])
        return ct_current, jax.tree.map(jnp.zeros_like, state), jax.tree.map(jnp.zeros_like, consts)

    run.defvjp(run_fwd, run_bwd)
    return run(current, state, consts)


# ---------------------------------------------------------------- convolution as matmuls (exact math)
def _patches(frames, kh, kw, stride, padding, ho, wo):
    xp = jnp.pad(frames, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    cols = [xp[:, i: i + stride * (ho - 1) + 1: stride, j: j + stride * (wo - 1) + 1: stride, :]
            for i in range(kh) for j in range(kw)]
    return jnp.concatenate(cols, axis=-1)  # [N, ho, wo, kh*kw*C_in], (i, j, c) order = HWIO reshape


def conv_im2col(self, x, state=None, *, key=None):
    t, b = x.shape[:2]
    frames = x.reshape(t * b, *x.shape[2:]).astype(self.dtype)
    kernel = self.kernel[...].astype(self.dtype)
    kh, kw, cin, cout = kernel.shape
    ho, wo, _ = self.neuron_shape
    patches = _patches(frames, kh, kw, self.stride, self.padding, ho, wo)
    current = patches @ kernel.reshape(kh * kw * cin, cout)
    if self.bias is not None:
        current = current + self.bias[...].astype(self.dtype)
    return self._spikes(current.reshape(t, b, *current.shape[1:]), state)


def conv_taps(self, x, state=None, *, key=None):
    """Sum over the k*k taps of [N*H*W, C_in] @ [C_in, C_out]: no patch matrix."""
    t, b = x.shape[:2]
    frames = x.reshape(t * b, *x.shape[2:]).astype(self.dtype)
    kernel = self.kernel[...].astype(self.dtype)
    kh, kw, cin, cout = kernel.shape
    ho, wo, _ = self.neuron_shape
    p, s = self.padding, self.stride
    xp = jnp.pad(frames, ((0, 0), (p, p), (p, p), (0, 0)))
    current = None
    for i in range(kh):
        for j in range(kw):
            term = xp[:, i: i + s * (ho - 1) + 1: s, j: j + s * (wo - 1) + 1: s, :] @ kernel[i, j]
            current = term if current is None else current + term
    if self.bias is not None:
        current = current + self.bias[...].astype(self.dtype)
    return self._spikes(current.reshape(t, b, *current.shape[1:]), state)


def conv_im2col_small_cin(self, x, state=None, *, key=None):
    """im2col when k*k*C_in is large enough for a good matmul, XLA's conv otherwise (first layer, C_in 1-2)."""
    if self.kernel.shape[2] * self.kernel.shape[0] * self.kernel.shape[1] < 64:
        return _orig_conv_call(self, x, state, key=key)
    return conv_im2col(self, x, state, key=key)


def _n(f):
    return [(neurons, "spiking_neuron", f)]


def _f(f):
    return [(filters, "dual_exp_iir", f)]


def _c(f):
    return [(layers.SpikingConv, "__call__", f)]


# ---------------------------------------------------------------- IIR filter with a hand-written VJP
def _unbroadcast(acc, shape):
    """Sum acc [B, *F] down to a coefficient's shape (which broadcasts against [B, *F])."""
    shape = tuple(shape)
    lead = acc.ndim - len(shape)
    acc = acc.sum(axis=tuple(range(lead))) if lead else acc
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and acc.shape[i] != 1)
    return acc.sum(axis=axes, keepdims=True) if axes else acc


@jax.custom_vjp
def _dual_core(x, a1, a2, b1, y1, y2):
    def step(carry, x_t):
        p1, p2 = carry
        y = a1 * p1 + a2 * p2 + b1 * x_t
        return (y, p1), y
    (f1, f2), y = jax.lax.scan(step, (y1, y2), x, unroll=UNROLL['f'])
    return y, f1, f2


def _dual_fwd(x, a1, a2, b1, y1, y2):
    y, f1, f2 = _dual_core(x, a1, a2, b1, y1, y2)
    return (y, f1, f2), (x, y, a1, a2, b1, y1, y2)


def _dual_bwd(res, cts):
    x, y, a1, a2, b1, y1, y2 = res
    ct_y, ct_f1, ct_f2 = cts
    ct_y = ct_y.at[-1].add(ct_f1)            # final state (y[T-1], y[T-2]) is part of the output
    ct_y = ct_y.at[-2].add(ct_f2) if ct_y.shape[0] > 1 else ct_y
    z = jnp.zeros(x.shape[1:], y.dtype)

    def step(carry, inp):
        l1, l2, g1, g2, gb = carry          # lambda[t+1], lambda[t+2], accumulators [B, *F]
        ct_t, x_t, y_t = inp
        lam = ct_t + a1 * l1 + a2 * l2
        return (lam, l1, g1 + l1 * y_t, g2 + l2 * y_t, gb + lam * x_t), b1 * lam

    (l0, l1, g1, g2, gb), ct_x = jax.lax.scan(step, (z, z, z, z, z), (ct_y, x, y), reverse=True, unroll=UNROLL['f'])
    g1 = g1 + l0 * y1
    g2 = g2 + l0 * y2 + l1 * y1
    ct_y1 = a1 * l0 + a2 * l1
    ct_y2 = a2 * l0
    return (ct_x.astype(x.dtype), _unbroadcast(g1, jnp.shape(a1)), _unbroadcast(g2, jnp.shape(a2)),
            _unbroadcast(gb, jnp.shape(b1)), ct_y1, ct_y2)


_dual_core.defvjp(_dual_fwd, _dual_bwd)


def dual_custom_vjp(x, alpha_1, alpha_2, beta_1, state=None):
    x = filters._float_input(x, alpha_1, alpha_2, beta_1)
    if state is None:
        z = jnp.zeros(x.shape[1:], x.dtype)
        state = filters.DualExpState(z, z)
    y1 = jnp.broadcast_to(state.y1, x.shape[1:]).astype(x.dtype)
    y2 = jnp.broadcast_to(state.y2, x.shape[1:]).astype(x.dtype)
    y, f1, f2 = _dual_core(x, alpha_1, alpha_2, beta_1, y1, y2)
    return y, filters.DualExpState(f1, f2)


# ---------------------------------------------------------------- in-place variants: no zero-initialised scan outputs
def _rev_scan_inplace(body, buf, carry, T):
    """Runs body(t, buf, carry) -> (buf, carry) for t = T-1 .. 0; buf is updated in place (scan carry)."""
    def step(c, t):
        return body(t, *c), None
    (buf, carry), _ = jax.lax.scan(step, (buf, carry), jnp.arange(T - 1, -1, -1))
    return buf, carry


def _dual_bwd_inplace(res, cts):
    x, y, a1, a2, b1, y1, y2 = res
    ct_y, ct_f1, ct_f2 = cts
    ct_y = ct_y.at[-1].add(ct_f1)
    ct_y = ct_y.at[-2].add(ct_f2) if ct_y.shape[0] > 1 else ct_y
    z = jnp.zeros(x.shape[1:], y.dtype)

    def body(t, buf, carry):
        l1, l2, g1, g2, gb = carry
        ct_t, buf = jax.lax.optimization_barrier((buf[t], buf))  # read slice t before the in-place write
        lam = ct_t + a1 * l1 + a2 * l2
        y_t, x_t = y[t], x[t]
        buf = jax.lax.dynamic_update_index_in_dim(buf, (b1 * lam).astype(buf.dtype), t, 0)
        return buf, (lam, l1, g1 + l1 * y_t, g2 + l2 * y_t, gb + lam * x_t)

    ct_x, (l0, l1, g1, g2, gb) = _rev_scan_inplace(body, ct_y, (z, z, z, z, z), x.shape[0])
    g1 = g1 + l0 * y1
    g2 = g2 + l0 * y2 + l1 * y1
    return (ct_x.astype(x.dtype), _unbroadcast(g1, jnp.shape(a1)), _unbroadcast(g2, jnp.shape(a2)),
            _unbroadcast(gb, jnp.shape(b1)), a1 * l0 + a2 * l1, a2 * l0)


def _dual_forward_ip(x, a1, a2, b1, y1, y2):
    """The forward scan writing y into its own buffer (not a scan output, whose zero init XLA shares)."""
    def step(c, t):
        buf, p1, p2 = c
        y = a1 * p1 + a2 * p2 + b1 * x[t]
        return (jax.lax.dynamic_update_index_in_dim(buf, y, t, 0), y, p1), None
    buf = jax.lax.optimization_barrier(jnp.zeros(x.shape, jnp.result_type(x, a1, y1)))
    (y, f1, f2), _ = jax.lax.scan(step, (buf, y1, y2), jnp.arange(x.shape[0]))
    return y, f1, f2


@jax.custom_vjp
def _dual_core_ip(x, a1, a2, b1, y1, y2):
    return _dual_forward_ip(x, a1, a2, b1, y1, y2)


def _dual_fwd_ip(x, a1, a2, b1, y1, y2):
    y, f1, f2 = _dual_forward_ip(x, a1, a2, b1, y1, y2)
    return (y, f1, f2), (x, y, a1, a2, b1, y1, y2)


_dual_core_ip.defvjp(_dual_fwd_ip, _dual_bwd_inplace)


def dual_custom_vjp_inplace(x, alpha_1, alpha_2, beta_1, state=None):
    x = filters._float_input(x, alpha_1, alpha_2, beta_1)
    if state is None:
        z = jnp.zeros(x.shape[1:], x.dtype)
        state = filters.DualExpState(z, z)
    y1 = jnp.broadcast_to(state.y1, x.shape[1:]).astype(x.dtype)
    y2 = jnp.broadcast_to(state.y2, x.shape[1:]).astype(x.dtype)
    y, f1, f2 = _dual_core_ip(x, alpha_1, alpha_2, beta_1, y1, y2)
    return y, filters.DualExpState(f1, f2)


def neuron_custom_vjp_inplace(current, state=None, *, reset_decay, reset_v, decay_v, membrane_filter=False,
                              threshold=1.0, surrogate_name="gaussian", surrogate_width=0.4):
    """neuron_custom_vjp whose forward writes the spikes over the current's buffer and whose backward writes
    the current's cotangent over the spikes' cotangent: no fresh [T, B, *F] buffers besides g."""
    if state is None:
        z = jnp.zeros(current.shape[1:], current.dtype)
        state = neurons.NeuronState(z, z)
    state = jax.lax.stop_gradient(state)
    consts = jax.lax.stop_gradient((reset_decay, reset_v, decay_v))
    sg = surrogate.SURROGATES[surrogate_name]
    T = current.shape[0]

    def forward(current, state, consts, need_slope):
        rd, rv, dv = consts

        def step(c, t):
            buf, g, (v_prev, r_prev) = c
            c_t, buf = jax.lax.optimization_barrier((buf[t], buf))
            v = dv * v_prev + c_t - r_prev if membrane_filter else c_t - r_prev
            s = (v > threshold).astype(c_t.dtype)
            r = rd * r_prev + rv * s
            buf = jax.lax.dynamic_update_index_in_dim(buf, s, t, 0)
            if need_slope:
                g = jax.lax.dynamic_update_index_in_dim(g, sg(v - threshold, surrogate_width).astype(c_t.dtype), t, 0)
            return (buf, g, neurons.NeuronState(v, r)), None

        g0 = jax.lax.optimization_barrier(jnp.zeros_like(current)) if need_slope else None  # no shared zeros
        (s, g, final), _ = jax.lax.scan(step, (current, g0, state), jnp.arange(T))
        return s, g, final

    @jax.custom_vjp
    def run(current, state, consts):
        s, _, final = forward(current, state, consts, False)
        return s, final

    def run_fwd(current, state, consts):
        s, g, final = forward(current, state, consts, True)
        return (s, final), (g, consts, state)

    def run_bwd(res, cts):
        g, consts, state = res
        ct_s, ct_final = cts
        rd, rv, dv = consts

        def body(t, buf, carry):
            ct_r, ct_v = carry
            ct_t, buf = jax.lax.optimization_barrier((buf[t], buf))
            ct_vt = g[t] * (ct_t + rv * ct_r) + ct_v
            buf = jax.lax.dynamic_update_index_in_dim(buf, ct_vt, t, 0)
            return buf, (rd * ct_r - ct_vt, dv * ct_vt if membrane_filter else jnp.zeros_like(ct_vt))

        zero = jnp.zeros_like(g[0])
        ct_r0 = zero if type(ct_final.r) is jax.custom_derivatives.SymbolicZero else jnp.broadcast_to(ct_final.r, zero.shape)
        ct_v0 = zero if type(ct_final.v) is jax.custom_derivatives.SymbolicZero else jnp.broadcast_to(ct_final.v, zero.shape)
        ct_current, _ = _rev_scan_inplace(body, ct_s, (ct_r0, ct_v0), T)
        return ct_current, jax.tree.map(jnp.zeros_like, state), jax.tree.map(jnp.zeros_like, consts)

    run.defvjp(run_fwd, run_bwd)
    return run(current, state, consts)


# ---------------------------------------------------------------- max-pool without select_and_scatter
_orig_pool_call = layers.MaxPool.__call__
POOL_UNPADDED_ONLY = {"on": False}


def pool_first_max(self, x, state=None, *, key=None):
    """Non-overlapping windows (k == s): max forward; the gradient goes to the first maximum of each window in
    row-major order, as PyTorch's max_pool2d and XLA's select_and_scatter(ge) do."""
    k, s, p = self.kernel_size, self.stride, self.padding
    if k != s or (p and POOL_UNPADDED_ONLY["on"]):
        return _orig_pool_call(self, x, state, key=key)
    ho, wo, c = self._output_shape
    xp = jnp.pad(x, ((0, 0), (0, 0), (p, p), (p, p), (0, 0)), constant_values=-jnp.inf) if p else x
    xp = xp[:, :, : ho * k, : wo * k]
    w = xp.reshape(*x.shape[:2], ho, k, wo, k, c)
    elems = [w[:, :, :, i, :, j] for i in range(k) for j in range(k)]
    m = jax.lax.stop_gradient(functools.reduce(jnp.maximum, elems))
    out = None
    for e in reversed(elems):  # build where(first, e0, where(second, e1, ...)) from the inside out
        out = e if out is None else jnp.where(jax.lax.stop_gradient(e) == m, e, out)
    return out, None


def pool_cheap(self, x, state=None, *, key=None):
    """Attribution only: a strided slice of the right output shape instead of the max-pool."""
    k, s, p = self.kernel_size, self.stride, self.padding
    ho, wo, c = self._output_shape
    xp = jnp.pad(x, ((0, 0), (0, 0), (p, p), (p, p), (0, 0))) if p else x
    return xp[:, :, : ho * k: k, : wo * k: k], None


def _pool_windows(x, k, p, ho, wo):
    """[T, B, H, W, C] -> list of the k*k window elements, each [T, B, ho, wo, C], in row-major window order."""
    xp = jnp.pad(x, ((0, 0), (0, 0), (p, p), (p, p), (0, 0)), constant_values=-jnp.inf) if p else x
    w = xp[:, :, : ho * k, : wo * k].reshape(*x.shape[:2], ho, k, wo, k, x.shape[-1])
    return [w[:, :, :, i, :, j] for i in range(k) for j in range(k)]


def pool_custom_vjp(self, x, state=None, *, key=None):
    """Non-overlapping max-pool with a hand-written VJP: the cotangent goes to the first maximum of each window
    (row-major), built in one pass; no select_and_scatter, no per-element padded cotangents."""
    k, s, p = self.kernel_size, self.stride, self.padding
    if k != s:
        return _orig_pool_call(self, x, state, key=key)
    ho, wo, c = self._output_shape
    h, w = x.shape[2:4]

    @jax.custom_vjp
    def pool(x):
        return functools.reduce(jnp.maximum, _pool_windows(x, k, p, ho, wo))

    def fwd(x):
        out = pool(x)
        return out, (x, out)

    def bwd(res, ct):
        x, out = res
        taken, parts = None, []
        for e in _pool_windows(x, k, p, ho, wo):
            hit = e == out
            sel = hit if taken is None else hit & ~taken
            taken = hit if taken is None else taken | hit
            parts.append(jnp.where(sel, ct, jnp.zeros_like(ct)))
        rows = [jnp.stack(parts[i * k:(i + 1) * k], axis=-2) for i in range(k)]  # [T, B, ho, wo, k(j), C]
        full = jnp.stack(rows, axis=3).reshape(*x.shape[:2], ho * k, wo * k, x.shape[-1])
        full = jnp.pad(full, ((0, 0), (0, 0), (0, max(0, h + 2 * p - ho * k)), (0, max(0, w + 2 * p - wo * k)), (0, 0)))
        return (full[:, :, p: p + h, p: p + w].astype(x.dtype),)

    pool.defvjp(fwd, bwd)
    return pool(x), None


# ---------------------------------------------------------------- memory: remat of filter + weights, binary residuals
from iirsnn_jax import models as models_lib  # noqa: E402

_orig_net_call = models_lib.SpikingNetwork.__call__
MEMORY = {"remat": False, "binary": False}


@jax.custom_jvp
def _zero_with_identity_tangent(x):
    """0 forward, identity tangent: lets a gradient reach x without keeping x's value alive."""
    return jnp.zeros_like(x)


_zero_with_identity_tangent.defjvp(lambda p, t: (jnp.zeros_like(p[0]), t[0]))


def _weights(layer, y, kernel, bias):
    """The weight half of a spiking layer: current = W y + b over all frames."""
    if isinstance(layer, layers.SpikingDense):
        current = jnp.einsum("tbi,io->tbo", y.astype(layer.dtype), kernel.astype(layer.dtype))
        return current + bias.astype(layer.dtype) if bias is not None else current
    t, b = y.shape[:2]
    frames = y.reshape(t * b, *y.shape[2:]).astype(layer.dtype)
    current = jax.lax.conv_general_dilated(frames, kernel.astype(layer.dtype), (layer.stride,) * 2,
                                           [(layer.padding, layer.padding)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if bias is not None:
        current = current + bias.astype(layer.dtype)
    return current.reshape(t, b, *current.shape[1:])


def net_call_memory(self, inputs, state=None, *, key=None, keep_layer_spikes=True):
    """SpikingNetwork.__call__ (training, zero state) where each filter + weight pair is one jax.checkpoint
    block that keeps only its input (as bool when the input is 0/1 spikes); the neuron scan stays outside."""
    if state is not None:
        return _orig_net_call(self, inputs, state, key=key)
    b, t = inputs.shape[:2]
    x = jnp.moveaxis(inputs.reshape(b, t, *self.input_shape), 1, 0)
    lays, names = self.layers, self.layer_names
    binary = x.dtype == jnp.bool_
    new_states, layer_spikes, spikes, i = [], {}, None, 0
    while i < len(lays):
        layer, name = lays[i], names[i]
        layer_key = None if key is None else jax.random.fold_in(key, i)
        nxt = lays[i + 1] if i + 1 < len(lays) else None
        if MEMORY["remat"] and isinstance(layer, layers.DualExpFilter) and isinstance(nxt, (layers.SpikingConv, layers.SpikingDense)):
            cast = lambda v: v[...].astype(layer.dtype)

            def block(x_in, x_bits, coeffs, weights, layer=layer, nxt=nxt):
                if x_bits is not None:  # the value comes from the bits, the gradient goes to x_in
                    x_in = x_bits.astype(layer.dtype) + _zero_with_identity_tangent(x_in)
                a1, a2, b1 = coeffs
                y, fstate = filters.dual_exp_iir(x_in.astype(layer.dtype), a1, a2, b1)
                return _weights(nxt, y, *weights), fstate

            bits = jax.lax.stop_gradient(x).astype(jnp.bool_) if (MEMORY["binary"] and binary) else None
            coeffs = (cast(layer.alpha_1), cast(layer.alpha_2), cast(layer.beta_1))
            current, fstate = jax.checkpoint(block, policy=jax.checkpoint_policies.nothing_saveable)(
                x.astype(layer.dtype) if x.dtype == jnp.bool_ else x, bits, coeffs, (nxt.kernel[...], None if nxt.bias is None else nxt.bias[...]))
            x, nstate = nxt._spikes(current, None)
            new_states += [fstate, nstate]
            spikes = x
            layer_spikes[names[i + 1]] = jnp.moveaxis(x, 0, 1)
            binary, i = True, i + 2
            continue
        x, new_state = layer(x, None, key=layer_key)
        new_states.append(new_state)
        binary = isinstance(layer, (layers.SpikingConv, layers.SpikingDense)) or (binary and isinstance(layer, layers.Flatten))
        if name in self.spiking_layer_names:
            spikes = x
            layer_spikes[name] = jnp.moveaxis(x, 0, 1)
        i += 1
    rates = {n: s.reshape(s.shape[0], -1).astype(jnp.float32).mean(axis=1) for n, s in layer_spikes.items()}
    return models_lib.NetworkOutput(jnp.moveaxis(spikes, 0, 1), None, layer_spikes, rates, tuple(new_states))


def _memory(**flags):
    return [(sys.modules[__name__], "MEMORY", flags), (models_lib.SpikingNetwork, "__call__", net_call_memory)]


def net_call_full_remat(self, inputs, state=None, *, key=None):
    """Lower bound experiment: the whole forward under one jax.checkpoint (backward recomputes everything)."""
    from flax import nnx
    graphdef, st = nnx.split(self)
    def run(st, inputs):
        return _orig_net_call(nnx.merge(graphdef, st), inputs, state, key=key)
    return jax.checkpoint(run, policy=jax.checkpoint_policies.nothing_saveable)(st, inputs)


def batch_sums_time_major(out, batch, per_loss, correct):
    """steps._batch_sums with the spike rates reduced by a matmul against the mask (no per-sample reduce)."""
    mask = batch["mask"].astype(jnp.float32)
    sums = {"loss_sum": jnp.sum(per_loss * mask), "count": jnp.sum(mask)}
    if correct is not None:
        sums["correct"] = jnp.sum(correct * mask)
    for name, spikes in out.layer_spikes.items():  # [B, T, *F]: sum_b mask_b * mean(spikes_b)
        flat = spikes.reshape(spikes.shape[0], -1).astype(jnp.float32)
        sums[f"spikes/{name}"] = jnp.einsum("b,bn->", mask, flat) / flat.shape[1]
    return sums


YNN = "xla_cpu_experimental_ynn_fusion_type"
NO_YNN = {YNN: ""}
POOL = [(layers.MaxPool, "__call__", pool_first_max)]

# A variant is components joined by '+': one kind (train by default), patches, compiler options.
COMPONENTS = {
    "base": {}, "fwd": {"kind": "fwd"}, "grad": {"kind": "grad"}, "grad_adam": {"kind": "grad_adam"},
    "no_filter": {"patches": _f(dual_identity)}, "no_neuron": {"patches": _n(neuron_elementwise)},
    "cheap_conv": {"patches": _c(conv_cheap)},
    "filter_vjp": {"patches": _f(dual_custom_vjp)}, "neuron_vjp": {"patches": _n(neuron_custom_vjp)},
    "pool": {"patches": POOL},
    "all3": {"patches": _f(dual_custom_vjp) + _n(neuron_custom_vjp) + POOL},
    "unroll_f5": {"patches": _f(dual_unroll(5))}, "unroll_n5": {"patches": _n(neuron_unroll(5))},
    "im2col": {"patches": _c(conv_im2col_small_cin)}, "taps": {"patches": _c(conv_taps)},
    "noynn": {"options": NO_YNN},
    "all3v2": {"patches": _f(dual_custom_vjp) + _n(neuron_custom_vjp) + [(layers.MaxPool, "__call__", pool_custom_vjp)]},
    "bwd_inplace": {"patches": _f(dual_custom_vjp_inplace) + _n(neuron_custom_vjp) + [(layers.MaxPool, "__call__", pool_custom_vjp)]},
    "inplace2": {"patches": _f(dual_custom_vjp_inplace) + _n(neuron_custom_vjp_inplace) + [(layers.MaxPool, "__call__", pool_custom_vjp)]},
    "inplace": {"patches": _f(dual_custom_vjp_inplace) + _n(neuron_custom_vjp_inplace) + POOL},
    "cheap_pool": {"patches": [(layers.MaxPool, "__call__", pool_cheap)]},
    "pool0": {"patches": [(sys.modules[__name__], "POOL_UNPADDED_ONLY", {"on": True})]},
    "memsched": {"options": {"xla_cpu_enable_concurrency_optimized_scheduler": False}},
    "full_remat": {"patches": [(models_lib.SpikingNetwork, "__call__", net_call_full_remat)]},
    "remat": {"patches": _memory(remat=True, binary=False)},
    "remat_bits": {"patches": _memory(remat=True, binary=True)},
    "no_metrics": {"patches": [(steps_lib, "_batch_sums", lambda out, batch, per, correct: {"loss_sum": (per * batch["mask"]).sum()})]},
    "rate_tm": {"patches": [(steps_lib, "_batch_sums", batch_sums_time_major)]},
    "ynn_dots": {"options": {YNN: "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}},
}
for _k in (2, 3, 5, 25):
    COMPONENTS[f"vjpunroll{_k}"] = {"unroll": _k}


class _Variants(dict):
    def __missing__(self, name):
        kind, patches, options, unroll = "train", [], {}, None
        for part in name.split("+"):
            c = COMPONENTS[part]
            kind = c.get("kind", kind)
            patches = patches + c.get("patches", [])
            options = {**options, **c.get("options", {})}
            unroll = c.get("unroll", unroll)
        if unroll:
            patches = patches + [(sys.modules[__name__], "UNROLL", {"f": unroll, "n": unroll})]
        return lambda: (kind, patches, options)


VARIANTS = _Variants()
