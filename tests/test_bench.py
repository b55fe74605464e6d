"""The benchmark harness runs: one tiny config, two steps, in a subprocess; its JSON line has sane values."""
import json
import subprocess
import sys
from pathlib import Path

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
