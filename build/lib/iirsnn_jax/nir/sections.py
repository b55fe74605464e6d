"""Our discrete filters as first-order sections, and a first-order section as NIR's leaky integrator.

NIR's LI node is the ODE  tau dv/dt = (v_leak - v) + r I.  Stepped with forward Euler at time step dt, the
input of step t entering at step t (the discretisation of snnTorch, Norse and Spyx), with v_leak = 0:

    v[t] = (1 - dt/tau) v[t-1] + (dt/tau) r I[t]

so the section y[t] = p y[t-1] + g x[t] is the LI node with tau = dt / (1 - p) and r = g / (1 - p), and back
p = 1 - dt/tau, g = r dt/tau. A pole p = 1 (a pure integrator) has no LI form. Poles above 1 (a trained filter
that became unstable) give a negative tau: the same forward-Euler step, so still exact.

The dual-exponential synapse y[t] = a1 y[t-1] + a2 y[t-2] + b1 x[t] factors as two sections in series,
b1 / ((1 - p1 z^-1)(1 - p2 z^-1)) with p1 + p2 = a1 and p1 p2 = -a2: real when a1^2 + 4 a2 >= 0. Trained
filters do leave that region (the digits quick start has a few such elements); `feedback_form` then gives
three real sections with a feedback loop that are exact for any coefficients.

Every conversion runs in float64, so float32 coefficients survive export and import bit for bit
(`check_exact` proves it for each exported layer).
"""
from __future__ import annotations

import nir
import numpy as np


class NIRExportError(ValueError):
    """A layer has no exact NIR form (the message names the layer and the elements concerned)."""


def section_to_li(pole, gain, dt: float) -> nir.LI:
    """y[t] = pole y[t-1] + gain x[t] (arrays of one shape) -> nir.LI (float64 parameters)."""
    pole, gain = np.asarray(pole, np.float64), np.asarray(gain, np.float64)
    tau = dt / (1.0 - pole)
    return nir.LI(tau=tau, r=gain * tau / dt, v_leak=np.zeros_like(tau))


def li_to_section(node: nir.LI, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """nir.LI -> (pole, gain) float64 arrays; requires v_leak = 0."""
    tau = np.asarray(node.tau, np.float64)
    return 1.0 - dt / tau, np.asarray(node.r, np.float64) * dt / tau


def real_poles(alpha_1, alpha_2):
    """Poles (p1, p2) of z^2 - alpha_1 z - alpha_2 in float64, |p1| >= |p2|, and the mask of elements whose
    poles are complex (where p1, p2 mean nothing)."""
    a1, a2 = np.asarray(alpha_1, np.float64), np.asarray(alpha_2, np.float64)
    discriminant = a1 * a1 + 4.0 * a2
    root = np.sqrt(np.maximum(discriminant, 0.0))
    # The larger root without cancellation, the smaller from p1 p2 = -alpha_2 (stable when alpha_2 is tiny).
    p1 = 0.5 * (a1 + np.where(a1 >= 0, root, -root))
    p2 = np.where(p1 == 0, 0.0, -a2 / np.where(p1 == 0, 1.0, p1))
    return p1, p2, discriminant < 0


def dual_exp_from_sections(p1, g1, p2, g2):
    """Two sections in series -> (alpha_1, alpha_2, beta_1), float64."""
    return p1 + p2, -(p1 * p2), g1 * g2


def feedback_form(alpha_1, alpha_2):
    """Poles (p, q) and loop gain k of the feedback form of y[t] = a1 y[t-1] + a2 y[t-2] + b1 x[t], real for
    any (a1, a2), complex poles included (float64):

        pre[t] = q pre[t-1] + b1 x[t];  u[t] = p u[t-1] + pre[t] + w[t-1];  w[t] = q w[t-1] + k u[t]

    with p q = -a2 and p + q + k = a1: U(z) = b1 X(z) / (1 - a1 z^-1 - a2 z^-2), the output being u. The loop
    u -> w -> u holds one step of delay whichever of its two edges carries it, and u is the same either way
    (the pre-filter's pole cancels the zero the loop puts on u)."""
    a1, a2 = np.asarray(alpha_1, np.float64), np.asarray(alpha_2, np.float64)
    rho = np.sqrt(np.abs(a2))
    p, q = rho, np.where(a2 > 0, -rho, rho)
    return p, q, a1 - p - q


def dual_exp_from_feedback(p, q, k, gain_pre, gain_u):
    """The feedback form (poles p of u, q of the pre-filter and of w; loop gain gain_u * k) -> (alpha_1,
    alpha_2, beta_1), float64."""
    return p + q + gain_u * k, -(p * q), gain_pre * gain_u


def check_exact(layer: str, original: dict, restored: dict) -> None:
    """Raises NIRExportError when a float32 coefficient does not come back bit for bit through float64."""
    for key, value in original.items():
        value = np.asarray(value)
        back = np.asarray(restored[key]).astype(value.dtype)
        differ = int(np.sum(back != value))
        if differ:
            raise NIRExportError(f"{layer}.{key}: {differ} of {value.size} elements do not survive the conversion "
                                 "to NIR time constants exactly")
