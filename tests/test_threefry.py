"""threefry.random_bits against jax.random.bits, the bits it promises to equal, and the dropout mask built on it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iirsnn_jax import layers, threefry


@pytest.mark.parametrize("shape", [(25, 64, 250), (3, 5), (7,), (), (4, 0), (2, 3, 4, 5)])
@pytest.mark.parametrize("make_key", [lambda: jax.random.key(7), lambda: jax.random.PRNGKey(3),
                                      lambda: jax.random.fold_in(jax.random.key(11), 5)],
                         ids=["typed", "raw", "folded"])
def test_bits_equal_jax_random_bits(shape, make_key):
    key = make_key()
    expected = np.asarray(jax.random.bits(key, shape, jnp.uint32))
    np.testing.assert_array_equal(np.asarray(threefry.random_bits(key, shape)), expected)
    np.testing.assert_array_equal(np.asarray(jax.jit(threefry.random_bits, static_argnums=1)(key, shape)), expected)


def test_bits_are_unrolled():
    # the point of the module: no while loop in the program (JAX's own CPU lowering of threefry rolls one)
    text = jax.jit(threefry.random_bits, static_argnums=1).lower(jax.random.key(0), (8, 8)).as_text()
    assert "while" not in text and "threefry" not in text


def test_other_generators_take_jax_random_bits():
    key = jax.random.key(0, impl="rbg")
    np.testing.assert_array_equal(np.asarray(threefry.random_bits(key, (6, 9))),
                                  np.asarray(jax.random.bits(key, (6, 9), jnp.uint32)))


@pytest.mark.parametrize("width", [500, 7])
def test_dropout_mask_from_16_bit_halves(width):
    # element i < ceil(width/2) takes the low half of word i, element ceil(width/2) + i the high half
    rate, shape, key = 0.2, (5, 3, width), jax.random.key(4)
    words = np.asarray(jax.random.bits(key, (5, 3, (width + 1) // 2), jnp.uint32))
    draws = np.concatenate([words & 0xFFFF, words >> 16], axis=-1)[..., :width]
    keep = layers.Dropout((width,), rate).keep_mask(shape, key)
    np.testing.assert_array_equal(np.asarray(keep), draws < round(0.8 * 2 ** 16))
