"""A network input that holds one frame for all T steps, without its T copies.

The reference presents an analog image at every step ("copy" encoding, SPEC 2.1). Repeated, it is a
[B, T, *S] array whose first layer, an IIR filter, runs its recurrence over B * prod(S) elements for T steps.
Held, the network filters a single ones-sequence per element (the step response g [T, *S], the same for every
sample) and multiplies: y[t, b] = g[t] * frame[b], equal to the repeated input's filter up to float rounding
(models.SpikingNetwork; tests/test_held_input.py compares both, and the golden check runs both).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class HeldInput:
    """frame [B, *S] presented at each of `length` steps (a static int: it selects the traced program)."""

    frame: jax.Array
    length: int = dataclasses.field(metadata=dict(static=True))

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the repeated input, [B, T, *S]."""
        return (self.frame.shape[0], self.length, *self.frame.shape[1:])

    def repeated(self) -> jax.Array:
        """[B, T, *S]: the frame at every step."""
        return jnp.broadcast_to(self.frame[:, None], self.shape)


def as_sequence(x) -> jax.Array:
    """A network input as an array [B, T, *S]: a HeldInput repeated, an array as it is."""
    return x.repeated() if isinstance(x, HeldInput) else x
