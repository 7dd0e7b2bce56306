"""Do two run directories agree on the runs they share? A run is one (method, numbers, seed); two jobs
that both hold it (a pilot and the default it planned, an 8-seed and an 18-seed run of one config)
should have written the same bytes for it, whatever else shared their compiled batches.

    python scripts/shared_runs.py results/supervised/<run A> results/supervised/<run B>

Compares every ``metrics.jsonl`` row of the shared runs (source-phase rows by seed and step, adaptation
rows by method, numbers, seed and step; ``run_index``, the run's place in its job, left out) and each
shared run's summary in ``runs.json``. Prints the counts and the first differing row; exits 1 where any
shared row differs, 2 where the directories share no run or a file is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

PLACE = ("run_index",)  # where a run sat in its job: not a number of the run


def _rows(path: str) -> dict:
    """{row key: canonical JSON of the row without its place} for one run directory's metrics."""
    out = {}
    with open(os.path.join(path, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("phase") == "source" and "method" not in r:
                key = ("source", r.get("seed"), r.get("step"))
            else:
                key = (r.get("phase"), r.get("method"), json.dumps(r.get("hparams"), sort_keys=True),
                       r.get("seed"), r.get("step"))
            out[key] = json.dumps({k: v for k, v in r.items() if k not in PLACE}, sort_keys=True)
    return out


def _summaries(path: str) -> dict:
    """{(method, numbers, seed): canonical JSON of the run's summary} from ``runs.json``."""
    with open(os.path.join(path, "runs.json")) as f:
        runs = json.load(f)
    return {(r["method"], json.dumps(r.get("hparams"), sort_keys=True), r["seed"]):
            json.dumps(r.get("summary"), sort_keys=True) for r in runs}


def _order(key: tuple) -> tuple:
    """Row keys in training order: numbers (seed, step) as numbers, so step 2048 comes before 10240."""
    return tuple((0, x, "") if isinstance(x, (int, float)) else (1, 0, str(x)) for x in key)


def compare(a: str, b: str) -> tuple[int, str]:
    """(exit status, report) for the runs directories ``a`` and ``b`` share."""
    for d in (a, b):
        for name in ("metrics.jsonl", "runs.json"):
            if not os.path.isfile(os.path.join(d, name)):
                return 2, f"shared_runs: {d}: no {name}; give two complete run directories"
    sa, sb = _summaries(a), _summaries(b)
    shared = sorted(set(sa) & set(sb))
    if not shared:
        return 2, f"shared_runs: {a} and {b} share no (method, numbers, seed)"
    keep = set(shared)
    ra, rb = _rows(a), _rows(b)
    seeds = {s for _, _, s in keep}

    def wanted(k):
        return k[1] in seeds if k[0] == "source" else (k[1], k[2], k[3]) in keep

    keys = sorted((k for k in set(ra) & set(rb) if wanted(k)), key=_order)
    missing = [k for k in set(ra) ^ set(rb) if wanted(k)]
    bad = [k for k in keys if ra[k] != rb[k]]
    bad_summary = [k for k in shared if sa[k] != sb[k]]
    lines = [f"{len(shared)} shared runs ({', '.join(sorted({m for m, _, _ in shared}))}; seeds "
             f"{min(seeds)}-{max(seeds)}): {len(keys)} metric rows compared, {len(bad)} differ; "
             f"{len(shared)} summaries compared, {len(bad_summary)} differ"]
    if missing:
        lines.append(f"{len(missing)} rows of shared runs are in one directory only, e.g. {sorted(missing, key=_order)[0]}")
    if bad:
        lines.append(f"first differing row {bad[0]}:\n  {ra[bad[0]]}\n  {rb[bad[0]]}")
    return (1 if bad or bad_summary or missing else 0), "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a")
    p.add_argument("b")
    args = p.parse_args(argv)
    rc, report = compare(args.a, args.b)
    print(report, file=sys.stderr if rc == 2 else sys.stdout)
    return rc


if __name__ == "__main__":
    sys.exit(main())
