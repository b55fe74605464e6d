"""What the device makes of a host batch: the network input [B, T, *S], computed inside the jitted step.

The host pipeline hands over compact arrays (pipeline.py), and `make_input_fn(config)` returns the pure,
jittable fn(batch) -> [B, T, *S] that the train and eval steps call first:
  mnist   uint8 pixels [B, 28, 28] -> augmentation (device_augment.py) of the rows of augmented splits
          when data.augment_on = "device" -> pixel / 255 in float32 (SPEC 2.1) -> "copy": the same value at
          every step, a HeldInput (held_input.py: float32 [B, 28, 28, 1] held for T steps, which the network
          filters without its T copies); "poisson": uint8 spikes [B, T, 28, 28, 1] where p > u, u ~ U[0, 1)
          fresh per element and step, so 255 always and 0 never spikes (SPEC 2.3)
  digits  float32 intensities (value / 16) [B, 8, 8] -> "copy" or "poisson" as MNIST, without augmentation
  nmnist, gesture "or": bits packed by np.packbits [B, ceil(T*H*W*2 / 8)] -> uint8 0/1 [B, T, H, W, 2]
  gesture "max" / "avg": uint16 counts [B, T, H, W, 2] -> float32, each frame divided by its max or its sum
          (an empty frame stays 0 where the reference divides 0 by 0, SPEC 6.11)
  others  (patterns, time series): batch["input"] as it is.
Randomness: row b draws from jax keys folded from (config.seed, split[b], epoch[b], index[b], stream), the
batch's "split", "epoch" and "index" arrays (common.STREAMS numbers the streams): a sample of an epoch gets
the same input whatever batch, device or process it lands in, and after a resumption.
`host_input_fn(config)` runs the same function on the CPU, numpy in and out, a held frame repeated over T
(data.inspect, plots).
"""
from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from iirsnn_jax.data import common, device_augment
from iirsnn_jax.data.augment import augment_on, augmented_splits
from iirsnn_jax.held_input import HeldInput, as_sequence

# The arrays of a batch that the input function reads.
INPUT_KEYS = ("input", "split", "epoch", "index")
# pixel / 255 in float32, as the reference divides. A table, because XLA turns a division by a constant into
# a multiplication by its reciprocal, which differs in the last bit for about half of the 256 values.
_PIXEL_VALUES = np.arange(256, dtype=np.float32) / np.float32(255.0)


class InputSpec(NamedTuple):
    """Everything of a config that decides the input function (hashable, so jitted functions can be cached)."""

    name: str
    encoding: str
    length: int
    seed: int
    augmented_splits: tuple[int, ...]  # split ids (common.SPLITS) whose rows the device augments
    frame_shape: tuple[int, ...]  # [T, H, W, C] of event frames; () otherwise


def input_spec(config) -> InputSpec:
    name, encoding, length = config.data.name, config.data.encoding, int(config.data.length)
    splits = ()
    if name == "mnist" and augment_on(config) == "device":
        splits = tuple(common.check_split(s) for s in augmented_splits(config))
    frame_shape = ()
    if name in ("nmnist", "gesture"):
        from iirsnn_jax.data import gesture, nmnist

        frame_shape = (length, *(nmnist.SENSOR if name == "nmnist" else gesture.SENSOR), 2)
    return InputSpec(name, encoding, length, int(config.seed) & 0xFFFFFFFF, splits, frame_shape)


def sample_keys(seed: int, split, epoch, index, stream: str) -> jax.Array:
    """Keys [B] of the rows (split, epoch, index: int [B]) for one stream: fold_in of each, in that order,
    into PRNGKey(seed)."""
    def one(s, e, i):
        key = jax.random.PRNGKey(seed)
        for value in (s, e, i, common.STREAMS[stream]):
            key = jax.random.fold_in(key, value)
        return key
    return jax.vmap(one)(split, epoch, index)


def bernoulli_spikes(p: jax.Array, length: int, keys: jax.Array) -> jax.Array:
    """Probabilities [B, *S] -> uint8 [B, T, *S]: spike where p > u, u ~ U[0, 1) per element and step, row b
    drawing from keys[b] (SPEC 2.3: 1.0 always spikes, 0.0 never)."""
    u = jax.vmap(lambda k: jax.random.uniform(k, (length, *p.shape[1:]), jnp.float32))(keys)
    return (p[:, None] > u).astype(jnp.uint8)


