"""An independent re-implementation of the reference (zhongyuchen/snn-iir) networks, in the reference's style.

Written from shared/reference/SPEC.md (sections 1, 2 and 6) and NOT from our library: nothing here imports
iirsnn_jax.  It keeps the reference's layout and habits on purpose, so that it shares as few decisions as
possible with the library it is used to check:

* time is the LAST axis, channels first: FC signals [B, N, T], conv signals [B, C, A1, A2, T];
* every layer runs its own Python loop over the T time steps (SPEC 1.1), starting from zero states of the
  per-sample shape that broadcast against the batch on the first step, and stacks its outputs on the last axis;
* parameters are a flat dict keyed by the PyTorch `state_dict()` names, in PyTorch layouts (Linear [out, in],
  Conv2d [O, I, kh, kw] applied NCHW to the two spatial axes in their stored order);
* spike = max(0, sign(v - 1)) with the Gaussian surrogate exp(-(1-v)^2 / (2 sigma^2)) / (2.506628 sigma);
  the reset variable r is not detached;
* max-pooling per time slice pads with -inf; flattening is `reshape(B, -1, T)` of [B, C, H, W, T].

`make_golden(experiment, seed)` builds a whole golden file (the format of shared/golden/README.md) for any of
the 13 reference experiments: random PyTorch-default parameters, IIR coefficients perturbed per element,
weights scaled per spiking layer until it fires at 4-30 % of its slots, everything rounded to float32, then
the float64 forward pass, loss and gradients of this loop model.  Evaluation mode: dropout is the identity
and every layer starts from zero states (so snn_mlp_1_non_zero is snn_mlp_1 on its first call); the Poisson,
non_zero and gesture variants share their base network and differ only in their inputs.

Modules, in dependency order: `architectures` (the stage lists), `cells` (cells and time-loop layers),
`networks` (forward, loss, float64 `run`), `parameters` (init and calibration), `inputs`, `golden_writer`.
"""
from .architectures import architecture, is_classifier, taus
from .golden_writer import make_golden
from .inputs import default_length, make_input
from .networks import forward, run
from .parameters import calibrate, init_params

__all__ = ["architecture", "calibrate", "default_length", "forward", "init_params", "is_classifier",
           "make_golden", "make_input", "run", "taus"]
