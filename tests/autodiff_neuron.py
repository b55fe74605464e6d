"""An independent route to neurons.spiking_scan for the gradient tests: the same equations (SPEC 1.3, 1.7, 1.10)
as a plain `lax.scan` over `surrogate.spike`, differentiated by JAX's autodiff instead of the hand-written
backward pass. `detach_reset=True` cuts the reset path from the gradient: a deliberately wrong neuron."""
import jax
import jax.numpy as jnp

from iirsnn_jax import neurons, surrogate


def autodiff_scan(current, state, spec, *, reset_decay, reset_v, decay_v, bias=None, keep=None,
                  filter_coefficients=None, filter_state=None, detach_reset=False):
    zeros = lambda: jnp.zeros(current.shape[1:], current.dtype)
    v0, r0 = (zeros(), zeros()) if state is None else state
    coefficients = None if filter_coefficients is None else tuple(filter_coefficients)
    if coefficients is not None and filter_state is None:
        filter_state = tuple(zeros() for _ in range(2 if len(coefficients) == 3 else 1))

    def step(carry, inputs):
        (v_prev, r_prev), past = carry
        i_t, keep_t = inputs
        if bias is not None:
            i_t = i_t + bias
        r_in = jax.lax.stop_gradient(r_prev) if detach_reset else r_prev
        v = decay_v * v_prev + i_t - r_in if spec.membrane_filter else i_t - r_in
        s = surrogate.spike(v, spec.threshold, spec.surrogate, spec.width)
        r = reset_decay * r_prev + reset_v * s
        out = s
        if coefficients is not None:
            x = s if keep_t is None else jnp.where(keep_t, s / (1.0 - spec.dropout_rate), 0.0)
            if len(coefficients) == 3:
                out = coefficients[0] * past[0] + coefficients[1] * past[1] + coefficients[2] * x
                past = (out, past[0])
            else:
                out = coefficients[0] * past[0] + x
                past = (out,)
        return ((v, r), past), (out, s)

    ((v, r), past), (out, s) = jax.lax.scan(step, ((v0, r0), filter_state), (current, keep))
    counts = jnp.sum(s.astype(jnp.float32), axis=tuple(i for i in range(s.ndim) if i != 1))
    spikes = s if spec.keep_spikes and coefficients is not None else None
    return neurons.ScanOutput(out, spikes, counts, neurons.NeuronState(v, r), past)
