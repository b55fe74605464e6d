"""neurons.spiking_scan (the neuron with the next layer's dropout and filter in one scan, hand-written backward)
against an autodiff route of the same equations (tests/autodiff_neuron.py), with the real surrogate, in float64.

Both CPU routes (the compiled kernel, native/spiking_scan.cc, and the lax.scan). Forward: outputs, spikes,
counts and final states equal exactly. Backward: gradients w.r.t. the current, the
bias, the filter coefficients and both initial states equal to float64 rounding, for every combination of
filter (none, low-pass, dual-exponential), dropout, membrane filter and T in {1, 2, 11} (the whole grid with
`-m slow`).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import autodiff_neuron
from iirsnn_jax import neurons
from iirsnn_jax.native import library

B, F = 3, (4, 2)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _case(length, filter_order, dropout, membrane_filter, seed):
    rng = np.random.default_rng(seed)
    shape = (B, *F)
    current = rng.uniform(0.2, 2.4, (length, *shape))
    args = dict(reset_decay=np.exp(-0.25), reset_v=1.0, decay_v=rng.uniform(0.3, 0.9, F),
                bias=rng.normal(0, 0.3, F[-1:]))
    state = neurons.NeuronState(rng.uniform(-0.5, 0.5, shape), rng.uniform(0, 1.5, shape))
    coefficients = {0: None, 1: (rng.uniform(0.3, 0.9, F),),
                    2: (rng.uniform(0.3, 1.1, F), rng.uniform(-0.45, -0.05, F), rng.uniform(0.1, 0.9, F))}[filter_order]
    filter_state = None if coefficients is None else tuple(rng.normal(size=shape) for _ in range(filter_order))
    keep = rng.random((length, *shape)) < 0.7 if dropout else None
    spec = neurons.NeuronSpec(membrane_filter, 1.0, "gaussian", 0.4, 0.3 if dropout else 0.0,
                              keep_spikes=coefficients is not None)
    weights = [rng.normal(size=(length, *shape)), rng.normal(size=(length, *shape)), rng.normal(size=B),
               rng.normal(size=shape), rng.normal(size=shape), rng.normal(size=shape), rng.normal(size=shape)]
    return current, state, spec, args, keep, coefficients, filter_state, weights


def _loss(scan, spec, args, keep, weights, current, bias, state, coefficients, filter_state):
    out = scan(current, state, spec, reset_decay=args["reset_decay"], reset_v=args["reset_v"],
               decay_v=args["decay_v"], bias=bias, keep=keep, filter_coefficients=coefficients,
               filter_state=filter_state)
    # every output carries a cotangent of its own (the counts too: dL/ds includes them)
    total = jnp.sum(weights[0] * out.out ** 2) + jnp.sum(weights[2] * out.counts)
    total = total + jnp.sum(weights[3] * out.neuron_state.v) + jnp.sum(weights[4] * out.neuron_state.r ** 2)
    if out.spikes is not None:
        total = total + jnp.sum(weights[1] * out.spikes)
    if out.filter_state is not None:
        total = total + sum(jnp.sum(w * s ** 2) for w, s in zip(weights[5:], out.filter_state))
    return total, out


# (T, filter order, dropout, membrane filter): every filter and T = 1 in the default run, the whole grid with -m slow
CASES = [(11, 2, True, False), (11, 1, True, True), (11, 0, False, True), (1, 2, False, True), (2, 2, True, False),
         (1, 0, False, False)]
GRID = [(t, f, d, m) for t in (1, 2, 11) for f in (0, 1, 2) for d in (False, True) for m in (False, True)
        if (f or not d) and (t, f, d, m) not in CASES]  # dropout runs in the scan only before a filter


@pytest.mark.parametrize("cpu_kernel", library.OPTIONS)
@pytest.mark.parametrize("length, filter_order, dropout, membrane_filter",
                         CASES + [pytest.param(*case, marks=pytest.mark.slow) for case in GRID])
def test_hand_written_backward_equals_autodiff(length, filter_order, dropout, membrane_filter, cpu_kernel):
    current, state, spec, args, keep, coefficients, filter_state, weights = _case(
        length, filter_order, dropout, membrane_filter, seed=length * 10 + filter_order + 100 * dropout)
    spec = spec._replace(cpu_kernel=cpu_kernel)  # the compiled CPU kernel or the lax.scan
    keep = None if keep is None else jnp.asarray(keep)
    results = []
    for scan in (neurons.spiking_scan, autodiff_neuron.autodiff_scan):
        loss = functools.partial(_loss, scan, spec, args, keep, weights)
        (value, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4), has_aux=True))(
            current, args["bias"], state, coefficients, filter_state)
        results.append((value, out, grads))
    (value, out, grads), (value_ad, out_ad, grads_ad) = results
    for ours, theirs in zip(jax.tree.leaves(out), jax.tree.leaves(out_ad)):
        np.testing.assert_array_equal(ours, theirs)
    spikes = np.asarray(out.spikes if out.spikes is not None else out.out)
    assert 0 < spikes.mean() < 1, "the case must both fire and stay silent"
    np.testing.assert_allclose(value, value_ad, rtol=1e-13)
    flat, flat_ad = jax.tree.leaves(grads), jax.tree.leaves(grads_ad)
    assert len(flat) == len(flat_ad) == 4 + (0, 2, 5)[filter_order]  # current, bias, state, filter
    for ours, theirs in zip(flat, flat_ad):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(theirs).max()))
    assert all(np.abs(g).max() > 0 for g in flat[:2])  # the current and the bias receive gradient


def test_unknown_surrogate_is_rejected():
    spec = neurons.NeuronSpec(surrogate="sigmoidd")
    with pytest.raises(ValueError, match="unknown surrogate 'sigmoidd'"):
        neurons.spiking_scan(jnp.ones((2, 1, 3)), None, spec, reset_decay=0.5, reset_v=1.0, decay_v=0.5)
