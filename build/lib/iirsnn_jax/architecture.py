"""The layer-list language of the configs, in the notation of SPEC.md and the paper's tables.

A network is a string such as

    "F C(32,3,1,1) F C(32,3,1,1) F C(64,3,1,1) F P(2,2,1) F C(64,3,1,1) F P(2,2,0) flat F N(256) D F N(10)"

(arrows "->" or "→" between tokens are allowed). Tokens:

| token | layer |
|---|---|
| F | dual-exponential IIR synapse filter, per-element trainable coefficients (model.tau_m, model.tau_s) |
| L | first-order low-pass filter, per-element trainable coefficient (tau = model.tau_m) |
| N(n) | fully connected spiking layer with n neurons |
| C(c,k,s,p) | convolutional spiking layer: c output channels, kernel k, stride s, padding p |
| P(k,s,p) | max-pooling of the (filtered) signal, kernel k, stride s, padding p (minus-infinity padding) |
| D | dropout with rate model.dropout_rate, a fresh mask per time step |
| flat | flatten (H, W, C) to one feature axis |
| O | frozen normalised dual-exponential output filter (model.output_tau_m, model.output_tau_s) |

Each layer gets the name the reference gives it: a stage counter k advances at every N, C and P, filters take
the number of the stage they feed (axon1 feeds conv1), dropout and flatten the number of the stage before;
a second layer of the same kind in one stage gets a letter (axon1b).
"""
from __future__ import annotations

import re
from typing import NamedTuple

_TOKEN = re.compile(r"[A-Za-z]+(?:\([^)]*\))?")
_ARITY = {"F": 0, "L": 0, "N": 1, "C": 4, "P": 3, "D": 0, "flat": 0, "O": 0}
_PREFIX = {"F": "axon", "L": "axon", "N": "dense", "C": "conv", "P": "pool", "D": "dropout", "flat": "flatten"}


class LayerSpec(NamedTuple):
    kind: str  # one of _ARITY's keys
    args: tuple[int, ...]
    name: str  # the reference's module name, e.g. "axon3", "conv3", "dense7"


def parse(layers: str) -> list[LayerSpec]:
    """Parses a layer string into LayerSpecs; raises ValueError naming the bad token."""
    text = layers.replace("→", " ").replace("->", " ")
    leftover = _TOKEN.sub(" ", text).strip()
    if leftover:
        raise ValueError(f"model.layers: cannot parse {leftover!r} in {layers!r}")
    specs, stage = [], 1
    for token in _TOKEN.findall(text):
        kind, _, arg_text = token.partition("(")
        if kind not in _ARITY:
            raise ValueError(f"model.layers: unknown layer {token!r}; expected one of {sorted(_ARITY)}")
        try:
            args = tuple(int(a) for a in arg_text.rstrip(")").split(",") if a.strip())
        except ValueError:
            raise ValueError(f"model.layers: arguments of {token!r} must be integers") from None
        if len(args) != _ARITY[kind]:
            raise ValueError(f"model.layers: {token!r} takes {_ARITY[kind]} integer arguments, got {len(args)}")
        # Sizes, kernels and strides must be positive, paddings non-negative (the last argument of C and P).
        positive = args[:-1] if kind in ("C", "P") else args
        if any(a < 1 for a in positive) or (kind in ("C", "P") and args[-1] < 0):
            raise ValueError(f"model.layers: {token!r} needs positive sizes, kernels and strides and a "
                             "non-negative padding")
        if kind in ("N", "C", "P"):
            name, stage = f"{_PREFIX[kind]}{stage}", stage + 1
        elif kind == "O":
            name = "output_filter"
        elif kind in ("D", "flat"):
            name = f"{_PREFIX[kind]}{stage - 1}"
        else:
            name = f"{_PREFIX[kind]}{stage}"
        taken = {spec.name for spec in specs}
        if name in taken and kind != "O":  # a second filter (or dropout) in the same stage: axon1b, axon1c, ...
            name = next(f"{name}{letter}" for letter in "bcdefghijklmnopqrstuvwxyz" if f"{name}{letter}" not in taken)
        specs.append(LayerSpec(kind, args, name))
    if not specs:
        raise ValueError("model.layers is empty")
    return specs
