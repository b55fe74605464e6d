"""Workdirs in a bucket: a run whose --workdir is gs://bucket/run keeps every file there, through etils.epath.

The bucket is tests/fake_gcs.py, an in-memory server of the GCS JSON API in this process. The three clients a
run uses reach it through their emulator settings, as they would reach Google's servers: gcsfs (epath's gs://
backend: config.json, metrics.jsonl, run.lock, TensorBoard events, Orbax's metadata), google-cloud-storage
(Orbax asks for the bucket before listing steps) and TensorStore's gcs driver (Orbax's arrays). Nothing
leaves the machine, and a request the server does not know fails the test. A run in the bucket is compared
with the same run in a local folder; the tests run from a scratch folder, where pathlib would have turned
gs://bucket/run into the local folder gs:/bucket/run.
"""
import importlib
import io
import json
import os
import struct

import numpy as np
import pytest

import training_helpers as helpers
from fake_gcs import FakeGcs
from golden_files import REPO
from iirsnn_jax import config as config_lib
from iirsnn_jax.errors import WorkdirError
from iirsnn_jax.training import checkpoint, loop, metrics
from iirsnn_jax.training.position import Position
from iirsnn_jax.training.workdir import Workdir, open_exclusive

BUCKET_CLIENTS = ("gcsfs", "google.cloud.storage")  # what epath and Orbax need for gs:// (requirements.txt)


@pytest.fixture(scope="module")
def gcs():
    with FakeGcs(buckets=["bucket"]) as server, pytest.MonkeyPatch.context() as patch:
        for key, value in server.environment().items():  # before the clients are imported: gcsfs reads some
            patch.setenv(key, value)
        for module in BUCKET_CLIENTS:
            try:
                importlib.import_module(module)
            except ImportError:
                if os.environ.get("CI"):
                    pytest.fail(f"{module} is not installed: gs:// workdirs need {' and '.join(BUCKET_CLIENTS)}")
                pytest.skip(f"{module} is not installed")
        yield server


@pytest.fixture
def bucket(gcs, request, monkeypatch, tmp_path):
    """gs://bucket/<test name>, with the test in a scratch folder; fails the test on unknown requests."""
    monkeypatch.chdir(tmp_path)
    yield f"gs://bucket/{request.node.name}"
    assert not gcs.unknown, f"requests the fake GCS server does not know: {gcs.unknown}"
    assert not (tmp_path / "gs:").exists(), "a bucket path became a local folder"


def stored(gcs, url: str) -> dict[str, bytes]:
    """{name relative to url: bytes} of the objects under a gs://bucket/... URL."""
    prefix = url.removeprefix("gs://bucket/") + "/"
    return {name[len(prefix):]: data for name, data in gcs.objects("bucket").items() if name.startswith(prefix)}


def scalars(event_file: bytes) -> dict[tuple[str, int], float]:
    """{(tag, step): value} of a TensorBoard event file, read record by record (TFRecord framing: length,
    its CRC, the Event proto, its CRC)."""
    from tensorboardX.proto import event_pb2

    out, at = {}, 0
    while at < len(event_file):
        (length,) = struct.unpack_from("<Q", event_file, at)
        event = event_pb2.Event.FromString(event_file[at + 12: at + 12 + length])
        at += 12 + length + 4
        for value in event.summary.value:
            out[value.tag, event.step] = value.simple_value
    return out


def test_the_lock_and_the_config_of_a_bucket_workdir(bucket, gcs):
    config = helpers.tiny_config()
    first = Workdir(bucket)
    first.lock()
    holder = json.loads(stored(gcs, bucket)["run.lock"])
    assert holder["pid"] == os.getpid()
    with pytest.raises(WorkdirError, match=f"in use by another run \\(process {os.getpid()}"):
        Workdir(bucket).lock()  # the lock's object exists: an exclusive create is refused by the store
    first.check_config(config)
    first.write_config(config)
    assert config_lib.read_run_config(bucket).to_json_best_effort() == config.to_json_best_effort()
    changed = helpers.tiny_config()
    changed.model.layers = "F N(16) D F N(10)"
    with pytest.raises(WorkdirError, match="model.layers: saved 'F N\\(32\\) D F N\\(10\\)', now 'F N\\(16\\)"):
        first.check_config(changed)
    first.unlock()
    assert sorted(stored(gcs, bucket)) == ["config.json"]
    prefix = bucket.removeprefix("gs://bucket/")
    for name in ("metrics.jsonl", "tensorboard/events.out.tfevents.1.host", "checkpoints/latest/7/state/d/x"):
        gcs.store("bucket", f"{prefix}/{name}", b"...")
    second = Workdir(bucket)
    second.lock()
    assert second.overwrite() == [f"{bucket}/{name}" for name in ("config.json", "metrics.jsonl", "tensorboard",
                                                                  "checkpoints")]
    second.unlock()
    assert stored(gcs, bucket) == {}


