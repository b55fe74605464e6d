"""NIR export and import (iirsnn_jax/nir): exact round trips, and the exported graph's own semantics.

Two independent routes: (1) export -> nir.write -> nir.read -> from_nir must give identical spikes; (2) a
small NIR interpreter written here from NIR's node equations (forward-Euler LI, strict Threshold, edges
summed, an edge that closes a cycle delivering the previous step) runs the exported graph itself, in float64,
and must reproduce the reference PyTorch spikes of the golden files.
"""
import json
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import nir
import numpy as np
import pytest

from golden_files import REPO, golden_path
from iirsnn_jax import config as config_lib, experiments, layout, models
from iirsnn_jax.nir import NIRExportError, NIRImportError, compare, from_nir, to_nir
from iirsnn_jax.reference import state_dict

PRIMITIVES = {"Input", "Output", "Affine", "Linear", "Conv2d", "LI", "Threshold", "SumPool2d", "Flatten", "Scale"}


# -- an independent NIR interpreter (numpy, per-sample shapes in NIR layout, batch first) ---------------------
def _windows(x, k, s, p):
    """[B, C, H, W] -> [B, C, H', W', k, k] windows, zero padding p, stride s."""
    x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    return np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]


def _apply(node, x, state):
    if isinstance(node, nir.LI):
        v = (1 - 1 / node.tau) * state + (1 / node.tau) * (node.v_leak + node.r * x)  # dt = 1
        return v, v
    if isinstance(node, nir.Threshold):
        return (x > node.threshold).astype(np.float64), None
    if isinstance(node, (nir.Affine, nir.Linear)):
        return x @ node.weight.T + (node.bias if isinstance(node, nir.Affine) else 0), None
    if isinstance(node, nir.Conv2d):
        w = _windows(x, node.weight.shape[2], int(node.stride[0]), int(node.padding[0]))
        out = np.tensordot(w, node.weight, axes=([1, 4, 5], [1, 2, 3]))  # [B, H', W', O]
        return out.transpose(0, 3, 1, 2) + node.bias[:, None, None], None
    if isinstance(node, nir.SumPool2d):
        return _windows(x, int(node.kernel_size[0]), int(node.stride[0]), int(node.padding[0])).sum((-2, -1)), None
    if isinstance(node, nir.Flatten):
        return x.reshape(len(x), -1), None
    if isinstance(node, nir.Scale):
        return x * node.scale, None
    return x, None  # Output


def interpret(graph: nir.NIRGraph, inputs, until=None):
    """inputs [B, T, *input shape] -> {node: [B, T, *shape]} of every node (only those `until` needs when
    given), in float64."""
    (start,) = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    order = [start]  # breadth-first from the input: the order in which each step evaluates the nodes
    for key in order:
        order += [b for a, b in graph.edges if a == key and b not in order]
    preds = {k: [a for a, b in graph.edges if b == k] for k in order}
    if until is not None:
        needed = [until]
        for key in needed:
            needed += [a for a in preds[key] if a not in needed]
        order = [k for k in order if k in needed]
    outputs = {k: np.zeros((len(inputs), *graph.nodes[k].output_type["output"])) for k in order}
    states = {k: 0.0 for k in order}
    trace = {k: [] for k in order}
    for t in range(inputs.shape[1]):
        outputs[start] = np.asarray(inputs[:, t], np.float64)
        for k in order[1:]:
            x = sum(outputs[a] for a in preds[k])  # a predecessor later in the order still holds step t-1
            outputs[k], states[k] = _apply(graph.nodes[k], x, states[k])
        for k in order:
            trace[k].append(outputs[k])
    return {k: np.stack(v, 1) for k, v in trace.items()}


# -- helpers ----------------------------------------------------------------------------------------------
def _golden(name):
    with np.load(golden_path(name)) as data:
        golden = {k: data[k] for k in data.files}
    config = experiments.load_config(str(golden["experiment"]))
    model = models.build_model(config.model)
    state_dict.load_state_dict(model, {k: v for k, v in golden.items() if k.startswith("param/")})
    order = model.reference_spatial_order
    return golden, model, jnp.asarray(layout.from_reference_signal(golden["input"], order), jnp.float32), order


def _round_trip(graph, tmp_path):
    path = tmp_path / "net.nir"
    nir.write(path, graph)
    return nir.read(path)


