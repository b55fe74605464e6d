"""Training and evaluation end to end on the tiny digits config (configs/test.py).

Several tests run train.py / eval.py in subprocesses, because the number of (fake) CPU devices and the
multi-process runtime are fixed when JAX starts.
"""
import json
import os
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import training_helpers as helpers
from golden_files import REPO
from iirsnn_jax import config as config_lib, models
from iirsnn_jax.training import checkpoint, loop, metrics, optimizer as optimizer_lib, steps


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One uninterrupted in-process run of the tiny config (1 device), checkpointing every 7 steps."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    result = loop.train_and_evaluate(helpers.tiny_config(checkpoint_every_steps=7), workdir)
    return workdir, result


def test_tiny_run_learns_and_reports(reference_run):
    workdir, result = reference_run
    records = metrics.read_metrics(workdir)
    train = [r for r in records if r["split"] == "train"]
    dev = [r for r in records if r["split"] == "dev"]
    assert [r["epoch"] for r in train] == [0, 1] and [r["epoch"] for r in dev] == [0, 1]
    assert train[1]["loss"] < train[0]["loss"]
    assert dev[-1]["accuracy"] > 0.5  # ten classes: chance is 0.1
    assert dev[0]["count"] == 270, "evaluation must cover the whole dev split (270 digits), padding masked"
    test = [r for r in records if r["split"] == "test"]
    assert len(test) == 1 and test[0]["count"] == 270 and test[0]["checkpoint"] == "best"
    assert {"spike_rate/dense1", "spike_rate/dense2", "learning_rate"} <= set(train[0])
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["model"]["layers"] == "F N(32) D F N(10)"
    assert any((workdir / "tensorboard").iterdir())
    assert result["test"]["accuracy"] == test[0]["accuracy"]


def test_a_run_saved_before_a_config_field_existed_reads_with_its_default(reference_run, tmp_path):
    saved = json.loads((reference_run[0] / "config.json").read_text())
    del saved["model"]["remat"], saved["train"]["microbatches"]  # fields added after the first runs
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = config_lib.read_run_config(tmp_path)
    assert (config.model.remat, config.train.microbatches) == ("none", 1)
    assert config.model.layers == "F N(32) D F N(10)" and config.experiment == "test"
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        config_lib.read_run_config(tmp_path / "missing")


def test_same_seed_gives_identical_metrics(reference_run, tmp_path):
    workdir, _ = reference_run
    loop.train_and_evaluate(helpers.tiny_config(checkpoint_every_steps=7), tmp_path)
    assert helpers.records(tmp_path) == helpers.records(workdir)


def test_the_other_cpu_scheduler_trains_identically(reference_run, tmp_path):
    """train.cpu_scheduler reorders XLA's operations, not their arithmetic: same metrics, same parameters."""
    workdir, _ = reference_run
    config = helpers.tiny_config(cpu_scheduler="concurrency")
    assert helpers.tiny_config().train.cpu_scheduler == "memory"
    loop.train_and_evaluate(config, tmp_path)
    assert helpers.records(tmp_path) == helpers.records(workdir)
    ours, _, _ = helpers.latest_params(tmp_path)
    theirs, _, _ = helpers.latest_params(workdir)
    for key in theirs:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_preempted_run_resumes_exactly(reference_run, tmp_path):
    """SIGTERM mid-epoch: the run saves and stops; the same command then ends where an uninterrupted run ends."""
    workdir, _ = reference_run
    with helpers.at_train_step(79 + 31, helpers.send(signal.SIGTERM)), pytest.raises(loop.Preempted):
        loop.train_and_evaluate(helpers.tiny_config(checkpoint_every_steps=7), tmp_path)
    _, step, position = helpers.latest_params(tmp_path)
    assert position.epoch == 1 and position.batch == 31 and step == 79 + 31
    loop.train_and_evaluate(helpers.tiny_config(checkpoint_every_steps=7), tmp_path)
    assert helpers.records(tmp_path) == helpers.records(workdir)
    ours, _, _ = helpers.latest_params(tmp_path)
    theirs, _, _ = helpers.latest_params(workdir)
    for key in theirs:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_crash_resumes_from_the_last_step_checkpoint(reference_run, tmp_path):
    """A crash (no chance to save) loses at most checkpoint_every_steps steps and still ends identically."""
    workdir, _ = reference_run
    with helpers.at_train_batch(1, 40, helpers.kill), pytest.raises(KeyboardInterrupt):
        loop.train_and_evaluate(helpers.tiny_config(checkpoint_every_steps=7), tmp_path)
    _, step, _ = helpers.latest_params(tmp_path)
    # The crash comes as batch 40 is read, two steps ahead of training (device prefetch): at step 79 + 38.
    assert step == 112  # the last multiple of 7 before it
    loop.train_and_evaluate(helpers.tiny_config(checkpoint_every_steps=7), tmp_path)
    assert helpers.records(tmp_path) == helpers.records(workdir)


