"""bench/input_pipeline.py runs: the digits config (no files needed), one JSON line with sane values."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_input_pipeline_benchmark_prints_one_sane_json_line(tmp_path):
    out = tmp_path / "bench.jsonl"
    command = [sys.executable, str(ROOT / "bench" / "input_pipeline.py"), f"--config={ROOT / 'configs' / 'digits.py'}",
               "--split=dev", "--epochs=2", f"--out={out}", "--config.train.batch_size=16"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text().strip()) == line
    assert (line["experiment"], line["split"], line["batch"]) == ("digits", "dev", 16)
    assert line["batches"] == 2 * (270 // 16)  # 17 batches an epoch (the last padded), the first one untimed
    assert line["samples_per_s"] > 0 and line["seconds"] > 0
    # float32 [8, 8] pixels, no time axis; label, split, epoch, index int32; mask bool
    assert line["per_key"] == {"input": 256.0, "label": 4.0, "mask": 1.0, "index": 4.0, "split": 4.0,
                               "epoch": 4.0}
    assert line["bytes_per_sample"] == 273.0
