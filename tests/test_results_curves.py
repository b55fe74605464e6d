"""tools/results_curves.py on workdirs written by the test (config.json and metrics.jsonl in train.py's format,
no checkpoints): the PNGs exist with a sane size, and the table rows hold the numbers of the records, with an
epoch written twice by a resumed run (the last record counts) and a gap between the two sessions."""
import json
import struct
import subprocess
import sys

import numpy as np
from PIL import Image

from golden_files import REPO
from iirsnn_jax import experiments

T0 = 1_800_000_000.0


def write_run(workdir, experiment: str, epochs: list[dict], test: dict) -> None:
    """epochs: {"epoch", "train", "dev", "samples_per_s", "dev_seconds", "pause"} in the order written;
    each epoch's train pass lasts count / samples_per_s, its dev evaluation dev_seconds; "pause" seconds
    pass before it (a stopped and resumed run)."""
    workdir.mkdir()
    config = experiments.load_config(experiment)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
    key = "accuracy" if config.train.loss == "cross_entropy" else "loss"
    now, lines = T0, []
    for e in epochs:
        now += e.get("pause", 0.0) + 50_000 / e["samples_per_s"]
        lines.append({"time": now, "step": 1, "epoch": e["epoch"], "split": "train", "loss": 1.0, key: e["train"],
                      "count": 50_000, "samples_per_s": e["samples_per_s"], "learning_rate": 1e-4})
        now += e["dev_seconds"]
        lines.append({"time": now, "step": 1, "epoch": e["epoch"], "split": "dev", "loss": 1.0, key: e["dev"],
                      "count": 10_000})
    lines.append({"time": now + 20, "step": 1, "split": "test", "checkpoint": "best", "loss": 1.0, **test})
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def check_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert 500 <= width <= 1500 and 300 <= height <= 1000, f"{path.name} has an odd size {width}x{height}"
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), np.float32)
    assert pixels.std() > 10.0, f"{path.name} looks blank"


def cells(output: str, experiment: str) -> list[str]:
    rows = [line for line in output.splitlines() if line.startswith(f"| {experiment} ")]
    assert len(rows) == 1, output
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_rows_and_figures(tmp_path):
    mlp, memory = tmp_path / "mlp", tmp_path / "memory"
    # 60 s per epoch (50 s train pass at 1000 samples/s, 10 s dev). The first session's epoch 2 (slower, and
    # with a dev accuracy that would be the best) is redone after a 1000 s pause: those records must not count.
    write_run(mlp, "snn_mlp_1", [
        dict(epoch=0, train=0.80, dev=0.90, samples_per_s=1000, dev_seconds=10),
        dict(epoch=1, train=0.90, dev=0.95, samples_per_s=1000, dev_seconds=10),
        dict(epoch=2, train=0.99, dev=0.995, samples_per_s=500, dev_seconds=30),
        dict(epoch=2, train=0.93, dev=0.955, samples_per_s=1000, dev_seconds=10, pause=1000),
        dict(epoch=3, train=0.94, dev=0.97, samples_per_s=1000, dev_seconds=10),
        dict(epoch=4, train=0.95, dev=0.965, samples_per_s=1000, dev_seconds=10),
    ], test={"epoch": 3, "accuracy": 0.968})
    # MSE: the best dev epoch is the lowest; 2 epochs of 250 s + 50 s.
    write_run(memory, "associative_memory", [
        dict(epoch=0, train=0.2, dev=0.1, samples_per_s=200, dev_seconds=50),
        dict(epoch=1, train=0.05, dev=0.04, samples_per_s=200, dev_seconds=50),
    ], test={"epoch": 1, "loss": 0.045})
    out = tmp_path / "images"
    result = subprocess.run([sys.executable, str(REPO / "tools" / "results_curves.py"), f"--workdir={mlp}",
                             f"--workdir={memory}", f"--out={out}"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert cells(result.stdout, "snn_mlp_1") == [
        "snn_mlp_1", "5 / 100", "97.00 (3)", "98.58 (72)", "94.00", "99.122", "96.80", "98.94", "5 min"]
    assert cells(result.stdout, "associative_memory") == [
        "associative_memory (MSE)", "2 / 100", "0.04 (1)", "0.003688 (92)", "0.05", "–", "0.045", "0.0042", "10 min"]
    assert result.stdout.splitlines()[0].startswith("| experiment | epochs |")
    for name in ("snn_mlp_1", "associative_memory"):
        check_png(out / f"results_{name}.png")


def test_comma_list_and_missing_config(tmp_path):
    """A comma list is split into workdirs; a folder without config.json is named in a one-line error."""
    result = subprocess.run([sys.executable, str(REPO / "tools" / "results_curves.py"),
                             f"--workdir={tmp_path / 'a'},{tmp_path / 'b'}", f"--out={tmp_path}"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert f"{tmp_path / 'a'}/config.json not found" in result.stderr and "Traceback" not in result.stderr
