"""How fast tables are built: one committed 16-run directory after imports, and `lossmooth table` over
every committed result (a fresh process, imports included), against their targets; and the IQM
interval of one table's groups by rliable's bootstrap against ours (vectorized numpy), with the same
point estimates.

    python benchmarks/table_speed.py [--results-dir results]

Targets: the 16-run table <= 1 s after imports; `lossmooth table` over every committed result <= 15 s.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lossmooth.results import aggregate as agg  # noqa: E402
from lossmooth.results import inference, tables  # noqa: E402

DEFAULT_RUN = "supervised/20261130-130021-14ea330652"  # the supervised default: 2 methods x 8 seeds


def one_directory(results_dir: str) -> tuple[float, list]:
    """Seconds to collect, aggregate and print the table of the default's run directory."""
    path = os.path.join(results_dir, DEFAULT_RUN)
    t0 = time.perf_counter()
    rows = agg.collect(results_dir, "supervised", run_dirs={path})
    groups, diffs, normalized = agg.tables(rows)
    tables.markdown(groups, diffs, "mean", normalized)
    return time.perf_counter() - t0, rows


def every_result(results_dir: str) -> float:
    """Wall seconds of `lossmooth table --results-dir <results_dir>` in a fresh process."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lossmooth.cli", "table", "--results-dir", results_dir], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def iqm_comparison(rows: list, reps: int = 2000) -> tuple[float, float, float]:
    """(rliable seconds, ours seconds, largest |point difference|) for the IQM interval of every metric
    of every group of ``rows``."""
    from rliable import library as rly
    from rliable import metrics as rmetrics

    groups: dict = {}
    for r in rows:
        groups.setdefault(agg.group_label(r), []).append(r)
    metrics = agg.metrics_of(rows)
    cells = [np.array([r["summary"][m] for r in rs if m in r["summary"]], np.float64)
             for rs in groups.values() for m in metrics]
    t0 = time.perf_counter()
    theirs = []
    for v in cells:
        np.random.seed(0)
        with contextlib.redirect_stdout(io.StringIO()):
            point, _ = rly.get_interval_estimates({"x": v.reshape(-1, 1)},
                                                  lambda s: np.array([rmetrics.aggregate_iqm(s)]), reps=reps)
        theirs.append(point["x"][0])
    t_rliable = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = []
    for rs in groups.values():
        vals = np.array([[r["summary"].get(m, np.nan) for m in metrics] for r in rs], np.float64)
        ours += list(inference.bootstrap_interval(vals, "iqm", reps)[0])
    t_ours = time.perf_counter() - t0
    return t_rliable, t_ours, float(np.max(np.abs(np.array(theirs) - np.array(ours))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results-dir", default="results")
    a = p.parse_args(argv)
    one_directory(a.results_dir)  # warm: file caches, scipy's first calls
    secs, rows = one_directory(a.results_dir)
    every = every_result(a.results_dir)
    t_r, t_o, gap = iqm_comparison(rows)
    ok1, ok2 = secs <= 1.0, every <= 15.0
    print(f"table of one 16-run directory ({DEFAULT_RUN}), after imports: {secs:.2f} s "
          f"(target <= 1 s: {'met' if ok1 else 'NOT met'})")
    print(f"`lossmooth table` over every committed result under {a.results_dir}/ (fresh process, imports "
          f"included): {every:.1f} s (target <= 15 s: {'met' if ok2 else 'NOT met'})")
    print(f"IQM 95% intervals of that table's groups, 2000 resamples: rliable {t_r:.2f} s, ours {t_o:.3f} s "
          f"({t_r / max(t_o, 1e-9):.0f}x); largest point difference {gap:.1e}")
    return 0 if ok1 and ok2 else 1


if __name__ == "__main__":
    sys.exit(main())