def unpack_frames(packed: jax.Array, frame_shape: tuple[int, ...]) -> jax.Array:
    """uint8 [B, ceil(prod(shape) / 8)] (np.packbits of each flattened sample) -> uint8 0/1 [B, *shape]."""
    bits = jnp.unpackbits(packed, axis=-1, count=math.prod(frame_shape))
    return bits.reshape(packed.shape[0], *frame_shape)


def normalise_frames(counts: jax.Array, mode: str) -> jax.Array:
    """[B, T, H, W, C] counts -> float32, each frame divided by its max ("max") or sum ("avg"); sums are
    exact integers rounded once to float32, as the reference's float32 sums (below 2^24). XLA divides by
    multiplying with the denominator's reciprocal: within 1 ulp of the reference's division."""
    counts = counts.astype(jnp.int32)
    if mode == "max":
        denom = counts.max(axis=(-3, -2, -1), keepdims=True)
    elif mode == "avg":
        denom = counts.sum(axis=(-3, -2, -1), keepdims=True)
    else:
        raise ValueError(f"normalisation must be 'max' or 'avg', got {mode!r}")
    denom = denom.astype(jnp.float32)
    return counts.astype(jnp.float32) / jnp.where(denom > 0, denom, jnp.float32(1))


def _intensities(spec: InputSpec, batch: dict) -> jax.Array:
    """[B, H, W, 1] float32 in [0, 1] of an image batch, augmented where the spec says so."""
    x = batch["input"]
    if spec.name == "digits":
        return x.astype(jnp.float32)[..., None]
    if spec.augmented_splits:
        keys = sample_keys(spec.seed, batch["split"], batch["epoch"], batch["index"], "augment")
        augmented = jax.vmap(device_augment.reference_augment)(x, keys)
        wanted = functools.reduce(jnp.logical_or, [batch["split"] == s for s in spec.augmented_splits])
        x = jnp.where(wanted[:, None, None], augmented, x)
    return jnp.asarray(_PIXEL_VALUES)[x.astype(jnp.int32)][..., None]


def input_fn_of(spec: InputSpec) -> Callable[[dict], jax.Array | HeldInput]:
    """fn(batch) -> network input [B, T, *S] (a HeldInput for "copy") of a spec; see the module docstring."""
    def images(batch):
        x = _intensities(spec, batch)
        if spec.encoding == "copy":
            return HeldInput(x, spec.length)
        if spec.encoding == "poisson":
            keys = sample_keys(spec.seed, batch["split"], batch["epoch"], batch["index"], "poisson")
            return bernoulli_spikes(x, spec.length, keys)
        raise ValueError(f"{spec.name} supports data.encoding 'copy' or 'poisson', got {spec.encoding!r}")

    def events(batch):
        if spec.encoding == "or":
            return unpack_frames(batch["input"], spec.frame_shape)
        return normalise_frames(batch["input"], spec.encoding)

    if spec.name in ("mnist", "digits"):
        return images
    if spec.name in ("nmnist", "gesture"):
        return events
    return lambda batch: batch["input"]


def make_input_fn(config) -> Callable[[dict], jax.Array | HeldInput]:
    """The jittable fn(batch) -> network input [B, T, *S] of config (see the module docstring)."""
    return input_fn_of(input_spec(config))


@functools.lru_cache(maxsize=16)
def _jitted_on_cpu(spec: InputSpec):
    fn = input_fn_of(spec)
    return jax.jit(lambda batch: as_sequence(fn(batch)))


def host_input_fn(config) -> Callable[[dict], np.ndarray]:
    """make_input_fn(config) run on the CPU: a host batch (numpy) -> the network input as numpy."""
    fn, cpu = _jitted_on_cpu(input_spec(config)), jax.devices("cpu")[0]

    def run(batch: dict) -> np.ndarray:
        arrays = {k: batch[k] for k in INPUT_KEYS if k in batch}
        return np.asarray(fn(jax.device_put(arrays, cpu)))
    return run
