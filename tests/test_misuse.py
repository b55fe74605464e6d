"""Misuse: every bad input gets a clear one-line error, and nothing a user saved is damaged.

The commands run in subprocesses, as a user runs them; `finished` is one finished run of the tiny config that
the tests copy before they misuse it.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import training_helpers as helpers
from iirsnn_jax import validation
from iirsnn_jax.errors import ConfigError
from iirsnn_jax.training import loop, metrics


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("finished") / "run"
    loop.train_and_evaluate(helpers.tiny_config(checkpoint_every_steps=30), workdir)
    return workdir


@pytest.fixture
def run_copy(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


def tree(workdir):
    """{relative path: (size, mtime)} of every file: what a command must leave as it was."""
    return {str(p.relative_to(workdir)): (p.stat().st_size, p.stat().st_mtime_ns) for p in workdir.rglob("*")
            if p.is_file()}


def one_line_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize("key, value, message", [
    ("train.batch_size", 0, "train.batch_size=0 must be >= 1"),
    ("train.batch_size", -16, "train.batch_size=-16 must be >= 1"),
    ("train.eval_batch_size", -1, "train.eval_batch_size=-1 must be >= 0"),
    ("train.keep_checkpoints", 0, "train.keep_checkpoints=0 must be >= 1"),
    ("data.length", 0, "data.length=0 must be >= 1"),
    ("train.learning_rate", -0.001, "train.learning_rate=-0.001 must be > 0"),
    ("train.cpu_scheduler", "fastest", "train.cpu_scheduler='fastest' must be one of ('memory', 'concurrency')"),
    ("train.loss", "mse", "has no output filter 'O'"),
    ("model.layers", "F N(256) F N(5)", "output layer has 5 neurons but digits has 10 classes"),
])
def test_a_bad_value_on_a_finished_run_is_refused_and_changes_nothing(run_copy, key, value, message):
    config = helpers.tiny_config()
    section, name = key.split(".")
    config[section][name] = value
    before = tree(run_copy)
    with pytest.raises(ConfigError, match=re.escape(message)):
        loop.train_and_evaluate(config, run_copy)
    assert tree(run_copy) == before


def test_a_bad_value_is_one_line_from_the_command_and_eval_still_works(run_copy):
    before = tree(run_copy)
    result = helpers.run(["train.py", "--config=configs/test.py", f"--workdir={run_copy}",
                          "--config.train.batch_size=0"])
    one_line_error(result, "train.batch_size=0 must be >= 1")
    assert tree(run_copy) == before
    result = helpers.run(["eval.py", f"--workdir={run_copy}"])
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_bad_value_makes_no_workdir(tmp_path):
    result = helpers.run(["train.py", "--config=configs/test.py", f"--workdir={tmp_path / 'new'}",
                          "--config.data.length=0"])
    one_line_error(result, "data.length=0")
    assert not (tmp_path / "new").exists()


def test_missing_data_is_one_line_and_makes_no_workdir(tmp_path):
    result = helpers.run(["train.py", "--config=configs/snn_mlp_1.py", f"--workdir={tmp_path / 'new'}",
                          f"--config.data.root={tmp_path / 'nothing'}"])
    one_line_error(result, str(tmp_path / "nothing"))
    assert not (tmp_path / "new").exists()


def test_config_checks_name_key_value_and_expectation():
    config = helpers.tiny_config()
    config.train.milestones = (30, -1)
    with pytest.raises(ConfigError, match=r"train.milestones=\(30, -1\) must be epochs"):
        validation.check_config(config)
    with pytest.raises(ConfigError, match="output layer has 4 neurons but digits has 10 classes"):
        validation.check_output_width(helpers.tiny_config(), 4, 10)


def test_a_cut_off_metrics_line_is_skipped_by_readers_and_not_merged_by_writers(run_copy, caplog):
    path = run_copy / "metrics.jsonl"
    whole = path.read_text()
    path.write_text(whole + '{"time": 1, "step": 3, "epo')  # a crash mid-write
    with caplog.at_level("WARNING"):
        records = metrics.read_metrics(run_copy)
    assert len(records) == len(whole.splitlines())
    assert f"{path} line {len(records) + 1} is damaged" in caplog.text
    writer = metrics.MetricWriter(run_copy)
    writer.write({"epoch": 9, "split": "dev", "loss": 1.0}, 99)
    writer.close()
    assert metrics.read_metrics(run_copy)[-1]["epoch"] == 9
    result = helpers.run(["-m", "iirsnn_jax.plots", f"--workdir={run_copy}", f"--out={run_copy.parent / 'plots'}",
                          "--figures=curves"])
    assert result.returncode == 0, result.stderr[-3000:]


def test_ctrl_c_saves_and_exits_130_without_a_traceback(tmp_path):
    command = ["tests/signal_at_batch.py", "SIGINT", "1", "20", "-1", "train.py", "--config=configs/test.py",
               f"--workdir={tmp_path}"]
    result = helpers.run(command)
    assert result.returncode == 130, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "SIGINT at step" in result.stderr
    _, step, position = helpers.latest_params(tmp_path)
    assert position.epoch == 1 and step > 79
    assert not (tmp_path / "run.lock").exists()
    result = helpers.run(["train.py", "--config=configs/test.py", f"--workdir={tmp_path}"])
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_second_run_in_a_workdir_is_refused_naming_the_holder(run_copy):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        (run_copy / "run.lock").write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename,
                                                       "started": 0}))
        before = tree(run_copy)
        result = helpers.run(["train.py", "--config=configs/test.py", f"--workdir={run_copy}"])
        one_line_error(result, f"in use by another run (process {holder.pid} on host {os.uname().nodename}")
        assert tree(run_copy) == before
    finally:
        holder.kill()
        holder.wait()
    result = helpers.run(["train.py", "--config=configs/test.py", f"--workdir={run_copy}"])  # a stale lock now
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stale lock" in result.stderr and not (run_copy / "run.lock").exists()


def test_eval_only_reads_the_workdir(run_copy, tmp_path):
    before = tree(run_copy)
    result = helpers.run(["eval.py", f"--workdir={run_copy}", "--split=dev", f"--out={tmp_path / 'dev.json'}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert tree(run_copy) == before
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert json.loads((tmp_path / "dev.json").read_text()) == record
    assert record["epoch"] == 1 and record["count"] == 270 and record["split"] == "dev"


def test_eval_errors_are_one_line(run_copy, tmp_path):
    result = helpers.run(["eval.py", f"--workdir={run_copy}", "--checkpoint=12345"])
    one_line_error(result, "no '12345' checkpoint", "saved steps: latest [")
    result = helpers.run(["eval.py", f"--workdir={tmp_path / 'missing'}"])
    one_line_error(result, "config.json not found")
    assert "USAGE" not in result.stderr and "flags:" not in result.stderr
    result = helpers.run(["eval.py", f"--workdir={run_copy}", "--config=configs/test.py"])
    one_line_error(result, "--config is only read with --reference_state_dict")


def test_eval_labels_a_mid_epoch_checkpoint_with_its_epoch(run_copy):
    steps = sorted(int(p.name) for p in (run_copy / "checkpoints" / "latest").iterdir() if p.name.isdigit())
    mid = [s for s in steps if s % 79]
    assert mid, steps
    result = helpers.run(["eval.py", f"--workdir={run_copy}", f"--checkpoint={mid[-1]}", "--split=dev"])
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert (record["epoch"], record["batch"]) == (mid[-1] // 79, mid[-1] % 79)


def test_non_finite_loss_before_any_checkpoint_says_so(tmp_path):
    poison = lambda batch: dict(batch, input=batch["input"] * float("nan"))
    with helpers.at_train_batch(0, 0, poison), pytest.raises(loop.NonFiniteLoss, match="no checkpoint was saved yet"):
        loop.train_and_evaluate(helpers.tiny_config(), tmp_path)


def test_zero_epochs_evaluates_the_initial_network(tmp_path):
    result = helpers.run(["train.py", "--config=configs/test.py", f"--workdir={tmp_path}", "--config.train.epochs=0"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no epoch trained; test: loss" in result.stdout


def test_a_misspelt_key_and_a_missing_config_file_read_as_sentences(tmp_path):
    result = helpers.run(["train.py", "--config=configs/test.py", "--config.train.learnig_rate=0.1"])
    assert result.returncode != 0 and "learnig_rate" in result.stderr and "\\n" not in result.stderr
    result = helpers.run(["train.py", "--config=configs/nothing_here.py"])
    assert result.returncode != 0 and "configs/nothing_here.py" in result.stderr and "\\n" not in result.stderr


def test_inspect_errors_are_one_line(tmp_path):
    command = ["-m", "iirsnn_jax.data.inspect", "--config=configs/digits.py", "--split=dev"]
    result = helpers.run([*command, "--index=270", f"--out={tmp_path / 'x.npz'}"])
    one_line_error(result, "--index=270 is outside the 270 samples of split 'dev'")
    result = helpers.run([*command, "--index=0", f"--out={tmp_path / 'missing' / 'x.npz'}"])
    one_line_error(result, f"the folder {tmp_path / 'missing'} does not exist")
    assert not (tmp_path / "x.npz").exists()
