"""The engine of the IIR filters: linear recurrences over time with a hand-written backward pass.

    order 2 (dual-exponential synapse), coefficients (a1, a2, b):  y[t] = a1 y[t-1] + a2 y[t-2] + b x[t]
    order 1 (low-pass filter),          coefficients (a1,):        y[t] = a1 y[t-1] + x[t]

x is [T, B, *F] (or batch-major [B, T, *F] with time_axis=1, read in place by the sequential solver: no
transposed copy of a network's input); the coefficients broadcast against [B, *F]; the state is the tuple
(y[-1], y[-2]) (order 1: (y[-1],)) of [B, *F] arrays. Two solvers, equal to float rounding:

- "sequential": one `lax.scan` over T. Best on CPU, where each step is a memory-bound elementwise pass.
- "associative": `jax.lax.associative_scan` over the affine maps s[t] = A s[t-1] + (b x[t], 0) of the state
  s = (y[t], y[t-1]), A = [[a1, a2], [1, 0]] per element, log T depth; the standard way to run a linear
  recurrence in parallel on an accelerator. The initial state enters as extra input at t = 0 and 1.

On CPU the sequential solver runs by default in a compiled kernel (native/linear_recurrence.cc: the same
values, the forward pass bit for bit; `cpu_kernel="xla"` keeps the lax.scan).

Backward (the adjoint): lam[t] = ct[t] + a1 lam[t+1] + a2 lam[t+2], the same recurrence backwards in time, and
d/da1 = sum_t lam[t] y[t-1], d/da2 = sum_t lam[t] y[t-2], d/db = sum_t lam[t] x[t], d/dx[t] = b lam[t].
Autodiff of the scan would reduce the coefficient gradients over the batch in every reverse step; the
sequential adjoint accumulates them elementwise in its carry and reduces once at the end (1.3x faster on CPU).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from iirsnn_jax.native import library, linear_recurrence as native_recurrence

METHODS = ("sequential", "associative")


def order(coefficients) -> int:
    """2 for (a1, a2, b), 1 for (a1,)."""
    return 2 if len(coefficients) == 3 else 1


def step(coefficients, carry, x_t):
    """One forward step: (new carry, y[t]); carry = (y[t-1], y[t-2]) or (y[t-1],). The float operations are
    those of the reference's cells, in their order (the golden checks compare spikes exactly)."""
    if order(coefficients) == 2:
        a1, a2, b = coefficients
        y = a1 * carry[0] + a2 * carry[1] + b * x_t
        return (y, carry[0]), y
    y = coefficients[0] * carry[0] + x_t
    return (y,), y


def adjoint_step(coefficients, lam, grads, ct_t, x_t, y_t):
    """One reverse step at time t: lam = (lam[t+1], lam[t+2]) (order 1: (lam[t+1],)) and grads, the per-element
    coefficient gradient accumulators [B, *F] (a pair lam[t+1] y[t] is the term lam[t'] y[t'-1] of t' = t+1).
    Returns (new lam, new grads, d/dx[t])."""
    if order(coefficients) == 2:
        a1, a2, b = coefficients
        lam_t = ct_t + a1 * lam[0] + a2 * lam[1]
        g1, g2, gb = grads
        return (lam_t, lam[0]), (g1 + lam[0] * y_t, g2 + lam[1] * y_t, gb + lam_t * x_t), b * lam_t
    lam_t = ct_t + coefficients[0] * lam[0]
    return (lam_t,), (grads[0] + lam[0] * y_t,), lam_t


def zero_adjoint(coefficients, like):
    """Initial (lam, grads) carries of the reverse scan: zeros of like's shape, one array each."""
    n = order(coefficients)
    return tuple(jnp.zeros_like(like) for _ in range(n)), tuple(jnp.zeros_like(like) for _ in coefficients)


def finish_adjoint(coefficients, lam, grads, init, ct_final, length: int):
    """Adds the initial state's terms once the reverse scan is done (lam = (lam[0], lam[1])): returns (gradients
    of the coefficients, summed to their shapes, and cotangents of the initial state). With T = 1 the second
    final state is y[-1] itself (ct_final[1] was not consumed by the scan, see `final_cotangent`)."""
    if order(coefficients) == 2:
        a1, a2, b = coefficients
        g1 = grads[0] + lam[0] * init[0]
        g2 = grads[1] + lam[0] * init[1] + lam[1] * init[0]
        ct_init = (a1 * lam[0] + a2 * lam[1] + (ct_final[1] if length == 1 else 0), a2 * lam[0])
        return (sum_to_shape(g1, a1), sum_to_shape(g2, a2), sum_to_shape(grads[2], b)), ct_init
    g1 = grads[0] + lam[0] * init[0]
    return (sum_to_shape(g1, coefficients[0]),), (coefficients[0] * lam[0],)


def final_cotangent(ct_final, t, length):
    """The cotangent that the final state (y[T-1], y[T-2]) adds at step t: it joins the reverse scan here
    rather than through a scatter into the [T, B, *F] cotangent, which would copy the whole sequence."""
    extra = jnp.where(t == length - 1, ct_final[0], 0)
    if len(ct_final) == 2 and length >= 2:
        extra = extra + jnp.where(t == length - 2, ct_final[1], 0)
    return extra


