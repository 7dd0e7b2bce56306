"""Rewrite the targets of registry entries (``results/targets.csv``) from the runs that exist now.

For each named entry, its table is rebuilt from its runs (exactly as ``lossmooth reproduce --check``
does) and each of the entry's targeted cells (the ``row`` and ``metric`` already listed for it in the
targets file) gets the regenerated value as its target and, as its tolerance, the half-width of the
cell's 95% CI (Student-t for means and paired differences; at least 0.001). Other entries' lines stay as they are. With ``--add KIND
--metrics M1,M2`` an entry without lines gets one per row of that kind (``aggregate`` or
``paired_diff``) and metric, each row selected by its method, context columns and numbers.

    python scripts/targets_from_runs.py offline_to_online_default [more entries] [--results-dir results]
    python scripts/targets_from_runs.py supervised_map --add paired_diff --metrics final_target_acc_diff,min_acc_diff
"""
from __future__ import annotations

import argparse
import csv
import json
import io
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lossmooth.reproduce import build, existing, registry, targets  # noqa: E402

NOTE = ("our committed reference run {run} (commit {commit}) on stand-in data, not a paper number; "
        "tolerance = half-width of its 95% CI, at least 0.001")


def half_width(row: dict, metric: str) -> float:
    for lo, hi in ((f"{metric}_lo", f"{metric}_hi"), (metric.replace("_mean", "_mean_lo"), metric.replace("_mean", "_mean_hi"))):
        try:
            a, b = float(row[lo]), float(row[hi])
        except (KeyError, TypeError, ValueError):
            continue
        if a == a and b == b:
            return max(abs(b - a) / 2.0, 0.001)
    return 0.001


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("entries", nargs="+")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--targets", default=targets.TARGETS)
    p.add_argument("--add", choices=("aggregate", "paired_diff"), help="add lines for every row of this kind")
    p.add_argument("--metrics", default="", help="with --add: comma-separated metrics")
    a = p.parse_args()
    entries = registry.load()
    with open(a.targets, newline="") as f:
        lines = list(csv.DictReader(f))
    out = []
    for name in a.entries:
        e = entries[name]
        points = registry.resolve(e)
        found = existing.find(points, a.results_dir, e.setting)
        assert all(f is not None for f in found), f"{name}: runs missing"
        table = build.tables(e, points, found, a.results_dir)
        rows = targets.table_rows(table.csv)
        run = ", ".join(os.path.relpath(f.path, a.results_dir) for f in found)
        commit = ", ".join(sorted({f.commit for f in found}))
        if a.add and not any(line["entry"] == name and line["row"].startswith(f"kind={a.add} ") for line in lines):
            # the dataset names a row where an entry's rows differ in it (its id, the first word)
            by_data = len({r.get("dataset") for r in rows if r.get("kind") == a.add}) > 1
            for row in rows:
                if row.get("kind") != a.add:
                    continue
                sel = [f"kind={a.add}", f"method={row['method']}"]
                sel += [f"dataset={row['dataset'].split(' ', 1)[0]}"] if by_data else []
                sel += [f"{k}={row[k]}" for k in ("model", "shift", "severity") if row.get(k) not in (None, "")]
                sel += [f"hparams.{k}={v}" for k, v in sorted(json.loads(row["hparams"]).items())]
                for m in a.metrics.split(","):
                    lines.append({"entry": name, "row": " ".join(sel), "metric": m, "target": "", "tolerance": "",
                                  "note": ""})
        for line in lines:
            if line["entry"] != name:
                continue
            t = targets.Target(entry=name, row=targets.selector(line["row"], "targets"), metric=line["metric"],
                               target=0.0, tolerance=0.0, note="", line=0)
            row = targets._select(t, rows)
            line["target"] = f"{float(row[t.metric]):.10g}"
            line["tolerance"] = f"{half_width(row, t.metric):.3g}"
            line["note"] = NOTE.format(run=run, commit=commit)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(targets.COLUMNS), lineterminator="\n")
    w.writeheader()
    w.writerows(lines)
    with open(a.targets, "w") as f:
        f.write(buf.getvalue())
    print(f"rewrote the targets of {', '.join(a.entries)} in {a.targets}")


if __name__ == "__main__":
    main()
