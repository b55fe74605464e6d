"""neurons.spiking_neuron against a plain Python loop of SPEC 1.7's equations and SPEC 1.7's toy traces.

Layout under test: current [T, B, *F]; T, B and N are distinct (13, 3, 5).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iirsnn_jax import neurons

T, B, N = 13, 3, 5
DECAY_4 = math.exp(-1.0 / 4.0)


def _loop_neuron(current, *, reset_decay, reset_v, decay_v, membrane_filter, threshold=1.0, v0=None, r0=None):
    """SPEC 1.7, element by element, in float32 with the same operation order as the equations read:
    v = (decay_v v[t-1] +) I[t] - r[t-1];  s = v > threshold;  r = reset_decay r[t-1] + reset_v s."""
    f32 = np.float32
    current = np.asarray(current, np.float32)
    shape = current.shape[1:]
    bc = lambda a: np.broadcast_to(np.asarray(a, np.float32), shape)
    reset_decay, reset_v, decay_v = bc(reset_decay), bc(reset_v), bc(decay_v)
    spikes = np.zeros(current.shape, np.float32)
    v_end, r_end = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    for idx in np.ndindex(*shape):
        v = f32(0.0) if v0 is None else f32(v0[idx])
        r = f32(0.0) if r0 is None else f32(r0[idx])
        for t in range(current.shape[0]):
            i_t = f32(current[(t, *idx)])
            v = (f32(decay_v[idx]) * v + i_t) - r if membrane_filter else i_t - r
            s = f32(1.0) if v > f32(threshold) else f32(0.0)
            r = f32(reset_decay[idx]) * r + f32(reset_v[idx]) * s
            spikes[(t, *idx)] = s
        v_end[idx], r_end[idx] = v, r
    return spikes, v_end, r_end


def _run(current, state=None, **kw):
    return neurons.spiking_neuron(jnp.asarray(current, jnp.float32), state, **kw)


def _toy(i_const, steps=40):
    current = np.full((steps, 1, 1), i_const, np.float32)
    kw = dict(reset_decay=DECAY_4, reset_v=1.0, decay_v=DECAY_4, membrane_filter=False)
    expected, _, _ = _loop_neuron(current, **kw)
    got, _ = _run(current, **kw)
    return np.flatnonzero(expected.ravel()).tolist(), np.flatnonzero(np.asarray(got).ravel()).tolist()


@pytest.mark.parametrize("membrane_filter", [False, True])
@pytest.mark.parametrize("nonzero_state", [False, True])
def test_matches_python_loop_random_currents(membrane_filter, nonzero_state):
    rng = np.random.default_rng(10 + 2 * membrane_filter + nonzero_state)
    current = rng.uniform(-0.5, 2.5, size=(T, B, N)).astype(np.float32)
    # per-neuron constants, all distinct, shaped like the feature axis
    reset_decay = rng.uniform(0.5, 0.95, N).astype(np.float32)
    reset_v = rng.uniform(0.5, 1.5, N).astype(np.float32)
    decay_v = rng.uniform(0.3, 0.9, N).astype(np.float32)
    v0 = rng.uniform(-1, 1, (B, N)).astype(np.float32) if nonzero_state else None
    r0 = rng.uniform(0, 2, (B, N)).astype(np.float32) if nonzero_state else None
    kw = dict(reset_decay=reset_decay, reset_v=reset_v, decay_v=decay_v, membrane_filter=membrane_filter)
    expected, v_end, r_end = _loop_neuron(current, v0=v0, r0=r0, **kw)
    state = None if not nonzero_state else neurons.NeuronState(jnp.asarray(v0), jnp.asarray(r0))
    spikes, final = _run(current, state, **{k: (jnp.asarray(v) if isinstance(v, np.ndarray) else v)
                                            for k, v in kw.items()})
    assert spikes.shape == (T, B, N) and spikes.dtype == jnp.float32
    assert 0 < expected.sum() < expected.size  # the test sees both spikes and silences
    np.testing.assert_array_equal(np.asarray(spikes), expected)
    np.testing.assert_allclose(np.asarray(final.v), v_end, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(final.r), r_end, rtol=1e-5, atol=1e-6)


def test_membrane_filter_changes_the_result():
    # Guard that the flag reaches the dynamics: sub-threshold input integrates only with the filter on.
    current = np.full((T, B, N), 0.6, np.float32)
    kw = dict(reset_decay=DECAY_4, reset_v=1.0, decay_v=DECAY_4)
    off, _ = _run(current, membrane_filter=False, **kw)
    on, _ = _run(current, membrane_filter=True, **kw)
    assert float(off.sum()) == 0.0
    expected, _, _ = _loop_neuron(current, membrane_filter=True, **kw)
    assert expected.sum() > 0
    np.testing.assert_array_equal(np.asarray(on), expected)


def test_image_shaped_features():
    rng = np.random.default_rng(20)
    current = rng.uniform(0, 2.5, size=(T, B, 4, 7, 2)).astype(np.float32)
    reset_decay = rng.uniform(0.5, 0.95, (4, 7, 2)).astype(np.float32)
    kw = dict(reset_decay=reset_decay, reset_v=1.0, decay_v=DECAY_4, membrane_filter=False)
    expected, _, r_end = _loop_neuron(current, **kw)
    spikes, final = _run(current, reset_decay=jnp.asarray(reset_decay), reset_v=1.0, decay_v=DECAY_4)
    np.testing.assert_array_equal(np.asarray(spikes), expected)
    np.testing.assert_allclose(np.asarray(final.r), r_end, rtol=1e-5, atol=1e-6)


def test_state_carry_equals_one_long_run():
    rng = np.random.default_rng(21)
    current = jnp.asarray(rng.uniform(0, 2.5, size=(T, B, N)).astype(np.float32))
    kw = dict(reset_decay=DECAY_4, reset_v=1.0, decay_v=DECAY_4, membrane_filter=True)
    whole, _ = neurons.spiking_neuron(current, **kw)
    first, state = neurons.spiking_neuron(current[:5], **kw)
    second, _ = neurons.spiking_neuron(current[5:], state, **kw)
    np.testing.assert_array_equal(np.concatenate([first, second]), np.asarray(whole))


def test_toy_trace_i_1_5():
    expected, got = _toy(1.5)
    assert expected[:3] == [0, 4, 10]  # SPEC 1.7
    assert got == expected


def test_toy_trace_i_2_5():
    expected, got = _toy(2.5)
    assert expected[:5] == [0, 1, 3, 6, 9]  # SPEC 1.7
    assert got == expected


@pytest.mark.parametrize("i_const", [1.0, 0.999, 0.5, 0.0, -2.0])
def test_toy_trace_at_most_one_never_spikes(i_const):
    expected, got = _toy(i_const, steps=60)
    assert expected == [] and got == []


def test_threshold_is_strict():
    one = np.float32(1.0)
    above = np.nextafter(one, np.float32(2.0))
    current = np.array([1.0, above, 1.0, 1.0], np.float32).reshape(4, 1, 1)
    # t=0: v = 1 exactly -> no spike; t=1: v just above 1 -> spike; then r > 0 keeps v = 1 - r below.
    spikes, final = _run(current, reset_decay=DECAY_4, reset_v=1.0, decay_v=DECAY_4)
    np.testing.assert_array_equal(np.asarray(spikes).ravel(), [0, 1, 0, 0])
    # a custom threshold is also strict
    spikes, _ = _run(np.array([0.3, 0.30001, 0.2], np.float32).reshape(3, 1, 1), reset_decay=0.0, reset_v=1.0,
                     decay_v=0.0, threshold=0.3)
    np.testing.assert_array_equal(np.asarray(spikes).ravel(), [0, 1, 0])


def test_reset_is_subtractive_and_decays():
    # One spike at t=0, then zero input: v[t] = -r[t-1] = -decay^(t-1), r[t] = decay^t (SPEC 1.7 reset semantics).
    current = np.zeros((T, 1, 1), np.float32)
    current[0] = 3.0
    spikes, final = _run(current, reset_decay=DECAY_4, reset_v=1.0, decay_v=DECAY_4)
    np.testing.assert_array_equal(np.asarray(spikes).ravel(), [1] + [0] * (T - 1))
    assert float(final.r[0, 0]) == pytest.approx(DECAY_4 ** (T - 1), rel=1e-5)
    assert float(final.v[0, 0]) == pytest.approx(-DECAY_4 ** (T - 2), rel=1e-5)


def test_works_under_jit():
    rng = np.random.default_rng(22)
    current = jnp.asarray(rng.uniform(0, 2.5, size=(T, B, N)).astype(np.float32))
    fn = jax.jit(lambda c: neurons.spiking_neuron(c, reset_decay=DECAY_4, reset_v=1.0, decay_v=DECAY_4)[0])
    expected, _, _ = _loop_neuron(current, reset_decay=DECAY_4, reset_v=1.0, decay_v=DECAY_4,
                                  membrane_filter=False)
    np.testing.assert_array_equal(np.asarray(fn(current)), expected)