def test_an_exclusive_create_in_a_bucket_keeps_the_first_object(bucket, gcs):
    with open_exclusive(Workdir(bucket).lock_path) as f:
        f.write(b"first")
    with pytest.raises(FileExistsError):
        with open_exclusive(Workdir(bucket).lock_path) as f:
            f.write(b"second")
    assert stored(gcs, bucket) == {"run.lock": b"first"}


def test_metrics_and_tensorboard_events_are_objects_in_the_bucket(bucket, gcs, caplog):
    gcs.store("bucket", bucket.removeprefix("gs://bucket/") + "/metrics.jsonl", b'{"epoch": 0, "split": "tr')
    writer = metrics.MetricWriter(bucket, enabled=True)  # a crash cut the last record: start on a fresh line
    writer.write({"epoch": 0, "split": "train", "loss": 0.5}, step=3)
    writer.write({"epoch": 0, "split": "dev", "loss": 0.25, "accuracy": 0.75}, step=3)
    writer.close()
    with caplog.at_level("WARNING"):
        records = metrics.read_metrics(bucket)
    assert [(r["split"], r["loss"]) for r in records] == [("train", 0.5), ("dev", 0.25)]
    assert "metrics.jsonl line 1 is damaged" in caplog.text
    events = {name: data for name, data in stored(gcs, bucket).items() if name.startswith("tensorboard/")}
    assert len(events) == 1, events.keys()
    assert scalars(next(iter(events.values()))) == {("train/loss", 3): 0.5, ("dev/loss", 3): 0.25,
                                                     ("dev/accuracy", 3): 0.75}


def test_tensorboard_that_cannot_write_to_the_bucket_warns_once_and_the_run_goes_on(bucket, gcs, caplog):
    gcs.refused.append("/tensorboard/")
    try:
        with caplog.at_level("WARNING"):
            writer = metrics.MetricWriter(bucket, enabled=True)
            for epoch in range(3):
                writer.write({"epoch": epoch, "split": "train", "loss": 1.0 / (epoch + 1)}, step=epoch)
            writer.close()
    finally:
        gcs.refused.remove("/tensorboard/")
    warnings = [r.getMessage() for r in caplog.records if "TensorBoard events cannot be written" in r.getMessage()]
    assert len(warnings) == 1 and "Forbidden" in warnings[0], warnings
    assert [r["epoch"] for r in metrics.read_metrics(bucket)] == [0, 1, 2]
    assert list(stored(gcs, bucket)) == ["metrics.jsonl"]


def test_a_checkpoint_the_bucket_never_saw_committed_is_not_resumed_from(bucket, gcs):
    """In a bucket Orbax writes a step in place and commits it with commit_success.txt last (no atomic
    rename): a step cut off before that file is invisible, and the same step can be saved again."""
    _, state = helpers.fresh_state(helpers.tiny_config())
    runs = checkpoint.RunCheckpoints(bucket, asynchronous=False)
    runs.save_latest(1, state, Position(epoch=0, batch=1))
    runs.save_latest(2, state._replace(step=state.step + 2), Position(epoch=0, batch=2))
    runs.close()
    prefix = bucket.removeprefix("gs://bucket/") + "/checkpoints/latest/2/"
    assert f"{prefix}commit_success.txt" in gcs.objects("bucket")
    with gcs.lock:  # a save cut off before its commit file
        del gcs.buckets["bucket"][f"{prefix}commit_success.txt"]
    runs = checkpoint.RunCheckpoints(bucket, asynchronous=False)
    assert runs.steps()["latest"] == [1]
    _, position = runs.restore_newest_intact(state)
    assert position == Position(epoch=0, batch=1)
    assert runs.save_latest(2, state, Position(epoch=0, batch=2))
    runs.close()
    assert f"{prefix}commit_success.txt" in gcs.objects("bucket")