def final_state(y, init):
    """(y[T-1], y[T-2]) or (y[T-1],) from y [T, ...]; y[-1] is the initial state's first entry."""
    if len(init) == 1:
        return (y[-1],)
    return (y[-1], y[-2] if y.shape[0] >= 2 else init[0])


def sum_to_shape(accumulated, target):
    """Sums a [B, *F] (or longer) gradient down to the shape of `target`, which was broadcast against it."""
    shape = jnp.shape(target)
    lead = accumulated.ndim - len(shape)
    if lead:
        rows = accumulated.reshape(-1, *accumulated.shape[lead:])
        accumulated = sum_rows(rows.reshape(rows.shape[0], -1)).reshape(rows.shape[1:])
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and accumulated.shape[i] != 1)
    if axes:
        accumulated = accumulated.sum(axis=axes, keepdims=True)
    return accumulated.astype(jnp.result_type(target))


def sum_rows(rows):
    """[M, K] -> [K]. On CPU as a ones-vector product: XLA CPU reduces many rows to few columns on one thread at
    a fraction of memory speed (24-47 ms for a conv layer's bias gradient, a few ms as a product; docs/
    performance.md). Precision HIGHEST: accelerators run float32 products in reduced precision by default.
    Elsewhere a plain sum."""
    def product(r):
        return jnp.dot(jnp.ones((r.shape[0],), r.dtype), r, precision=jax.lax.Precision.HIGHEST)

    return jax.lax.platform_dependent(rows, cpu=product, default=lambda r: jnp.sum(r, axis=0))


# ----------------------------------------------------------------------------------------------------------
# The solver with its custom VJP
# ----------------------------------------------------------------------------------------------------------


def solve(x, coefficients, init, *, method: str = "sequential", time_axis: int = 0, cpu_kernel: str = "native"):
    """(y [T, B, *F] time-major, final state tuple) of the recurrence from `init`. cpu_kernel: "native" runs the
    sequential solver on CPU in the compiled kernel (native/linear_recurrence.cc), "xla" as a lax.scan."""
    if method not in METHODS:
        raise ValueError(f"scan method must be one of {METHODS}, got {method!r}")
    if time_axis not in (0, 1):
        raise ValueError(f"time_axis must be 0 or 1, got {time_axis}")
    library.check_option(cpu_kernel)
    native = (method == "sequential" and all(jnp.result_type(a) == x.dtype for a in (*coefficients, *init))
              and library.usable(cpu_kernel, x, *coefficients))
    return _solve(method if not native else "native", time_axis, x, tuple(coefficients), tuple(init))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _solve(method, time_axis, x, coefficients, init):
    if method == "native":  # the kernel where lowered for CPU, the lax.scan elsewhere
        native = lambda *args: native_recurrence.forward(*args, time_axis)
        return library.on_cpu(native, functools.partial(_solution, "sequential", time_axis), x, coefficients, init)
    return _solution(method, time_axis, x, coefficients, init)


def _solution(method, time_axis, x, coefficients, init):
    if method == "associative":
        y = _associative(_time_major(x, time_axis), coefficients, init)
    else:
        y = _sequential(x, coefficients, init, time_axis)
    return y, final_state(y, init)


def _time_major(x, time_axis):
    return x if time_axis == 0 else jnp.moveaxis(x, 1, 0)


def _sequential(x, coefficients, init, time_axis):
    if time_axis == 0:
        _, y = jax.lax.scan(lambda c, x_t: step(coefficients, c, x_t), init, x)
        return y
    # Batch-major input: each step reads its [B, *F] slice in place, instead of a transposed copy of x.
    body = lambda c, t: step(coefficients, c, jax.lax.dynamic_index_in_dim(x, t, 1, keepdims=False))
    _, y = jax.lax.scan(body, init, jnp.arange(x.shape[1]))
    return y


def _associative(u_x, coefficients, init):
    """Zero-state solution with the initial state folded into the input of steps 0 and 1."""
    if order(coefficients) == 2:
        a1, a2, b = coefficients
        u = b * u_x
        u = u.at[0].add(a1 * init[0] + a2 * init[1])
        if u.shape[0] >= 2:
            u = u.at[1].add(a2 * init[0])
    else:
        a1, a2 = coefficients[0], None
        u = u_x.at[0].add(a1 * init[0])
    return _associative_zero_state(u, a1, a2)