@pytest.mark.parametrize("cpu_kernel", ["native", "xla"])
def test_a_non_finite_gradient_behind_a_finite_loss_is_flagged(cpu_kernel):
    """A NaN bias makes every potential of its layer NaN; its spikes are then all 0, so the loss stays finite,
    but the surrogate's slope at NaN makes that layer's gradients NaN: the step's check must see them."""
    config = helpers.tiny_config()
    config.model.cpu_kernel = cpu_kernel
    graphdef, state = helpers.fresh_state(config)
    optimizer = optimizer_lib.make_optimizer(config.train, 1)
    step = jax.jit(steps.make_train_step(graphdef, optimizer, config.train.loss, 0, 1))
    rng = np.random.default_rng(2)
    batch = {"input": rng.random((16, 6, 64), dtype=np.float32), "label": rng.integers(0, 10, 16).astype(np.int32),
             "mask": np.ones(16, np.float32)}
    _, sums = step(state, batch)
    assert float(sums["nonfinite_gradients"]) == 0.0
    poisoned = lambda name: "dense1" in name and "bias" in name
    poison = lambda path, x: x * np.nan if poisoned(jax.tree_util.keystr(path)) else x
    _, sums = step(state._replace(params=jax.tree_util.tree_map_with_path(poison, state.params)), batch)
    assert np.isfinite(float(sums["loss_sum"]))
    assert float(sums["nonfinite_gradients"]) == 1.0


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_checkpoint(tmp_path):
    poison = lambda batch: dict(batch, input=np.full_like(batch["input"], np.nan))
    with helpers.at_train_batch(1, 5, poison), pytest.raises(loop.NonFiniteLoss, match=r"step 85 \(epoch 1, batch 5\)"):
        loop.train_and_evaluate(helpers.tiny_config(), tmp_path)
    _, step, position = helpers.latest_params(tmp_path)
    assert step == 79 and position.epoch == 1  # the end-of-epoch-0 checkpoint is untouched


@pytest.fixture(scope="module")
def eight_device_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("eight_devices")
    result = helpers.run(["train.py", "--config=configs/test.py", f"--workdir={workdir}"], devices=8)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_eight_devices_match_one(reference_run, eight_device_run):
    helpers.assert_same_training(eight_device_run, reference_run[0])


def test_eight_device_checkpoint_evaluates_on_one(eight_device_run):
    result = helpers.run(["eval.py", f"--workdir={eight_device_run}", "--checkpoint=best", "--split=test"], devices=1)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    trained = [r for r in metrics.read_metrics(eight_device_run) if r["split"] == "test" and r["checkpoint"] == "best"]
    assert record["count"] == 270
    assert record["accuracy"] == pytest.approx(trained[0]["accuracy"], abs=1 / 270)


