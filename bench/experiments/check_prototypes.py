"""Scratch: the exact prototypes give the library's values and gradients (float64)."""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent)); sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from iirsnn_jax import filters, neurons, layers, experiments, models, losses
from flax import nnx
import prototypes as P
VARIANT = sys.argv[1] if len(sys.argv) > 1 else "all3"

k = jax.random.split(jax.random.PRNGKey(0), 8)
T, B, F = 7, 3, (4, 5)
x = jax.random.uniform(k[0], (T, B, *F), jnp.float64)
a1, a2, b1 = [jax.random.uniform(k[i], F, jnp.float64, 0.1, 0.6) for i in (1, 2, 3)]
st = filters.DualExpState(jax.random.normal(k[4], (B, *F)), jax.random.normal(k[5], (B, *F)))
w = jax.random.normal(k[6], (T, B, *F))
def lossf(f, *args):
    y, fin = f(*args)
    return (y * w).sum() + (fin.y1 * 0.3 + fin.y2 * 0.7).sum()
for state in (None, st):
    ref = jax.value_and_grad(lambda *a: lossf(filters.dual_exp_iir, *a, state), (0, 1, 2, 3))(x, a1, a2, b1)
    new = jax.value_and_grad(lambda *a: lossf(P.dual_custom_vjp, *a, state), (0, 1, 2, 3))(x, a1, a2, b1)
    print("filter", "state" if state else "zero", max(float(jnp.abs(r - n).max()) for r, n in zip(jax.tree.leaves(ref), jax.tree.leaves(new))))
# state gradients
g_ref = jax.grad(lambda s: lossf(filters.dual_exp_iir, x, a1, a2, b1, s))(st)
g_new = jax.grad(lambda s: lossf(P.dual_custom_vjp, x, a1, a2, b1, s))(st)
print("filter state grads", max(float(jnp.abs(r - n).max()) for r, n in zip(g_ref, g_new)))
# scalar coefficients
ref = jax.grad(lambda a: lossf(filters.dual_exp_iir, x, a, 0.2, 0.5), )(0.4)
new = jax.grad(lambda a: lossf(P.dual_custom_vjp, x, a, 0.2, 0.5))(0.4)
print("filter scalar coef", float(abs(ref - new)))

cur = jax.random.uniform(k[7], (T, B, *F), jnp.float64, 0, 2.5)
kw = dict(reset_decay=jnp.exp(-0.25), reset_v=1.0, decay_v=jnp.exp(-0.25))
for mf in (False, True):
    f = lambda fn: jax.value_and_grad(lambda c: (fn(c, None, membrane_filter=mf, **kw)[0] * w).sum())(cur)
    r, n = f(neurons.spiking_neuron), f(P.neuron_custom_vjp)
    print("neuron mf", mf, float(abs(r[0] - n[0])), float(jnp.abs(r[1] - n[1]).max()), float(jnp.abs(r[1]).max()))

for (hw, c, kk, s, p) in ((28, 3, 2, 2, 0), (34, 2, 2, 2, 1), (7, 2, 2, 2, 1)):
    pool = layers.MaxPool((hw, hw, c), kk, s, p)
    xi = jnp.round(jax.random.uniform(k[0], (T, B, hw, hw, c)) * 3) / 3  # many ties
    wo = jax.random.normal(k[1], (T, B, *pool.output_shape()))
    r = jax.value_and_grad(lambda v: (layers.MaxPool.__call__(pool, v)[0] * wo).sum())(xi)
    n = jax.value_and_grad(lambda v: (P.pool_first_max(pool, v)[0] * wo).sum())(xi)
    print("pool", hw, p, float(abs(r[0] - n[0])), float(jnp.abs(r[1] - n[1]).max()))
    n = jax.value_and_grad(lambda v: (P.pool_custom_vjp(pool, v)[0] * wo).sum())(xi)
    print("pool vjp", hw, p, float(abs(r[0] - n[0])), float(jnp.abs(r[1] - n[1]).max()))

# whole network gradients, float64, all three prototypes together
for name, shape in (("snn_conv_1_nmnist", (2, 6, 34, 34, 2)), ("snn_mlp_1", (3, 9, 784))):
    cfg = experiments.load_config(name); cfg.model.dtype = cfg.model.param_dtype = "float64"
    model = models.build_model(cfg.model, seed=1)
    g, params, rest = nnx.split(model, nnx.Param, ...)
    params = jax.tree.map(lambda v: v * 4.0 if v.ndim >= 2 else v, params)  # strong weights: spikes in every layer
    xin = (jax.random.uniform(k[2], shape) < 0.3).astype(jnp.float64) * 4.0
    lab = jnp.arange(shape[0]) % 10
    def loss(pr):
        out = nnx.merge(g, pr, rest)(xin)
        return losses.spike_count_cross_entropy(out.spikes, lab), jnp.stack([v.sum() for v in out.layer_spikes.values()])
    (l0, s0), g0 = jax.value_and_grad(loss, has_aux=True)(params)
    from variants import patched
    with patched(P.VARIANTS[VARIANT]()[1]):
        (l1, s1), g1 = jax.value_and_grad(loss, has_aux=True)(params)
    errs = [float(jnp.abs(a - b).max() / (jnp.abs(a).max() + 1e-30)) for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1))]
    print(name, "loss", float(l0), float(abs(l0 - l1)), "spikes equal", bool((s0 == s1).all()), "spikes per layer", s0.tolist(), "worst grad rel", max(errs))
for st_ in (None, st):
    ref = jax.value_and_grad(lambda *a: lossf(filters.dual_exp_iir, *a, st_), (0, 1, 2, 3))(x, a1, a2, b1)
    new = jax.value_and_grad(lambda *a: lossf(P.dual_custom_vjp_inplace, *a, st_), (0, 1, 2, 3))(x, a1, a2, b1)
    print("filter inplace", max(float(jnp.abs(r - n).max()) for r, n in zip(jax.tree.leaves(ref), jax.tree.leaves(new))))
for mf in (False, True):
    f = lambda fn: jax.value_and_grad(lambda c: (fn(c, None, membrane_filter=mf, **kw)[0] * w).sum())(cur)
    r, n = f(neurons.spiking_neuron), f(P.neuron_custom_vjp_inplace)
    print("neuron inplace mf", mf, float(abs(r[0] - n[0])), float(jnp.abs(r[1] - n[1]).max()))
