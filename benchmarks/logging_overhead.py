"""The cost of the dashboards: a supervised job of 32 vmapped runs (16 seeds x hard switch and loss
smoothing, the default's shapes) with JSONL only against the same job with one offline wandb run and
one TensorBoard folder per logical run (``logger=all``), each a fresh process on a warm compilation
cache, alternated, best of ``--repeats``. Prints the wall times and the overhead (target: under 5%).

    python benchmarks/logging_overhead.py [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

JOB = ["num_seeds=16", "progress=false", "setting.source_steps=250", "setting.adapt_steps=300"]


def run(results: str, cache: str, logger: str) -> tuple[float, dict]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lossmooth.cli", "run", f"results_dir={results}", f"cache_dir={cache}",
                    f"logger={logger}", "rerun=true", *JOB], check=True, capture_output=True, env=env)
    wall = time.perf_counter() - t
    newest = sorted(os.listdir(os.path.join(results, "supervised")))[-1]
    with open(os.path.join(results, "supervised", newest, "summary.json")) as f:
        return wall, json.load(f)["wall_s"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache, results = os.path.join(tmp, "cache"), os.path.join(tmp, "results")
        run(results, cache, "jsonl")  # fills the compilation cache: the timed runs compile nothing new
        best = {"jsonl": float("inf"), "all": float("inf")}
        for _ in range(a.repeats):
            for logger in ("all", "jsonl"):
                wall, _ = run(results, cache, logger)
                best[logger] = min(best[logger], wall)
                print(f"[{logger}] {wall:.1f} s", flush=True)
    extra = best["all"] - best["jsonl"]
    print(f"32 runs, JSONL only: {best['jsonl']:.1f} s; with wandb (offline) + TensorBoard per run: "
          f"{best['all']:.1f} s; overhead {extra:.1f} s = {100 * extra / best['jsonl']:.1f}% (target < 5%)")


if __name__ == "__main__":
    main()