@pytest.mark.slow  # tests/test_preemption.py runs two processes in the default run (stopped and resumed)
def test_two_processes_match_one(reference_run, tmp_path):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    args = ["train.py", "--config=configs/test.py", f"--workdir={tmp_path}", f"--coordinator_address=localhost:{port}",
            "--num_processes=2"]
    environment = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    procs = [subprocess.Popen([sys.executable, *args, f"--process_id={i}"], cwd=REPO, env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    helpers.assert_same_training(tmp_path, reference_run[0])


def test_misspelt_config_key_fails_clearly(tmp_path):
    result = helpers.run(["train.py", "--config=configs/test.py", f"--workdir={tmp_path}", "--config.train.learnig_rate=0.1"])
    assert result.returncode != 0
    assert "learnig_rate" in result.stderr


def test_batch_that_does_not_divide_over_devices_fails_clearly(tmp_path):
    result = helpers.run(["train.py", "--config=configs/test.py", f"--workdir={tmp_path}", "--config.train.batch_size=12"],
                  devices=8)
    assert result.returncode != 0
    assert "train.batch_size=12 does not divide over the 8 devices" in result.stderr


def test_microbatches_that_do_not_divide_the_batch_fail_before_training(tmp_path):
    with pytest.raises(ValueError, match="train.microbatches=3 must divide train.batch_size=16"):
        loop.train_and_evaluate(helpers.tiny_config(microbatches=3), tmp_path)
    assert not list(tmp_path.glob("checkpoints*/*")), "nothing may be trained or saved"


def test_mixed_precision_computes_in_bfloat16_and_keeps_float32_parameters(tmp_path):
    config = helpers.tiny_config(epochs=1)
    config.model.dtype = "bfloat16"
    result = loop.train_and_evaluate(config, tmp_path)
    params, _, _ = helpers.latest_params(tmp_path, config)
    assert all(v.dtype == np.float32 for v in params.values())
    assert result["test"]["accuracy"] > 0.3
    model = models.build_model(config.model)
    out = model(np.zeros((2, 6, 64), np.float32))
    assert out.spikes.dtype == jax.numpy.float32  # only dense/conv operands are bfloat16 (test_mixed_precision.py)


def test_eval_imports_a_reference_state_dict(tmp_path):
    """eval.py --reference_state_dict: PyTorch-named weights evaluate exactly like the same weights set directly."""
    from flax import nnx

    from iirsnn_jax import data
    from iirsnn_jax.training import evaluation, parallel

    config = helpers.tiny_config()
    rng = np.random.default_rng(0)
    names = {"axon1": 64, "axon2": 32}
    state_dict = {}
    for axon, size in names.items():
        for coef, value in zip(("alpha_1", "alpha_2", "beta_1"), (1.1466801, -0.2865048, 0.4109213)):
            state_dict[f"{axon}.dual_exp_iir_cell.{coef}"] = (value * rng.uniform(0.95, 1.05, size)).astype(np.float32)
    for module, (n_out, n_in) in {"snn1": (32, 64), "snn2": (10, 32)}.items():
        state_dict[f"module.{module}.neuron_cell.weight.weight"] = rng.uniform(-1, 1, (n_out, n_in)).astype(np.float32)
        state_dict[f"module.{module}.neuron_cell.weight.bias"] = rng.uniform(0, 0.5, n_out).astype(np.float32)
    state_dict = {k if k.startswith("module.") else "module." + k: v for k, v in state_dict.items()}
    np.savez(tmp_path / "weights.npz", **state_dict)
    result = helpers.run(["eval.py", "--config=configs/test.py", f"--reference_state_dict={tmp_path / 'weights.npz'}",
                   "--split=dev"])
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])

    model = models.build_model(config.model)
    model.dense1.kernel.set_value(state_dict["module.snn1.neuron_cell.weight.weight"].T)
    model.dense1.bias.set_value(state_dict["module.snn1.neuron_cell.weight.bias"])
    model.dense2.kernel.set_value(state_dict["module.snn2.neuron_cell.weight.weight"].T)
    model.dense2.bias.set_value(state_dict["module.snn2.neuron_cell.weight.bias"])
    for axon in names:
        for coef in ("alpha_1", "alpha_2", "beta_1"):
            getattr(model, axon).__dict__[coef].set_value(state_dict[f"module.{axon}.dual_exp_iir_cell.{coef}"])
    graphdef, params, constants = nnx.split(model, nnx.Param, ...)
    mesh = parallel.make_mesh()
    eval_step = evaluation.make_jitted_eval_step(graphdef, "cross_entropy", input_fn=data.make_input_fn(config))
    _, summary = evaluation.evaluate(eval_step, params, constants,
                                     None, data.build(config, "dev", batch_size=64), mesh)
    assert record["count"] == summary["count"] == 270
    assert record["accuracy"] == pytest.approx(summary["accuracy"], abs=1e-9)
    assert record["loss"] == pytest.approx(summary["loss"], rel=1e-5)
    assert summary["spike_rate/dense1"] > 0.01, "the imported weights must make the network fire"


def test_preserved_state_experiment_trains(tmp_path):
    """snn_mlp_1_non_zero's carried state goes through the donated train step and changes between steps."""
    config = helpers.tiny_config(epochs=1)
    config.model.preserve_state = True
    config.data.drop_remainder = True
    result = loop.train_and_evaluate(config, tmp_path)
    assert result["test"]["count"] == 270
    model = models.build_model(config.model)
    _, target = steps.create_train_state(model, optimizer_lib.make_optimizer(config.train, 1), 16)
    runs = checkpoint.RunCheckpoints(tmp_path)
    state, _ = runs.restore("latest", target)
    runs.close()
    assert any(float(np.abs(leaf).max()) > 0 for leaf in jax.tree.leaves(state.carry))


