"""The dropout masks' random bits: `jax.random.bits(key, shape, uint32)`, the same bits, written out so XLA
on CPU fuses them into one loop.

JAX lowers threefry on CPU as a rolled `while` loop of five iterations (to keep compile times short), and XLA
runs each iteration as separate loop fusions that copy the two [*shape] uint32 words in and out: 1.3 ms
for snn_mlp_1's two [25, 64, 250] draws, about 7 % of its step. The same 20 rounds written as plain array
operations become one fused loop: 0.6 ms. On GPUs and TPUs JAX already unrolls them; the bits are equal
everywhere.

Equal means: for a threefry2x32 key with `jax_threefry_partitionable` on (the default since JAX 0.5), the
bits of element i (row-major) are the two words of Threefry-2x32(key, counter (i >> 32, i & 0xFFFFFFFF))
xor-ed together (Salmon et al., SC 2011). Any other key or setting takes `jax.random.bits`.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

# Rotation constants of Threefry-2x32, alternating every four rounds, and the key schedule's parity constant.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def random_bits(key, shape) -> jax.Array:
    """uint32 [*shape], equal to `jax.random.bits(key, shape, jnp.uint32)`. key: a typed or raw uint32 [2] key."""
    shape = tuple(int(n) for n in shape)
    if not _unrolls(key, shape):
        return jax.random.bits(key, shape, jnp.uint32)
    words = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    schedule = (words[0], words[1], words[0] ^ words[1] ^ _PARITY)
    # counters below 2^32: the high word is 0
    x0 = jnp.broadcast_to(schedule[0], shape)
    x1 = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape) + schedule[1]
    for block in range(5):
        for rotation in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = x0 ^ ((x1 << np.uint32(rotation)) | (x1 >> np.uint32(32 - rotation)))
        x0 = x0 + schedule[(block + 1) % 3]
        x1 = x1 + schedule[(block + 2) % 3] + np.uint32(block + 1)
    return x0 ^ x1


def _unrolls(key, shape) -> bool:
    if math.prod(shape) >= 2 ** 32 or not jax.config.jax_threefry_partitionable:
        return False
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.shape == () and str(jax.random.key_impl(key)) == "threefry2x32"
    return key.shape == (2,) and key.dtype == jnp.uint32 and jax.config.jax_default_prng_impl == "threefry2x32"
