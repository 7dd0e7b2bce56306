"""Two sweeps writing one results folder at once: both over the same two configs, in opposite orders.

Whatever the interleaving, a config is never run by both at the same moment (a per-config lock: the
second process skips it), nothing is left half-written, every run directory ends complete, and the
table counts each config's seeds once (a config finished twice, which only a tree with uncommitted
edits allows, is tabulated from its newest directory).
"""
import json
import subprocess
import sys

import pytest

from lossmooth.results import aggregate as agg
from lossmooth.results import store
from tests.conftest import TINY


def _sweep(results, cache_dir, order):
    return subprocess.Popen([sys.executable, "-m", "lossmooth.cli", "run", "-m", f"shift={order}",
                             f"results_dir={results}", f"cache_dir={cache_dir}"] + TINY,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # about 3.5 min on 2 cores: two sweeps of two runs each
def test_two_sweeps_into_one_results_folder(tmp_path, cache_dir):
    results = tmp_path / "results"
    procs = [_sweep(results, cache_dir, "none,blur"), _sweep(results, cache_dir, "blur,none")]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert "Traceback" not in err

    states = store.run_states(str(results))
    assert states and all(s["state"] == "complete" for s in states), states
    for s in states:  # every file whole
        json.load(open(f"{s['path']}/summary.json"))
        assert len(json.load(open(f"{s['path']}/runs.json"))) == 4  # 2 methods x 2 seeds
        assert all(json.loads(line) for line in open(f"{s['path']}/metrics.jsonl"))
    skipped = sum(o.count("nothing to do here") + o.count("already complete") for o, _ in outs)
    assert len(states) + skipped == 4  # each of the 4 jobs either ran its config or skipped it

    rows = agg.collect(str(results), "supervised")
    groups, _, _ = agg.tables(rows, reps=50)
    by = {(g["shift"], g["method"]): g for g in groups}
    assert set(by) == {(s, m) for s in ("none", "blur") for m in ("hard_switch", "loss_smoothing")}
    assert all(g["n"] == 2 for g in groups)  # each config's 2 seeds, counted once
