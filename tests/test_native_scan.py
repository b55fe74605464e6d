"""The compiled CPU kernels (iirsnn_jax/native: the spiking scan, the filters' recurrence) against the lax.scan
route, in float32.

The kernel performs the same float operations in the same order, so the forward pass is bit-identical (spikes,
filter outputs, potentials, counts, final states) and the gradients agree to float32 rounding. Float64 and the
autodiff oracle are covered by tests/test_spiking_scan.py (both routes) and the golden tests (the default
route). Also: the kernel is really what runs, a network is unchanged by the switch, and a missing compiler or
a bad option gives a clear message.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from iirsnn_jax import experiments, models, neurons, recurrence, surrogate
from iirsnn_jax.native import library, linear_recurrence, spiking_scan as native_scan

pytestmark = pytest.mark.skipif(not library.available(), reason="no C++ compiler for the CPU kernels")


def _inputs(filter_order, dropout, membrane, length=9, shape=(5, 3, 4, 6), seed=0):
    """A conv-shaped case ([T, B, H, W, C]) with per-channel parameters, initial states and every output used."""
    rng = np.random.default_rng(seed)
    f = shape[1:]
    current = jnp.asarray(rng.uniform(0.0, 2.2, (length, *shape)), jnp.float32)
    keep = jnp.asarray(rng.random((length, *shape)) < 0.8) if dropout else None
    coefficients = {0: None, 1: (jnp.asarray(rng.uniform(0.3, 0.9, f), jnp.float32),),
                    2: tuple(jnp.asarray(rng.uniform(lo, hi, f[-1:]), jnp.float32)
                             for lo, hi in ((0.3, 1.1), (-0.45, -0.05), (0.1, 0.9)))}[filter_order]
    state = neurons.NeuronState(*(jnp.asarray(rng.uniform(-0.5, 1.0, shape), jnp.float32) for _ in range(2)))
    filter_state = (None if coefficients is None else
                    tuple(jnp.asarray(rng.normal(size=shape), jnp.float32) for _ in range(filter_order)))
    params = dict(reset_decay=jnp.float32(np.exp(-0.25)), reset_v=jnp.float32(1.0),
                  decay_v=jnp.asarray(rng.uniform(0.3, 0.9, f[-1:]), jnp.float32),
                  bias=jnp.asarray(rng.normal(0, 0.3, f[-1:]), jnp.float32))
    weights = [jnp.asarray(rng.normal(size=s), jnp.float32)
               for s in [(length, *shape), (length, *shape), shape[:1], shape, shape, shape, shape]]
    spec = neurons.NeuronSpec(membrane, 1.0, "gaussian", 0.4, 0.2 if dropout else 0.0,
                              keep_spikes=coefficients is not None)
    return spec, current, state, params, keep, coefficients, filter_state, weights


def _run(kernel, spec, current, state, params, keep, coefficients, filter_state, weights):
    """(outputs, loss, gradients w.r.t. current, bias, state, coefficients, filter state) on one route."""
    spec = spec._replace(cpu_kernel=kernel)

    def loss(current, bias, state, coefficients, filter_state):
        out = neurons.spiking_scan(current, state, spec, reset_decay=params["reset_decay"],
                                   reset_v=params["reset_v"], decay_v=params["decay_v"], bias=bias, keep=keep,
                                   filter_coefficients=coefficients, filter_state=filter_state)
        total = jnp.sum(weights[0] * out.out ** 2) + jnp.sum(weights[2] * out.counts)
        total += jnp.sum(weights[3] * out.neuron_state.v) + jnp.sum(weights[4] * out.neuron_state.r ** 2)
        if out.spikes is not None:
            total += jnp.sum(weights[1] * out.spikes)
        if out.filter_state is not None:
            total += sum(jnp.sum(w * s ** 2) for w, s in zip(weights[5:], out.filter_state))
        return total, out

    (value, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4), has_aux=True))(
        current, params["bias"], state, coefficients, filter_state)
    return out, value, grads


@pytest.mark.parametrize("filter_order, dropout, membrane", [(2, True, False), (2, False, True), (1, True, True),
                                                             (1, False, False), (0, False, False), (0, False, True)])
def test_kernel_equals_lax_scan(filter_order, dropout, membrane):
    case = _inputs(filter_order, dropout, membrane, seed=filter_order * 4 + 2 * dropout + membrane)
    out, value, grads = _run("native", *case)
    out_xla, value_xla, grads_xla = _run("xla", *case)
    for ours, theirs in zip(jax.tree.leaves(out), jax.tree.leaves(out_xla)):
        np.testing.assert_array_equal(ours, theirs)  # spikes, outputs, counts, final states: bit for bit
    spikes = np.asarray(out.spikes if out.spikes is not None else out.out)
    assert 0 < spikes.mean() < 1, "the case must both fire and stay silent"
    np.testing.assert_allclose(value, value_xla, rtol=1e-6)
    flat, flat_xla = jax.tree.leaves(grads), jax.tree.leaves(grads_xla)
    assert len(flat) == len(flat_xla) == 4 + (0, 2, 5)[filter_order]
    for ours, theirs in zip(flat, flat_xla):
        np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-5 * max(1.0, float(np.abs(theirs).max())))


@pytest.mark.parametrize("padding, shape", [(0, (5, 3, 5, 6)), (1, (5, 5, 6, 6)), (1, (5, 6, 6, 6)),
                                            (0, (2, 4, 4, 1))])
def test_pooled_scan_equals_lax_scan_and_pool(padding, shape):
    """A 2x2 max-pool after the filter, its cotangent routed by the backward kernel: the same outputs and, to
    rounding, gradients as the lax.scan followed by pooling.py's rule. Odd sizes leave cells in no window (or
    windows half padding); many exact ties (filters at zero before the first spikes, equal inputs)."""
    spec, current, _, params, keep, coefficients, _, _ = _inputs(2, True, False, shape=shape, seed=3 + padding)
    state = filter_state = None  # zero states: every filter output is exactly 0 until its first spike, so
    # windows tie until then (the first element must take the cotangent)
    spec = spec._replace(pool_padding=padding, keep_spikes=False)
    h_out, w_out = (shape[1] + 2 * padding - 2) // 2 + 1, (shape[2] + 2 * padding - 2) // 2 + 1
    weights = jnp.asarray(np.random.default_rng(7).normal(size=(current.shape[0], shape[0], h_out, w_out, shape[3])),
                          jnp.float32)

    def run(kernel):
        def loss(current, bias, coefficients):
            out = neurons.spiking_scan(current, state, spec._replace(cpu_kernel=kernel),
                                       reset_decay=params["reset_decay"], reset_v=params["reset_v"],
                                       decay_v=params["decay_v"], bias=bias, keep=keep,
                                       filter_coefficients=coefficients, filter_state=filter_state)
            return jnp.sum(weights * out.out), out.out

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(current, params["bias"],
                                                                                  coefficients)

    ((value, pooled), grads), ((value_xla, pooled_xla), grads_xla) = run("native"), run("xla")
    assert pooled.shape == weights.shape
    np.testing.assert_array_equal(pooled, pooled_xla)
    np.testing.assert_allclose(value, value_xla, rtol=1e-6)
    assert float(np.abs(grads_xla[0]).max()) > 0
    for ours, theirs in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_xla)):
        np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-5 * max(1.0, float(np.abs(theirs).max())))


@pytest.mark.parametrize("name", sorted(surrogate.SURROGATES))
def test_every_surrogate_slope_equals_lax_scan(name):
    """The kernel evaluates the surrogate slopes itself (its own exp for the Gaussian): gradients agree."""
    assert set(native_scan.SURROGATES) == set(surrogate.SURROGATES)
    spec, *rest = _inputs(2, True, False, seed=11)
    case = (spec._replace(surrogate=name, width=0.5), *rest)
    _, value, grads = _run("native", *case)
    _, value_xla, grads_xla = _run("xla", *case)
    np.testing.assert_allclose(value, value_xla, rtol=1e-6)
    for ours, theirs in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_xla)):
        np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-5 * max(1.0, float(np.abs(theirs).max())))


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("time_axis", [0, 1])
def test_filter_kernel_equals_lax_scan(order, time_axis):
    """recurrence.solve's sequential solver in the kernel (linear_recurrence.cc) and as a lax.scan: y and the
    final state bit for bit, gradients w.r.t. x (in its layout), the coefficients and the initial state to
    float32 rounding. Batch-major input (time_axis=1) is read and its cotangent written in place."""
    rng = np.random.default_rng(order * 2 + time_axis)
    length, batch, features = 7, 3, (5, 4)
    x = jnp.asarray(rng.normal(size=(batch, length, *features) if time_axis else (length, batch, *features)),
                    jnp.float32)
    coefficients = tuple(jnp.asarray(rng.uniform(lo, hi, features[-1:]), jnp.float32)
                         for lo, hi in ((0.3, 1.1), (-0.45, -0.05), (0.1, 0.9))[: 3 if order == 2 else 1])
    init = tuple(jnp.asarray(rng.normal(size=(batch, *features)), jnp.float32) for _ in range(order))
    weights = [jnp.asarray(rng.normal(size=s), jnp.float32) for s in [(length, batch, *features)] + [init[0].shape] * 2]

    def run(kernel):
        def loss(x, coefficients, init):
            y, final = recurrence.solve(x, coefficients, init, time_axis=time_axis, cpu_kernel=kernel)
            return jnp.sum(weights[0] * y ** 2) + sum(jnp.sum(w * f) for w, f in zip(weights[1:], final)), (y, final)

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(x, coefficients, init)

    assert linear_recurrence.FORWARD_TARGET in jax.jit(lambda x: recurrence.solve(
        x, coefficients, init, time_axis=time_axis)).lower(x).as_text()
    ((value, outputs), grads), ((value_xla, outputs_xla), grads_xla) = run("native"), run("xla")
    for ours, theirs in zip(jax.tree.leaves(outputs), jax.tree.leaves(outputs_xla)):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(value, value_xla, rtol=1e-6)
    for ours, theirs in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_xla)):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=2e-6 * max(1.0, float(np.abs(theirs).max())))


def _lowered(kernel):
    spec = neurons.NeuronSpec(cpu_kernel=kernel)
    scan = lambda c: neurons.spiking_scan(c, None, spec, reset_decay=0.8, reset_v=1.0, decay_v=0.8).out.sum()
    return jax.jit(jax.grad(scan)).lower(jnp.ones((4, 2, 3))).as_text()


def test_the_kernel_is_what_runs_on_cpu():
    assert native_scan.FORWARD_TARGET in _lowered("native")
    assert native_scan.BACKWARD_TARGET in _lowered("native")
    assert native_scan.FORWARD_TARGET not in _lowered("xla")


def test_scan_buffers_are_reused_in_place():
    # v is written over the current and the current's cotangent over v: in a dense layer's gradient program no
    # [T B, N] or [T, B, N] array is copied for that (XLA would copy an aliased operand that is a reshape)
    spec = neurons.NeuronSpec(cpu_kernel="native")
    rows, weights = jnp.ones((4 * 2, 3)), jnp.full((3, 5), 0.5)

    def loss(weights):
        current = (rows @ weights).reshape(4, 2, 5)
        return neurons.spiking_scan(current, None, spec, reset_decay=0.8, reset_v=1.0, decay_v=0.8).out.sum()

    text = jax.jit(jax.grad(loss)).lower(weights).compile().as_text()
    calls = [line for line in text.splitlines() if "custom_call_target=\"iirsnn_spiking_scan" in line]
    assert len(calls) == 2 and all("output_to_operand_aliasing" in line for line in calls)
    copies = [line for line in text.splitlines() if "copy" in line.split("=")[0] and ("f32[8,5]" in line or
                                                                                       "f32[4,2,5]" in line)]
    assert not copies, copies


def test_vmapped_scan_equals_lax_scan():
    # an ensemble axis in front: the kernel runs once per member (vmap_method="sequential"), its buffers aliased
    spec, current, state, params, keep, coefficients, filter_state, _ = _inputs(2, True, False, seed=5)
    members = jnp.stack([current, current * 0.7 + 0.2])

    def run(kernel):
        def one(current):
            out = neurons.spiking_scan(current, state, spec._replace(cpu_kernel=kernel), keep=keep,
                                       filter_coefficients=coefficients, filter_state=filter_state, **params)
            return jnp.sum(out.out ** 2)
        return jax.jit(jax.vmap(jax.value_and_grad(one)))(members)

    (value, grad), (value_xla, grad_xla) = run("native"), run("xla")
    np.testing.assert_allclose(value, value_xla, rtol=1e-6)
    np.testing.assert_allclose(grad, grad_xla, rtol=2e-4, atol=2e-5 * max(1.0, float(np.abs(grad_xla).max())))


def test_network_step_is_the_same_on_both_routes():
    """snn_mlp_1's network (dual-exponential filters, dropout) on a small batch: equal spikes and loss, gradients
    to float32 rounding."""
    results = []
    for kernel in library.OPTIONS:
        cfg = experiments.load_config("snn_mlp_1").model
        cfg.layers, cfg.input_shape, cfg.cpu_kernel = "F N(40) D F N(30) D F N(10)", (24,), kernel
        cfg.threshold = 0.1  # every layer fires (at 1.0 the freshly initialised output layer stays silent)
        model = models.build_model(cfg, seed=1)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        x = jnp.asarray(np.random.default_rng(2).uniform(0, 4, (6, 15, 24)), jnp.float32)

        def loss(params):
            out = nnx.merge(graphdef, params, rest)(x, key=jax.random.key(3))
            return jnp.sum(out.spikes * jnp.arange(10.0)) / 100, out.spikes

        (value, spikes), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        results.append((value, spikes, jax.tree.leaves(grads)))
    (value, spikes, grads), (value_xla, spikes_xla, grads_xla) = results
    np.testing.assert_array_equal(spikes, spikes_xla)
    assert 0 < float(np.mean(spikes)) < 1
    np.testing.assert_allclose(value, value_xla, rtol=1e-6)
    for ours, theirs in zip(grads, grads_xla):
        np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-5 * max(1.0, float(np.abs(theirs).max())))


def test_empty_sequences_take_the_lax_scan():
    """T = 0 or an empty batch: nothing for the kernel to do, and the lax.scan handles them."""
    for shape in [(0, 2, 3), (4, 0, 3)]:
        out = neurons.spiking_scan(jnp.ones(shape), None, neurons.NeuronSpec(), reset_decay=0.8, reset_v=1.0,
                                   decay_v=0.8)
        assert out.out.shape == shape and out.counts.shape == shape[1:2]
    y, _ = recurrence.solve(jnp.ones((4, 0, 3)), (jnp.full((3,), 0.5),), (jnp.zeros((0, 3)),))
    assert y.shape == (4, 0, 3)


def test_without_a_compiler_the_build_says_so():
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler 'no-such-c\\+\\+'"):
        library.build("no-such-c++")


def test_without_the_kernel_the_scan_falls_back_to_xla(monkeypatch):
    monkeypatch.setattr(library, "available", lambda: False)
    assert native_scan.FORWARD_TARGET not in _lowered("native")


def test_unknown_cpu_kernel_is_rejected():
    cfg = experiments.load_config("snn_mlp_1").model
    cfg.cpu_kernel = "fast"
    with pytest.raises(ValueError, match="model.cpu_kernel must be one of .*'fast'"):
        models.build_model(cfg, seed=0)
    with pytest.raises(ValueError, match="model.cpu_kernel must be one of .*'fast'"):
        recurrence.solve(jnp.ones((3, 2, 4)), (0.5,), (jnp.zeros((2, 4)),), cpu_kernel="fast")