def test_device_prefetch_starts_at_once_then_keeps_two_batches_ahead():
    """The first batch is handed over as soon as it is on the device (an epoch does not wait for three),
    then `depth` batches are on their way while each step runs; every batch arrives, in order."""
    from iirsnn_jax.training import parallel

    pulled = []

    def source():
        for i in range(6):
            pulled.append(i)
            yield {"x": np.full((2, 3), i, np.float32)}

    ahead = []
    for i, batch in enumerate(parallel.prefetch_to_devices(source(), parallel.make_mesh(), depth=2)):
        np.testing.assert_array_equal(np.asarray(batch["x"]), np.full((2, 3), i))
        ahead.append(len(pulled) - 1 - i)
    assert ahead == [0, 1, 2, 2, 1, 0]


def test_packed_rows_arrive_as_they_were_sent():
    """pack_rows sends a batch's per-row scalars as one int32 array; the jitted step gets every field back with
    its value and dtype (labels up to 2^31 - 1, padding masks, stop flags), the other arrays untouched, and a
    batch that was not packed passes through unchanged."""
    import jax
    from iirsnn_jax.training import parallel

    rng = np.random.default_rng(0)
    batch = {"input": rng.integers(0, 256, (4, 3, 2), dtype=np.uint8),
             "label": np.array([0, 9, 2 ** 31 - 1, 3], np.int32), "mask": np.array([True, True, True, False]),
             "split": np.full(4, 2, np.int32), "epoch": np.full(4, 70, np.int32),
             "index": np.array([5, 6, 7, -1], np.int32), "stop": np.array([0.0, 1.0, 1.0, 0.0], np.float32),
             "filtered_target": rng.random((4, 3, 2), dtype=np.float32)}
    packed = parallel.pack_rows(batch)
    assert sorted(packed) == ["filtered_target", "input", "rows:label,mask,split,epoch,index,stop"]
    mesh = parallel.make_mesh()
    for sent in (packed, batch):
        got = jax.jit(parallel.unpack_rows)(parallel.shard_batch(sent, mesh))
        assert sorted(got) == sorted(batch)
        for key, value in batch.items():
            assert np.asarray(got[key]).dtype == value.dtype, key
            np.testing.assert_array_equal(np.asarray(got[key]), value, err_msg=key)
    eval_batch = {k: v for k, v in batch.items() if k in ("input", "label", "mask")}
    assert sorted(parallel.pack_rows(eval_batch)) == ["input", "rows:label,mask"]


def test_every_epoch_steps_through_its_own_batches_when_the_next_one_is_prepared_ahead(tmp_path):
    """The loop makes an epoch's first batch while the epoch before drains; each epoch's steps still get that
    epoch's batches in the pipeline's order, the last epoch prepares nothing after it, and an epoch resumed
    mid-way ignores a start prepared for batch 0."""
    from iirsnn_jax.training import parallel
    from iirsnn_jax.training.position import Position
    from iirsnn_jax.training.signals import StopRequests

    run = loop.prepare(helpers.tiny_config(epochs=3), tmp_path / "run")
    seen = []

    def recording_step(leaves, totals, batch):  # the loop's step signature; records which samples arrived
        rows = parallel.unpack_rows(batch)
        seen.append((int(rows["epoch"][0]), np.asarray(rows["index"]).tolist()))
        return leaves, totals

    try:
        run.train_step, state = recording_step, run.fresh_state
        with StopRequests() as stop:
            for epoch in range(3):
                state, *_ = loop.train_epoch(run, state, Position(epoch=epoch), stop)
                assert (run.next_epoch.epoch if run.next_epoch else None) == (epoch + 1 if epoch < 2 else None)
            expected = [(e, indices.tolist()) for e in range(3) for indices in run.train_data.local_indices(e)]
            assert seen == expected
            seen.clear()
            loop.train_epoch(run, state, Position(epoch=0), stop)  # primes epoch 1 from batch 0
            loop.train_epoch(run, state, Position(epoch=1, batch=2, train_sums={"count": 32.0}), stop)
        assert seen == expected[:len(run.train_data)] + expected[len(run.train_data) + 2:2 * len(run.train_data)]
    finally:
        run.close()
