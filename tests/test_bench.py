"""The benchmark harness runs: one tiny config, two steps, in a subprocess; its JSON line has sane values."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_train_step_benchmark_prints_one_sane_json_line(tmp_path):
    out = tmp_path / "bench.jsonl"
    command = [sys.executable, str(ROOT / "bench" / "train_step.py"), f"--config={ROOT / 'configs' / 'test.py'}",
               "--steps=2", "--warmup=1", "--batch=8", "--length=5", f"--out={out}",
               "--config.train.microbatches=2"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text().strip()) == line
    expected = {"experiment", "batch", "length", "steps", "compile_s", "step_ms", "samples_per_s", "peak_mem_mb",
                "flops", "matmul_gflops", "utilisation", "device"}
    assert expected <= set(line)
    assert (line["experiment"], line["batch"], line["length"], line["steps"]) == ("test", 8, 5, 2)
    assert line["microbatches"] == 2  # config overrides reach the benchmarked step
    assert 0 < line["compile_s"] < 60 and 0 < line["step_ms"] < 10_000
    assert abs(line["samples_per_s"] - 8 / (line["step_ms"] / 1e3)) < 0.01 * line["samples_per_s"]
    assert line["peak_mem_mb"] > 10 and line["flops"] > 0 and line["matmul_gflops"] > 0.1
    assert 0 < line["utilisation"] < 2
    assert line["device"].startswith(("cpu", "gpu", "cuda", "tpu"))
    assert line["scan"] in ("sequential", "associative") and isinstance(line["huge_pages"], bool)


# The default run takes the two input forms whose step differs most (float intensities copied over T; packed
# event bits unpacked on the device); `-m slow` adds the others, each a full-size network to compile.
@pytest.mark.parametrize("config, flags", [
    ("digits", []),  # float32 intensities, copy encoding
    pytest.param("snn_mlp_1", [], marks=pytest.mark.slow),  # uint8 pixels, augmented on the device, flattened
    pytest.param("snn_mlp_1_poisson_input", ["--config.data.length=3"], marks=pytest.mark.slow),
    ("snn_conv_1_nmnist", ["--config.data.length=2"]),  # packed event bits
    pytest.param("snn_conv_1_gesture_max", ["--config.data.length=2"], marks=pytest.mark.slow),  # uint16 counts
])
def test_pipeline_input_benchmarks_the_step_as_train_py_runs_it(config, flags):
    """--input=pipeline: the batch has the host pipeline's form and the step encodes it (data.make_input_fn)."""
    command = [sys.executable, str(ROOT / "bench" / "train_step.py"), f"--config={ROOT / 'configs' / config}.py",
               "--input=pipeline", "--steps=1", "--warmup=0", "--batch=2", "--nohuge_pages", *flags]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["input"] == "pipeline" and line["batch"] == 2 and line["step_ms"] > 0


@pytest.mark.parametrize("flags, message", [
    (["--batch=0"], "--batch=0: must be at least 1"),
    (["--batch=-4"], "--batch=-4: must be at least 1"),
    (["--steps=0"], "--steps=0: must be at least 1"),
    (["--length=0"], "--length=0: must be at least 1"),
    (["--warmup=-1"], "--warmup=-1: must be at least 0"),
    (["--batch=5", "--config.train.microbatches=2"], "must be at least 1 and divide the batch size 5"),
    (["--config.model.scan=fastest"], "bad config: model.scan must be one of"),
    (["--input=pipeline", "--length=7"], "give --config.data.length=7 instead of --length=7"),
])
def test_bad_flags_are_one_line_errors(flags, message):
    command = [sys.executable, str(ROOT / "bench" / "train_step.py"), f"--config={ROOT / 'configs' / 'test.py'}",
               "--nohuge_pages", *flags]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("bench/train_step.py:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert result.stdout == ""


def test_side_by_side_table_reports_medians_and_ratios(tmp_path):
    rows = [dict(workload="mlp", side="reference", round=r, batch=64, step_ms=ms, peak_mem_mb=400)
            for r, ms in enumerate((90.0, 100.0, 80.0))]
    rows += [dict(workload="mlp", side="ours", round=r, batch=64, step_ms=ms, peak_mem_mb=500, utilisation=0.5,
                  matmul_gflops=480.0) for r, ms in enumerate((30.0, 31.0, 29.0))]
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "side_by_side_table.py"), str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "median 480" in lines[0]
    assert "| mlp | reference | 90 (80-100) | 711.1 | 0.4 |  |  |  |" in lines
    assert "| mlp | ours | 30 (29-31) | 2133.3 | 0.5 | 0.50 | 3.00 |  |" in lines


def test_host_loop_benchmark_times_the_loop_without_the_network(tmp_path):
    out = tmp_path / "host.jsonl"
    command = [sys.executable, str(ROOT / "bench" / "host_loop.py"), f"--config={ROOT / 'configs' / 'digits.py'}",
               "--epochs=2", f"--out={out}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text().strip()) == line
    assert (line["experiment"], line["batch"], line["steps_per_epoch"]) == ("digits", 32, -(-1257 // 32))  # the last batch padded
    assert len(line["host_ms_per_step_epochs"]) == 1 and 0 < line["host_ms_per_step"] < 100
    assert abs(line["max_steps_per_s"] - 1e3 / line["host_ms_per_step"]) < 0.01 * line["max_steps_per_s"] + 0.1

    bad = subprocess.run([*command[:3], "--epochs=1"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "--epochs >= 2" in bad.stderr and "Traceback" not in bad.stderr
