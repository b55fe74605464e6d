"""The table of bench/side_by_side.sh: per workload and side, the median step and its spread over the rounds,
samples/s, peak memory, utilisation and the ratio to the reference (and to OLD_ROOT), all from one file.

    python bench/side_by_side_table.py side_by_side.jsonl
"""
import collections
import json
import statistics
import sys


def main(path: str) -> None:
    rows = collections.defaultdict(list)
    with open(path) as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                rows[record["workload"], record["side"]].append(record)
    matmul = [r["matmul_gflops"] for records in rows.values() for r in records if "matmul_gflops" in r]
    print(f"matmul rate of the runs (2048^2 float32, best of 10 per process): median {statistics.median(matmul):.0f}, "
          f"range {min(matmul):.0f}-{max(matmul):.0f} GFLOP/s" if matmul else "no runs of ours")
    print("| workload | side | step ms, median (min-max over rounds) | samples/s | peak GB | utilisation | "
          "x reference | x old |")
    print("|---|---|---|---|---|---|---|---|")
    for workload in dict.fromkeys(w for w, _ in rows):
        medians = {side: statistics.median(r["step_ms"] for r in rows[workload, side])
                   for side in ("reference", "ours", "old") if rows.get((workload, side))}
        for side, median in medians.items():
            records = rows[workload, side]
            steps = [r["step_ms"] for r in records]
            batch = records[0]["batch"]
            util = statistics.median(r["utilisation"] for r in records) if "utilisation" in records[0] else None
            ratio = lambda other: f"{medians[other] / median:.2f}" if other in medians and other != side else ""
            print(f"| {workload} | {side} | {median:.0f} ({min(steps):.0f}-{max(steps):.0f}) | "
                  f"{batch / median * 1e3:.1f} | {statistics.median(r['peak_mem_mb'] for r in records) / 1024:.1f} | "
                  f"{'' if util is None else f'{util:.2f}'} | {ratio('reference')} | {ratio('old')} |")


if __name__ == "__main__":
    main(sys.argv[1])