def _nir_input(x):
    """Our [B, T, H, W, C] -> NIR [B, T, C, H, W]; vectors unchanged."""
    x = np.asarray(x, np.float64)
    return x.transpose(0, 1, 4, 2, 3) if x.ndim == 5 else x


def _ours(spikes):
    """NIR [B, T, C, H, W] -> ours [B, T, H, W, C]."""
    return spikes.transpose(0, 1, 3, 4, 2) if spikes.ndim == 5 else spikes


def _assert_identical(a, b):
    result = compare.agreement(compare.jitted_forward(a[0])(a[1]), compare.jitted_forward(b)(a[1]))
    assert result.identical, "\n".join(result.lines())


def _small(layers, input_shape, seed=0, **fields):
    cfg = config_lib.default_config().model
    cfg.layers, cfg.input_shape = layers, input_shape
    for key, value in fields.items():
        cfg[key] = value
    model = models.build_model(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    for name in model.layer_names:  # scale weights so that every layer fires (a silent layer proves nothing)
        layer = getattr(model, name)
        if hasattr(layer, "kernel"):
            layer.kernel.set_value(layer.kernel[...] * 3.0)
        for coefficient in ("alpha_1", "alpha_2", "beta_1"):  # per-element coefficients, not all equal
            if hasattr(layer, coefficient):
                value = np.asarray(getattr(layer, coefficient)[...])
                getattr(layer, coefficient).set_value(jnp.asarray(value * rng.uniform(0.9, 1.1, value.shape),
                                                                  jnp.float32))
    return model


# -- round trips ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["snn_mlp_1.npz", "snn_mlp_2.npz", "associative_memory.npz"])
def test_round_trip_is_exact_and_the_graph_reproduces_the_reference(name, tmp_path):
    golden, model, x, order = _golden(name)
    graph = _round_trip(to_nir(model), tmp_path)
    assert {type(n).__name__ for n in graph.nodes.values()} <= PRIMITIVES
    _assert_identical((model, x), from_nir(graph))
    # The graph alone, run from NIR's equations, gives the reference's spikes (float64 like the golden files).
    run = interpret(graph, _nir_input(x))
    spike_nodes = [k for k in graph.nodes if k.endswith("_spike")]
    references = sorted((k for k in golden if k.startswith("layer_spikes/")),
                        key=lambda k: int(re.search(r"(\d+)$", k).group(1)))
    assert len(spike_nodes) == len(references)
    for node, key in zip(spike_nodes, references):
        np.testing.assert_array_equal(run[node], layout.from_reference_signal(golden[key], order), err_msg=node)
        assert run[node].mean() > 0.01
    if "filtered_output" in golden:
        theirs = layout.from_reference_signal(golden["filtered_output"], order)
        np.testing.assert_allclose(run["output"], theirs, atol=1e-5 * np.abs(theirs).max())


def test_conv_network_with_max_pool_of_psps_is_refused_or_approximated(tmp_path):
    """snn_conv_1_nmnist pools the filter output (F P): no exact NIR form. Everything up to the first pool
    must still be exact: the graph reproduces the reference's conv spikes ((x, y) inputs, padding)."""
    golden, model, x, order = _golden("snn_conv_1_nmnist.npz")
    with pytest.raises(NIRExportError, match=r"pool4: max-pools the output of filter axon4"):
        to_nir(model)
    graph = _round_trip(to_nir(model, approximate=True), tmp_path)
    assert "pool4" in graph.metadata["approximations"] and "pool6" in graph.metadata["approximations"]
    assert from_nir(graph).layer_names[:9] == ("axon1", "conv1", "axon2", "conv2", "axon3", "conv3", "pool4",
                                               "axon5", "axon5b")  # axon4 moved after the pool
    run = interpret(graph, _nir_input(x), until="conv3_spike")
    for conv in ("conv1", "conv2", "conv3"):
        np.testing.assert_array_equal(_ours(run[f"{conv}_spike"]),
                                      layout.from_reference_signal(golden[f"layer_spikes/{conv}"], order))


def test_conv_network_pooling_spikes_round_trips_exactly(tmp_path):
    """C P (a max of spikes) is SumPool2d + Threshold: exact, padding included; B=3, T=7, H=9, W=7, C=2."""
    model = _small("F C(4,3,1,1) P(2,2,1) D F C(5,3,1,0) flat F N(6)", (9, 7, 2))
    model.dense4.kernel.set_value(model.dense4.kernel[...] * 4)
    x = jax.random.uniform(jax.random.key(0), (3, 7, 9, 7, 2)) * 4
    graph = _round_trip(to_nir(model), tmp_path)
    _assert_identical((model, x), from_nir(graph))
    out, run = compare.jitted_forward(model)(x), interpret(graph, _nir_input(x))
    for name in ("conv1", "conv3", "dense4"):
        assert out.layer_spikes[name].mean() > 0.01, name
        np.testing.assert_array_equal(out.layer_spikes[name], _ours(run[f"{name}_spike"]))


def test_the_spike_pooling_nmnist_config_exports_exactly(tmp_path):
    """configs/snn_conv_1_nmnist_spike_pool.py, the deployable variant of the conv network: every layer
    identical after the round trip (random weights scaled so that the deep layers fire; B=2, T=4)."""
    model = models.build_model(experiments.load_config("snn_conv_1_nmnist_spike_pool").model, seed=1)
    x = jax.random.uniform(jax.random.key(2), (2, 4, *model.input_shape)) * 3
    graph = _round_trip(to_nir(model), tmp_path)
    assert {type(n).__name__ for n in graph.nodes.values()} <= PRIMITIVES
    assert "approximations" not in graph.metadata
    ours, theirs = compare.jitted_forward(model)(x), compare.jitted_forward(from_nir(graph))(x)
    assert list(ours.layer_spikes) == list(theirs.layer_spikes)
    for name in ours.layer_spikes:
        np.testing.assert_array_equal(ours.layer_spikes[name], theirs.layer_spikes[name], err_msg=name)


def test_complex_poles_membrane_filter_and_no_bias_round_trip_exactly(tmp_path):
    model = _small("F N(16) L N(5)", (11,), train_bias=False, membrane_filter=True, threshold=0.8, reset_v=0.7)
    a1, a2 = np.asarray(model.axon1.alpha_1[...]), np.asarray(model.axon1.alpha_2[...])
    a2 = np.where(np.arange(11) % 3 == 0, -0.45 * a1 * a1, a2)  # a1^2 + 4 a2 < 0: complex poles
    model.axon1.alpha_2.set_value(jnp.asarray(a2, jnp.float32))
    x = jax.random.uniform(jax.random.key(1), (2, 13, 11)) * 3
    graph = _round_trip(to_nir(model), tmp_path)
    assert "axon1_feedback" in graph.nodes and "dense1_membrane" in graph.nodes
    assert isinstance(graph.nodes["dense1"], nir.Linear)
    _assert_identical((model, x), from_nir(graph))
    out, run = compare.jitted_forward(model)(x), interpret(graph, _nir_input(x))
    for name in ("dense1", "dense2"):
        assert out.layer_spikes[name].mean() > 0.01, name
        np.testing.assert_array_equal(out.layer_spikes[name], run[f"{name}_spike"])


def test_export_names_a_layer_without_lif_form():
    model = _small("L N(4)", (3,))
    model.axon1.alpha_1.set_value(jnp.asarray([0.5, 1.0, 0.7], jnp.float32))
    with pytest.raises(NIRExportError, match=r"axon1: 1 of 3 elements have a pole at exactly 1"):
        to_nir(model)


# -- import from others ---------------------------------------------------------------------------------------
def _foreign_graph():
    rng = np.random.default_rng(3)
    li = nir.LI(tau=np.full(6, 2.0), r=np.full(6, 3.0), v_leak=np.zeros(6))  # pole 0.5, gain 1.5
    return nir.NIRGraph(nodes={
        "in": nir.Input(input_type={"input": np.array([4])}),
        "fc1": nir.Affine(weight=rng.normal(size=(6, 4)), bias=rng.normal(size=6)),
        "th1": nir.Threshold(threshold=np.full(6, 0.5)),
        "syn": li,
        "fc2": nir.Linear(weight=rng.normal(size=(3, 6)) * 2),
        "th2": nir.Threshold(threshold=np.full(3, 0.5)),
        "rst": nir.LI(tau=np.full(3, 4.0), r=np.full(3, -4.0), v_leak=np.zeros(3)),
        "out": nir.Output(output_type={"output": np.array([3])}),
    }, edges=[("in", "fc1"), ("fc1", "th1"), ("th1", "syn"), ("syn", "fc2"), ("fc2", "th2"), ("th2", "rst"),
              ("rst", "th2"), ("th2", "out")])


def test_foreign_graph_imports_and_runs_as_its_nir_semantics():
    graph = _foreign_graph()
    model = from_nir(graph)
    assert model.layer_names == ("dense1", "axon2", "dense2")
    x = np.random.default_rng(0).uniform(0, 2, (2, 9, 4)).astype(np.float32)
    out, run = compare.jitted_forward(model)(x), interpret(graph, x)
    np.testing.assert_array_equal(out.layer_spikes["dense1"], run["th1"])
    np.testing.assert_array_equal(out.layer_spikes["dense2"], run["th2"])
    assert run["th2"].mean() > 0.05


def test_unsupported_node_is_named_with_the_supported_list():
    graph = _foreign_graph()
    graph.nodes["th1"] = nir.LIF(tau=np.ones(6), r=np.ones(6), v_leak=np.zeros(6), v_threshold=np.ones(6))
    with pytest.raises(NIRImportError, match=r"node 'th1' is a LIF.*supported node types: Input, Output, Affine"):
        from_nir(graph)


# -- the command ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_workdir(tmp_path_factory):
    """A workdir with the digits config and no checkpoint (the network at initialisation)."""
    path = tmp_path_factory.mktemp("digits_run")
    (path / "config.json").write_text(json.dumps(experiments.load_config("digits").to_dict()))
    return path


def test_export_and_check_a_workdir(digits_workdir, tmp_path):
    from iirsnn_jax.nir import workdir

    graph, run = workdir.export_run(digits_workdir, tmp_path / "digits.nir")
    agreement, samples, _ = workdir.check_run(tmp_path / "digits.nir", run, samples=40)
    assert agreement.identical and samples == 40 and set(agreement.layers) == {"dense1", "dense2"}
    graph.nodes["dense2"].bias = graph.nodes["dense2"].bias + np.eye(10)[0] * 5  # output neuron 0 fires otherwise
    nir.write(tmp_path / "tampered.nir", graph)
    agreement, _, _ = workdir.check_run(tmp_path / "tampered.nir", run, samples=40)
    assert not agreement.identical and agreement.layers["dense1"][0] == 0 and agreement.layers["dense2"][0] > 0


def _command(*args):
    return subprocess.run([sys.executable, "-m", "iirsnn_jax.nir", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_command_user_error_is_one_line():
    result = _command("frobnicate", "--workdir=/nonexistent")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "expected a command, export or check" in result.stderr


@pytest.mark.slow
def test_command_exit_statuses(digits_workdir, tmp_path):
    out = tmp_path / "digits.nir"
    exported = _command("export", f"--workdir={digits_workdir}", f"--out={out}")
    assert exported.returncode == 0 and "Threshold x2" in exported.stdout, exported.stderr
    assert _command("check", out, f"--workdir={digits_workdir}", "--samples=40").returncode == 0
    graph = nir.read(out)
    graph.nodes["dense2"].bias = graph.nodes["dense2"].bias + np.eye(10)[0] * 5
    nir.write(tmp_path / "tampered.nir", graph)
    assert _command("check", tmp_path / "tampered.nir", f"--workdir={digits_workdir}").returncode == 1
    missing = _command("check", tmp_path / "missing.nir", f"--workdir={digits_workdir}")
    assert missing.returncode == 2 and "no NIR file" in missing.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits", *experiments.REFERENCE_EXPERIMENTS])
def test_every_experiment_config_exports(name, tmp_path):
    """The network of every experiment config (random weights, B=2, T=4): exact, or for the conv networks
    that max-pool PSPs refused and then exact up to the first pool."""
    config = experiments.load_config(name)
    model = models.build_model(config.model, seed=1)
    x = jax.random.uniform(jax.random.key(2), (2, 4, *model.input_shape)) * 3
    pools_psps = "F P" in config.model.layers
    if pools_psps:
        with pytest.raises(NIRExportError, match="max-pools the output of filter"):
            to_nir(model)
    graph = _round_trip(to_nir(model, approximate=pools_psps), tmp_path)
    assert {type(n).__name__ for n in graph.nodes.values()} <= PRIMITIVES
    imported = from_nir(graph)
    ours, theirs = compare.jitted_forward(model)(x), compare.jitted_forward(imported)(x)
    layers = list(ours.layer_spikes)[:3] if pools_psps else list(ours.layer_spikes)
    for ((name_, a), b) in zip(ours.layer_spikes.items(), theirs.layer_spikes.values()):
        if name_ in layers:
            np.testing.assert_array_equal(a, b, err_msg=name_)
    if ours.filtered is not None:
        np.testing.assert_array_equal(ours.filtered, theirs.filtered)