def test_a_damaged_checkpoint_in_a_bucket_is_moved_aside_and_the_older_one_restored(bucket, gcs, caplog):
    _, state = helpers.fresh_state(helpers.tiny_config())
    runs = checkpoint.RunCheckpoints(bucket, asynchronous=False)
    runs.save_latest(1, state, Position(epoch=0, batch=1))
    runs.save_latest(2, state, Position(epoch=0, batch=2))
    runs.close()
    step_2 = bucket.removeprefix("gs://bucket/") + "/checkpoints/latest/2/"
    with gcs.lock:  # truncate the array data of step 2
        damaged = [o for name, o in gcs.buckets["bucket"].items() if name.startswith(step_2 + "state/d/")]
        for obj in damaged:
            obj.data = obj.data[: len(obj.data) // 3]
    assert damaged
    runs = checkpoint.RunCheckpoints(bucket, asynchronous=False)
    with caplog.at_level("WARNING"):
        _, position = runs.restore_newest_intact(state)
    runs.close()
    assert position == Position(epoch=0, batch=1)
    assert "latest/2 is damaged" in caplog.text
    names = stored(gcs, bucket)
    assert "checkpoints/damaged/latest-2/commit_success.txt" in names, "moved aside in the bucket"
    assert not any(name.startswith("checkpoints/latest/2/") for name in names)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The tiny config trained without interruption in a local folder."""
    workdir = tmp_path_factory.mktemp("local")
    loop.train_and_evaluate(helpers.tiny_config(), workdir)
    return workdir


def test_a_run_in_a_bucket_crashes_resumes_and_ends_like_a_local_run(bucket, gcs, local_run):
    from PIL import Image

    from iirsnn_jax.plots import make

    with helpers.at_train_batch(1, 30, helpers.kill), pytest.raises(KeyboardInterrupt):
        loop.train_and_evaluate(helpers.tiny_config(), bucket)
    _, step, position = helpers.latest_params(bucket)
    assert (step, position.epoch, position.batch) == (79, 1, 0), "the end-of-epoch-0 checkpoint, in the bucket"
    loop.train_and_evaluate(helpers.tiny_config(), bucket)
    assert helpers.records(bucket) == helpers.records(local_run)
    ours, _, _ = helpers.latest_params(bucket)
    theirs, _, _ = helpers.latest_params(local_run)
    for key in theirs:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    files = stored(gcs, bucket)
    assert {"config.json", "metrics.jsonl"} <= set(files) and "run.lock" not in files
    assert any(name.startswith("tensorboard/events.out.tfevents.") for name in files)
    assert any(name.startswith("checkpoints/best/158/") for name in files)

    written = make.make_plots(bucket, kinds=["curves", "confusion"])  # default out: <workdir>/plots
    assert [str(w.path) for w in written] == [f"{bucket}/plots/training_curves.png",
                                              f"{bucket}/plots/confusion_matrix_dev.png"]
    files = stored(gcs, bucket)
    for item in written:
        assert Image.open(io.BytesIO(files[f"plots/{item.path.name}"])).size == item.size


@pytest.mark.slow
def test_train_kill_resume_eval_and_plots_commands_on_a_bucket(bucket, gcs, local_run):
    """The commands a user runs on a cloud VM: train.py killed outright (SIGKILL: no save, the lock left
    behind), the same command again, then eval.py and the plots, all on gs://."""
    train = ["train.py", "--config=configs/test.py", f"--workdir={bucket}", "--config.train.checkpoint_every_steps=40"]
    killed = helpers.run(["tests/signal_at_batch.py", "SIGKILL", "1", "45", "0", *train], **gcs.environment())
    assert killed.returncode == -9, killed.stderr[-3000:]
    files = stored(gcs, bucket)
    assert "run.lock" in files and [r["epoch"] for r in helpers.records(bucket)] == [0, 0]
    resumed = helpers.run(train, **gcs.environment())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "taking over the stale lock" in resumed.stderr
    assert helpers.records(bucket) == helpers.records(local_run)
    assert "run.lock" not in stored(gcs, bucket)

    evaluated = helpers.run(["eval.py", f"--workdir={bucket}", "--checkpoint=best", "--split=test"],
                            **gcs.environment())
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    result = json.loads(evaluated.stdout.strip().splitlines()[-1])
    test = [r for r in metrics.read_metrics(local_run) if r["split"] == "test"][0]
    assert (result["epoch"], result["count"], result["loss"], result["accuracy"]) == \
        (test["epoch"], test["count"], test["loss"], test["accuracy"])

    plotted = helpers.run(["-m", "iirsnn_jax.plots", f"--workdir={bucket}", "--figures=curves"], **gcs.environment())
    assert plotted.returncode == 0, plotted.stderr[-3000:]
    assert f"{bucket}/plots/training_curves.png" in plotted.stdout
    assert stored(gcs, bucket)["plots/training_curves.png"].startswith(b"\x89PNG\r\n\x1a\n")
    assert not (REPO / "gs:").exists(), "the commands ran in the repository: no local gs: folder there"
