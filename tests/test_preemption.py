"""Preemption-safe training: every interruption resumes, on every host, to the result of an uninterrupted run.

Each test breaks a run the way cloud machines do (SIGTERM in the last batch of an epoch, one of two processes
signalled, a crash between two saves, a damaged checkpoint, a restart with changed flags) and checks the
resumed run against `uninterrupted`, one run of the tiny config that nothing disturbed.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import training_helpers as helpers
from golden_files import REPO
from iirsnn_jax import experiments
from iirsnn_jax.training import checkpoint, loop
from iirsnn_jax.training.position import Position

STEPS_PER_EPOCH = 79  # 1257 training digits in batches of 16


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    loop.train_and_evaluate(helpers.tiny_config(checkpoint_every_steps=7), workdir)
    return workdir


def assert_same_run(workdir, reference, config=None):
    assert helpers.last_per_epoch(workdir) == helpers.last_per_epoch(reference)
    ours, _, _ = helpers.latest_params(workdir, config)
    theirs, _, _ = helpers.latest_params(reference, config)
    for key in theirs:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_sigterm_in_the_last_batch_of_an_epoch_finishes_it_and_resumes(uninterrupted, tmp_path):
    with helpers.at_train_step(STEPS_PER_EPOCH, helpers.send(signal.SIGTERM)), pytest.raises(loop.Preempted):
        loop.train_and_evaluate(helpers.tiny_config(checkpoint_every_steps=7), tmp_path)
    _, step, position = helpers.latest_params(tmp_path)
    assert (step, position.epoch, position.batch) == (STEPS_PER_EPOCH, 1, 0), "the epoch must be finished and saved"
    assert [r["split"] for r in helpers.records(tmp_path)] == ["train", "dev"]
    loop.train_and_evaluate(helpers.tiny_config(checkpoint_every_steps=7), tmp_path)
    assert_same_run(tmp_path, uninterrupted)


def test_a_crash_between_the_best_and_the_latest_save_resumes_consistently(uninterrupted, tmp_path, monkeypatch):
    original = checkpoint.RunCheckpoints.save_latest

    def crash_at_the_end_of_epoch_1(self, step, state, position):
        if (position.epoch, position.batch) == (2, 0):
            raise KeyboardInterrupt("killed between the two saves")
        return original(self, step, state, position)

    monkeypatch.setattr(checkpoint.RunCheckpoints, "save_latest", crash_at_the_end_of_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        loop.train_and_evaluate(helpers.tiny_config(checkpoint_every_steps=7), tmp_path)
    monkeypatch.setattr(checkpoint.RunCheckpoints, "save_latest", original)
    runs = checkpoint.RunCheckpoints(tmp_path)
    latest, best = runs.find("latest")[1], runs.find("best")[1]
    runs.close()
    assert best == 2 * STEPS_PER_EPOCH and latest < best, "best saved first, the latest save never happened"
    loop.train_and_evaluate(helpers.tiny_config(checkpoint_every_steps=7), tmp_path)
    assert_same_run(tmp_path, uninterrupted)
    _, _, position = helpers.latest_params(tmp_path)
    runs = checkpoint.RunCheckpoints(tmp_path)
    assert runs.find("best")[1] == (position.best_epoch + 1) * STEPS_PER_EPOCH
    runs.close()


def test_a_saved_position_is_the_position_at_the_save(tmp_path):
    """The loop hands each save an immutable snapshot; what a checkpoint records is what was handed over."""
    config = helpers.tiny_config()
    _, state = helpers.fresh_state(config)
    runs = checkpoint.RunCheckpoints(tmp_path)
    here = Position(epoch=1, batch=5, best=0.5, best_epoch=0, train_sums={"loss_sum": 3.0, "count": 80.0})
    runs.save_latest(85, state, here)
    later = here.replace(batch=6, train_sums={"loss_sum": 4.0, "count": 96.0})  # the loop moves on at once
    with pytest.raises(AttributeError):
        here.batch = 7
    runs.wait()
    _, restored = runs.restore("latest", state)
    runs.close()
    assert restored == here != later


def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(uninterrupted, tmp_path, caplog):
    with helpers.at_train_batch(1, 40, helpers.kill), pytest.raises(KeyboardInterrupt):
        loop.train_and_evaluate(helpers.tiny_config(checkpoint_every_steps=7), tmp_path)
    newest = tmp_path / "checkpoints" / "latest" / "112"
    damaged = [p for p in newest.rglob("*") if p.is_file() and p.stat().st_size > 100]
    assert damaged, "the checkpoint must hold array files"
    for path in damaged:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with caplog.at_level("WARNING"):
        loop.train_and_evaluate(helpers.tiny_config(checkpoint_every_steps=7), tmp_path)
    assert "latest/112 is damaged" in caplog.text
    assert (tmp_path / "checkpoints" / "damaged" / "latest-112").is_dir(), "moved aside, not deleted"
    assert_same_run(tmp_path, uninterrupted)


def test_eval_names_a_damaged_checkpoint(uninterrupted, tmp_path):
    import shutil

    shutil.copytree(uninterrupted, tmp_path / "run")
    best = next((tmp_path / "run" / "checkpoints" / "best").iterdir())
    for path in best.rglob("*"):
        if path.is_file() and path.stat().st_size > 100:
            path.write_bytes(b"")
    result = helpers.run(["eval.py", f"--workdir={tmp_path / 'run'}"])
    assert result.returncode == 1
    assert f"best/{best.name} is damaged" in result.stderr and "Traceback" not in result.stderr


def test_a_restart_with_other_settings_is_refused_and_run_control_may_change(uninterrupted, tmp_path):
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(uninterrupted, workdir)
    saved = (workdir / "config.json").read_bytes()
    result = helpers.run(["train.py", "--config=configs/test.py", f"--workdir={workdir}",
                          "--config.train.learning_rate=0.1", "--config.model.layers=F N(16) D F N(10)"])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "train.learning_rate: saved 0.002, now 0.1" in result.stderr
    assert "model.layers: saved 'F N(32) D F N(10)', now 'F N(16) D F N(10)'" in result.stderr
    assert (workdir / "config.json").read_bytes() == saved, "a refused run must not touch config.json"
    result = helpers.run(["train.py", "--config=configs/test.py", f"--workdir={workdir}", "--config.train.epochs=3",
                          "--config.train.eval_batch_size=32"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert [r["epoch"] for r in helpers.records(workdir) if r["split"] == "dev"] == [0, 1, 2]
    assert json.loads((workdir / "config.json").read_text())["train"]["epochs"] == 3
    result = helpers.run(["train.py", "--config=configs/test.py", f"--workdir={workdir}", "--overwrite",
                          "--config.train.epochs=1"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "deleted" in result.stderr and [r["epoch"] for r in helpers.records(workdir) if r["split"] == "dev"] == [0]


def _two_processes(workdir, *extra, signal_process=None, batch=(1, 20)):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    args = ["train.py", "--config=configs/test.py", f"--workdir={workdir}", f"--coordinator_address=localhost:{port}",
            "--num_processes=2", *extra]
    if signal_process is not None:
        args = ["tests/signal_at_batch.py", "SIGTERM", str(batch[0]), str(batch[1]), str(signal_process), *args]
    environment = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    procs = [subprocess.Popen([sys.executable, *args, f"--process_id={i}"], cwd=REPO, env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    return [(p, *p.communicate(timeout=300)) for p in procs]


def test_one_sigterm_on_one_of_two_processes_stops_both_at_one_step(uninterrupted, tmp_path):
    results = _two_processes(tmp_path, signal_process=1)
    for p, _, err in results:
        assert p.returncode == 128 + signal.SIGTERM, err[-3000:]
        assert "saved; resume with the same command" in err
    steps = {err.split(" at step ")[1].split(":")[0] for _, _, err in results}
    assert len(steps) == 1, f"the processes stopped at different steps: {steps}"
    _, step, position = helpers.latest_params(tmp_path)
    assert str(step) == steps.pop() and position.epoch == 1 and 0 < position.batch < STEPS_PER_EPOCH
    for p, _, err in _two_processes(tmp_path):
        assert p.returncode == 0, err[-3000:]
    helpers.assert_same_training(tmp_path, uninterrupted)


def test_eight_devices_with_carried_state_and_microbatches_match_one(tmp_path):
    """Shardings pinned: carried per-sample states split along the data axis, microbatches keep rows local."""
    flags = ["--config.model.preserve_state=True", "--config.data.drop_remainder=True",
             "--config.train.microbatches=2", "--config.train.epochs=1"]
    result = helpers.run(["train.py", "--config=configs/test.py", f"--workdir={tmp_path / 'eight'}", *flags],
                         devices=8)
    assert result.returncode == 0, result.stderr[-3000:]
    result = helpers.run(["train.py", "--config=configs/test.py", f"--workdir={tmp_path / 'one'}", *flags])
    assert result.returncode == 0, result.stderr[-3000:]
    config = helpers.tiny_config(microbatches=2, epochs=1)
    config.model.preserve_state, config.data.drop_remainder = True, True
    helpers.assert_same_training(tmp_path / "eight", tmp_path / "one", config)


@pytest.mark.slow
def test_the_quick_start_killed_again_and_again_ends_like_an_uninterrupted_run(tmp_path):
    """The digits quick start, stopped at random moments by SIGTERM and sometimes SIGKILL, and restarted with the
    same command each time, ends with the same dev curve, test result and parameters as a run left alone."""
    def command(workdir):
        return [sys.executable, "train.py", "--config=configs/digits.py", f"--workdir={workdir}",
                "--config.train.checkpoint_every_steps=10", "--config.train.progress_bar=False"]

    straight = subprocess.run(command(tmp_path / "straight"), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    rng = np.random.default_rng(0)
    kills = []
    for _ in range(12):
        proc = subprocess.Popen(command(tmp_path / "killed"), cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            proc.wait(timeout=float(rng.uniform(4, 10)))  # the whole run takes about 11 s, 5 of them start-up
        except subprocess.TimeoutExpired:
            kills.append(signal.SIGKILL if rng.random() < 0.3 else signal.SIGTERM)
            proc.send_signal(kills[-1])
        proc.communicate(timeout=300)
        if proc.returncode == 0:
            break
    result = subprocess.run(command(tmp_path / "killed"), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(kills) >= 3, f"the run must have been interrupted several times, got {kills}"
    assert_same_run(tmp_path / "killed", tmp_path / "straight", experiments.load_config("digits"))


def test_a_lock_left_by_a_vanished_machine_is_taken_over_once_its_heartbeat_is_stale(tmp_path, caplog):
    """A preempted cloud VM cannot release run.lock, and its replacement has another host name: the lock's
    heartbeat decides. Fresh: refused, naming the holder and the heartbeat's age. Stale: taken over."""
    from iirsnn_jax.errors import WorkdirError
    from iirsnn_jax.training import workdir as workdir_lib

    def lock_of_another_host(age_s):
        beat = time.time() - age_s
        (tmp_path / "run.lock").write_text(json.dumps({"pid": 1, "host": "vanished-vm", "started": beat - 60,
                                                       "heartbeat": beat}))

    lock_of_another_host(30)
    with pytest.raises(WorkdirError, match=r"process 1 on host vanished-vm.*last heartbeat 3\d s ago"):
        workdir_lib.Workdir(tmp_path).lock()
    lock_of_another_host(workdir_lib.STALE_AFTER_S + 5)
    workdir = workdir_lib.Workdir(tmp_path)
    with caplog.at_level("WARNING"):
        workdir.lock()
    assert "stale lock" in caplog.text and "vanished-vm" in caplog.text
    assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
    workdir.unlock()
    assert not (tmp_path / "run.lock").exists()


def test_a_live_run_keeps_its_lock_fresh(tmp_path, monkeypatch):
    from iirsnn_jax.training import workdir as workdir_lib

    workdir = workdir_lib.Workdir(tmp_path)
    workdir.lock()
    first = json.loads((tmp_path / "run.lock").read_text())
    workdir.heartbeat()  # less than HEARTBEAT_EVERY_S later: nothing written
    assert json.loads((tmp_path / "run.lock").read_text()) == first
    monkeypatch.setattr(workdir_lib, "HEARTBEAT_EVERY_S", 0.0)
    time.sleep(0.01)
    workdir.heartbeat()
    second = json.loads((tmp_path / "run.lock").read_text())
    assert second["heartbeat"] > first["heartbeat"]
    assert {k: v for k, v in second.items() if k != "heartbeat"} == {k: v for k, v in first.items() if k != "heartbeat"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.lock"]  # no staging file left behind
    workdir.unlock()