def _associative_zero_state(u, a1, a2=None):
    """y[t] = a1 y[t-1] (+ a2 y[t-2]) + u[t] from zero state, u [T, B, *F], by `jax.lax.associative_scan`."""
    length, per_step = u.shape[0], u.shape[1:]

    # The maps' matrices, [T, 1.., *coefficient shape]: no batch axis, one shape for all entries.
    shape = jnp.broadcast_shapes(jnp.shape(a1), jnp.shape(a2 if a2 is not None else a1))
    shape = (1,) * (len(per_step) - len(shape)) + shape

    def tiled(a):
        a = jnp.asarray(a, u.dtype)
        return jnp.broadcast_to(a.reshape((1,) * (len(shape) - a.ndim) + a.shape), (length, *shape))

    if a2 is None:
        def combine(earlier, later):
            return earlier[0] * later[0], later[0] * earlier[1] + later[1]

        return jax.lax.associative_scan(combine, (tiled(a1), u))[1]

    def combine(earlier, later):  # apply the earlier map, then the later one: M = M_r M_l, v = M_r v_l + v_r
        l11, l12, l21, l22, lv1, lv2 = earlier
        r11, r12, r21, r22, rv1, rv2 = later
        return (r11 * l11 + r12 * l21, r11 * l12 + r12 * l22, r21 * l11 + r22 * l21, r21 * l12 + r22 * l22,
                r11 * lv1 + r12 * lv2 + rv1, r21 * lv1 + r22 * lv2 + rv2)

    one = tiled(jnp.ones((), u.dtype))
    elements = (tiled(a1), tiled(a2), one, jnp.zeros_like(one), u, jnp.zeros_like(u))
    return jax.lax.associative_scan(combine, elements)[4]


def _solve_fwd(method, time_axis, x, coefficients, init):
    y, final = _solve(method, time_axis, x, coefficients, init)
    return (y, final), (x, y, coefficients, init)


def _solve_bwd(method, time_axis, residuals, cotangents):
    x, y, coefficients, init = residuals
    ct_y, ct_final = cotangents
    if method == "native":
        def native(x, y, coefficients, init, ct_y, ct_final):
            ct_x, lam, grads = native_recurrence.backward(x, y, coefficients, ct_y, ct_final, time_axis)
            grads, ct_init = finish_adjoint(coefficients, lam, grads, init, ct_final, y.shape[0])
            return ct_x, grads, ct_init

        xla = lambda x, y, coefficients, init, ct_y, ct_final: _solve_bwd(
            "sequential", time_axis, (x, y, coefficients, init), (ct_y, ct_final))
        return library.on_cpu(native, xla, x, y, coefficients, init, ct_y, ct_final)
    if method == "associative":
        ct_x, grads, ct_init = _associative_adjoint(_time_major(x, time_axis), y, coefficients, init, ct_y, ct_final)
    else:
        ct_x, grads, ct_init = _sequential_adjoint(x, y, coefficients, init, ct_y, ct_final, time_axis)
    if time_axis == 1:
        ct_x = jnp.moveaxis(ct_x, 0, 1)
    return ct_x.astype(x.dtype), grads, tuple(c.astype(i.dtype) for c, i in zip(ct_init, init))


def _sequential_adjoint(x, y, coefficients, init, ct_y, ct_final, time_axis):
    length = y.shape[0]

    def body(carry, inputs):
        lam, grads = carry
        t, ct_t, y_t = inputs
        x_t = jax.lax.dynamic_index_in_dim(x, t, time_axis, keepdims=False)
        lam, grads, ct_x = adjoint_step(coefficients, lam, grads, ct_t + final_cotangent(ct_final, t, length),
                                        x_t, y_t)
        return (lam, grads), ct_x

    lam, grads = zero_adjoint(coefficients, y[0])
    (lam, grads), ct_x = jax.lax.scan(body, (lam, grads), (jnp.arange(length), ct_y, y), reverse=True)
    grads, ct_init = finish_adjoint(coefficients, lam, grads, init, ct_final, length)
    return ct_x, grads, ct_init


def _associative_adjoint(x, y, coefficients, init, ct_y, ct_final):
    length = y.shape[0]
    ct = ct_y.at[-1].add(ct_final[0])
    if len(ct_final) == 2 and length >= 2:
        ct = ct.at[-2].add(ct_final[1])
    a2 = coefficients[1] if order(coefficients) == 2 else None
    lam = jnp.flip(_associative_zero_state(jnp.flip(ct, 0), coefficients[0], a2), 0)
    past_1 = jnp.concatenate([init[0][None].astype(y.dtype), y[:-1]])  # y[t-1]
    lam_0, lam_1 = lam[0], (lam[1] if length >= 2 else jnp.zeros_like(lam[0]))
    if a2 is None:
        grads = (sum_to_shape(jnp.sum(lam * past_1, axis=0), coefficients[0]),)
        return lam, grads, (coefficients[0] * lam_0,)
    past_2 = jnp.concatenate([init[1][None].astype(y.dtype), init[0][None].astype(y.dtype), y[:-2]])[:length]
    a1, a2, b = coefficients
    grads = (sum_to_shape(jnp.sum(lam * past_1, axis=0), a1), sum_to_shape(jnp.sum(lam * past_2, axis=0), a2),
             sum_to_shape(jnp.sum(lam * x, axis=0), b))
    extra = ct_final[1] if length == 1 else 0  # the second final state is y[-1] itself
    return b * lam, grads, (a1 * lam_0 + a2 * lam_1 + extra, a2 * lam_0)


_solve.defvjp(_solve_fwd, _solve_bwd)
