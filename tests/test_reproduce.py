"""``lossmooth reproduce``: a registry entry runs what is missing (once), rebuilds its table and plot
from exactly its runs, ``--check`` passes on the regenerated numbers and fails once a target leaves
its tolerance, ``--list`` shows what exists, bad input fails in one line and writes nothing; the real
registry resolves, its default entries find the committed runs and the committed targets hold."""
import contextlib
import csv
import io
import json
import os
import shutil

import pytest
import yaml

from lossmooth import cli
from lossmooth.reproduce import build, existing, registry
from lossmooth.reproduce.targets import TARGETS
from tests.conftest import TINY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULTS = ("supervised_default", "pretrained_vision_default", "online_rl_default", "offline_to_online_default",
            "lm_default")
HEADER = "entry,row,metric,target,tolerance,note\n"


def _reproduce(*args):
    """``lossmooth reproduce <args>`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["reproduce", *args])
    return rc, out.getvalue(), err.getvalue()


def committed_results(dest) -> str:
    """A copy of the committed results (the files git tracks under results/), whatever runs a user has
    added to results/ since: the tests check what the checkout ships."""
    import subprocess

    files = subprocess.run(["git", "-C", ROOT, "ls-files", "-z", "results"], capture_output=True, text=True,
                           check=True).stdout.split("\0")
    for rel in filter(None, files):
        target = os.path.join(str(dest), os.path.relpath(rel, "results"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, rel), target)
    return str(dest)


def _files(folder):
    """Every file under ``folder`` with its modification time: what a command wrote."""
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, fs in os.walk(folder) for f in fs}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, cache_dir):
    """A registry with one tiny supervised entry (and one whose run is never made), reproduced once."""
    root = tmp_path_factory.mktemp("reproduce")
    reg = root / "registry.yaml"
    reg.write_text(yaml.safe_dump({
        "tiny": {"description": "a tiny supervised run", "setting": "supervised",
                 "runs": [TINY + [f"cache_dir={cache_dir}"]], "aggregate": {"reps": 200}},
        "tiny_missing": {"description": "never run here", "setting": "supervised",
                         "runs": [TINY + ["num_seeds=3"]]},
    }))
    results = root / "results"
    rc, out, err = _reproduce("tiny", "--experiments", str(reg), "--results-dir", str(results))
    assert rc == 0, err
    return {"registry": str(reg), "results": str(results), "out": out, "root": root}


def _run_dirs(results):
    return sorted(d for d in os.listdir(os.path.join(results, "supervised")) if not d.startswith("."))


def _with(t, *args):
    """``reproduce`` on the tiny entries; their runs come from this working tree, which is a clean
    commit in CI but may carry edits while developing: --check is told so."""
    dirty = ("--allow-dirty",) if "--check" in args else ()
    return _reproduce(*args, *dirty, "--experiments", t["registry"], "--results-dir", t["results"])


def test_check_refuses_runs_made_from_uncommitted_changes(tiny, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(tiny["results"], results)
    for meta in results.glob("supervised/*/meta.json"):
        m = json.loads(meta.read_text())
        m["git"] = {"commit": "0123456789abcdef", "dirty": True}
        meta.write_text(json.dumps(m))
    target = "tiny,kind=aggregate method=hard_switch,final_target_acc_mean,0.5,1.0,x"
    rc, out, err = _reproduce("tiny", "--check", "--targets", _targets(tmp_path, [target]), "--experiments",
                              tiny["registry"], "--results-dir", str(results))
    assert rc == 2 and "made from uncommitted changes (0123456+dirty); re-run it from a clean commit" in err, err
    rc, out, err = _reproduce("tiny", "--check", "--allow-dirty", "--targets", _targets(tmp_path, [target]),
                              "--experiments", tiny["registry"], "--results-dir", str(results))
    assert rc == 0, err + out


def test_reproduce_runs_what_is_missing_and_writes_table_and_plot(tiny):
    (run_dir,) = _run_dirs(tiny["results"])
    assert "0 of 1 run(s) exist" in tiny["out"] and "lossmooth run setting=supervised" in tiny["out"]
    assert "Paired difference vs hard switch" in tiny["out"]
    out = os.path.join(tiny["results"], "reproduce")
    md = open(os.path.join(out, "tiny.md")).read()
    assert md.startswith("# tiny") and f"supervised/{run_dir}" in md
    rows = list(csv.DictReader(open(os.path.join(out, "tiny.csv"))))
    assert {(r["kind"], r["method"]) for r in rows} == {
        ("aggregate", "hard_switch"), ("aggregate", "loss_smoothing"), ("paired_diff", "loss_smoothing")}
    assert all(r["n"] == "2" for r in rows if r["kind"] == "aggregate")
    assert open(os.path.join(out, "tiny.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_second_reproduce_runs_nothing(tiny):
    before = _run_dirs(tiny["results"])
    rc, out, err = _with(tiny, "tiny")
    assert rc == 0, err
    assert "1 of 1 run(s) exist" in out and "lossmooth run" not in out
    assert _run_dirs(tiny["results"]) == before


def _targets(tmp_path, lines):
    path = tmp_path / "targets.csv"
    path.write_text(HEADER + "".join(line + "\n" for line in lines))
    return str(path)


def _value(tiny, kind, method, metric):
    rows = csv.DictReader(open(os.path.join(tiny["results"], "reproduce", "tiny.csv")))
    (row,) = [r for r in rows if r["kind"] == kind and r["method"] == method]
    return float(row[metric])


CELLS = [("aggregate", "hard_switch", "final_target_acc_mean"),
         ("aggregate", "loss_smoothing", "source_acc_after_mean"),
         ("paired_diff", "loss_smoothing", "worst_target_acc_diff")]


def test_check_passes_on_its_targets_and_fails_when_one_leaves_its_tolerance(tiny, tmp_path):
    tol = 0.01

    def check(moved_by):
        lines = [f"tiny,kind={k} method={m},{metric},{_value(tiny, k, m, metric) + (moved_by if i == 2 else 0)!r},"
                 f"{tol},test" for i, (k, m, metric) in enumerate(CELLS)]
        return _with(tiny, "tiny", "--check", "--targets", _targets(tmp_path, lines))

    rc, out, err = check(0.0)
    assert rc == 0, err + out
    assert "3 of 3 cells pass" in out
    rc, out, _ = check(0.5 * tol)  # moved, but within the tolerance
    assert rc == 0 and "3 of 3 cells pass" in out
    rc, out, _ = check(1.5 * tol)  # moved outside the tolerance
    assert rc == 1
    (failed,) = [ln for ln in out.splitlines() if ln.endswith("| FAIL |")]
    assert "tiny: kind=paired_diff method=loss_smoothing / worst_target_acc_diff" in failed
    assert f"| {tol:.3g} | FAIL |" in failed
    assert "2 of 3 cells pass" in out
    # without a name: every targeted entry, from the runs already there
    rc, out, _ = _reproduce("--check", "--allow-dirty", "--targets", _targets(tmp_path, [
        f"tiny,kind=aggregate method=hard_switch,final_target_acc_mean,"
        f"{_value(tiny, 'aggregate', 'hard_switch', 'final_target_acc_mean')!r},0.001,test"]),
        "--experiments", tiny["registry"], "--results-dir", tiny["results"])
    assert rc == 0 and "1 of 1 cells pass" in out


def test_list_shows_every_entry_and_what_exists(tiny):
    rc, out, err = _with(tiny, "--list")
    assert rc == 0, err
    (line,) = [ln for ln in out.splitlines() if ln.startswith("| tiny |")]
    commit = existing.complete_runs(tiny["results"], "supervised")[0].commit
    assert line.startswith(f"| tiny | supervised | 1 | 1 | {commit} |") and "(built)" in line
    (line,) = [ln for ln in out.splitlines() if ln.startswith("| tiny_missing |")]
    assert line.startswith("| tiny_missing | supervised | 1 | 0 | - |") and "(not built)" in line


def test_dry_run_prints_the_commands_and_runs_nothing(tiny):
    before = _files(tiny["results"])
    rc, out, _ = _with(tiny, "tiny_missing", "--dry-run")
    assert rc == 0 and "0 of 1 run(s) exist" in out
    (cmd,) = [ln for ln in out.splitlines() if ln.startswith("lossmooth run ")]
    assert "num_seeds=3" in cmd and f"results_dir={tiny['results']}" in cmd
    rc, out, _ = _with(tiny, "tiny_missing", "--dry-run", "--launcher", "local", "hydra.launcher.n_jobs=1")
    assert rc == 0 and "lossmooth run -m hydra/launcher=local setting=supervised" in out
    assert out.rstrip().endswith("hydra.launcher.n_jobs=1")
    assert _files(tiny["results"]) == before


BAD = [
    (["nope"], None, "unknown entry 'nope'; choose one of tiny, tiny_missing"),
    ([], None, "name an entry"),
    (["tiny", "method=[hard_switch]"], None, "'method=[hard_switch]' would change the entry's runs"),
    (["tiny", "--launcher", "cloud"], None, "--launcher: unknown launcher 'cloud'"),
    (["tiny", "--check"], "nope,kind=aggregate method=hard_switch,final_target_acc_mean,0.8,0.01,x",
     "unknown entry 'nope'"),
    (["tiny", "--check"], "tiny,kind=aggregate method=fancy,final_target_acc_mean,0.8,0.01,x", "matches 0 rows"),
    (["tiny", "--check"], "tiny,kind=aggregate,final_target_acc_mean,0.8,0.01,x", "matches 2 rows"),
    (["tiny", "--check"], "tiny,flavour=x,final_target_acc_mean,0.8,0.01,x", "row key 'flavour' is not a column"),
    (["tiny", "--check"], "tiny,kind=aggregate method=hard_switch,accuracy,0.8,0.01,x",
     "metric 'accuracy' is not a column"),
    (["tiny", "--check"], "tiny,kind=aggregate method=hard_switch,final_target_acc_mean,high,0.01,x",
     "target must be a finite number"),
    (["tiny", "--check"], "tiny,kind=aggregate method=hard_switch,final_target_acc_mean,0.8,-1,x",
     "tolerance must be a finite number >= 0"),
    (["tiny", "--check"], "tiny,kind=aggregate method=hard_switch,final_target_acc_mean", "expected the 6 columns"),
    (["--check"], "tiny_missing,kind=aggregate method=hard_switch,final_target_acc_mean,0.8,0.01,x",
     "'tiny_missing' has 1 of 1 run(s) missing"),
]


@pytest.mark.parametrize("args,target,expect", BAD, ids=[b[2][:40] for b in BAD])
def test_bad_input_fails_in_one_line_and_writes_nothing(tiny, tmp_path, args, target, expect):
    if target is not None:
        args = args + ["--targets", _targets(tmp_path, [target])]
    before = _files(tiny["root"])
    rc, out, err = _with(tiny, *args)
    assert rc == 2, out
    assert len(err.strip().splitlines()) == 1 and err.startswith("lossmooth: error:"), err
    assert expect in err, err
    assert _files(tiny["root"]) == before


def test_malformed_targets_and_registry_fail_in_one_line(tiny, tmp_path):
    bad = tmp_path / "no-tolerance.csv"
    bad.write_text("entry,row,metric,target\ntiny,kind=aggregate method=hard_switch,final_target_acc_mean,0.8\n")
    rc, _, err = _with(tiny, "tiny", "--check", "--targets", str(bad))
    assert rc == 2 and "lacks column(s) tolerance" in err and len(err.strip().splitlines()) == 1
    reg = tmp_path / "registry.yaml"
    for body, expect in [
        ({"x": {"description": "d", "setting": "supervised", "runs": [["schedule=sawtooth"]]}}, "schedule/sawtooth"),
        ({"x": {"description": "d", "setting": "domainnet", "runs": [[]]}}, "setting 'domainnet' is not one of"),
        ({"x": {"description": "d", "setting": "supervised", "runs": [["results_dir=/tmp"]]}}, "is set by"),
        ({"x": {"description": "d", "setting": "supervised", "runs": [["schedule=linear", "schedule=linear"]],
                "aggregate": {"stat": "median"}}}, "aggregate.stat must be one of mean, iqm"),
        ({"x": {"description": "d", "setting": "supervised", "runs": [["seed=0"], []]}}, "are the same config"),
    ]:
        reg.write_text(yaml.safe_dump(body))
        rc, _, err = _reproduce("x", "--dry-run", "--experiments", str(reg), "--results-dir", str(tmp_path / "r"))
        assert rc == 2 and expect in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_sweeps_expand_to_one_run_per_value():
    assert registry.expand(["~setting.smoothing_T", "schedule=cosine,step", "+sweep.T=[1,2]", "seed=0,1"]) == [
        ["~setting.smoothing_T", "schedule=cosine", "+sweep.T=[1,2]", "seed=0"],
        ["~setting.smoothing_T", "schedule=cosine", "+sweep.T=[1,2]", "seed=1"],
        ["~setting.smoothing_T", "schedule=step", "+sweep.T=[1,2]", "seed=0"],
        ["~setting.smoothing_T", "schedule=step", "+sweep.T=[1,2]", "seed=1"]]


def test_label_by_keeps_runs_apart_and_pairs_each_with_its_own_hard_switch(tmp_path):
    """Two runs differing only in setting.source_batch: four groups, each smoothing row paired with the
    hard switch of its own run."""
    from lossmooth.results import aggregate as agg

    found = []
    for batch, gain in ((16, 0.01), (64, 0.03)):
        path = tmp_path / "supervised" / f"20260101-000000-key{batch}"  # <time>-<run key>, as the store names them
        path.mkdir(parents=True)
        cfg = {"setting": {"name": "supervised", "source_batch": batch}}
        (path / "config.yaml").write_text(yaml.safe_dump(cfg))
        (path / "meta.json").write_text("{}")
        cells = [(m, sch, seed) for m, sch in (("hard_switch", "hard"), ("loss_smoothing", "linear"))
                 for seed in (0, 1)]
        runs = [{"run_index": i, "method": m, "seed": seed, "hparams": {"lr": 0.001, "schedule": sch},
                 "setting": "supervised", "dataset": "d", "model": "cnn", "shift": "none", "severity": 0.0,
                 "pair_key": f"p{batch}", "diverged_step": -1,
                 "summary": {"final_target_acc": 0.5 + seed / 100 + (gain if m == "loss_smoothing" else 0)}}
                for i, (m, sch, seed) in enumerate(cells)]
        (path / "runs.json").write_text(json.dumps(runs))
        (path / "summary.json").write_text('{"complete": true}')
        found.append(existing.Found(path=str(path), config=cfg, commit="unknown"))
    entry = registry.Entry(name="e", description="d", setting="supervised", runs=((),),
                           label_by=("setting.source_batch",))
    groups, diffs, _ = agg.tables(build.rows_of(entry, found, str(tmp_path)), reps=50)
    assert sorted((g["method"], g["hparams"]["source_batch"], g["n"]) for g in groups) == [
        ("hard_switch", 16, 2), ("hard_switch", 64, 2), ("loss_smoothing", 16, 2), ("loss_smoothing", 64, 2)]
    assert sorted((d["hparams"]["source_batch"], round(d["final_target_acc_diff"], 6), d["n_pairs"])
                  for d in diffs) == [(16, 0.01, 2), (64, 0.03, 2)]


def test_every_registry_entry_resolves_to_valid_runs():
    """Composes and validates every run of every entry (nothing runs, no data is read)."""
    from lossmooth import settings

    entries = registry.load()
    assert set(DEFAULTS) <= set(entries)
    assert {e.setting for e in entries.values()} == set(settings.BUILTIN)
    for e in entries.values():
        points = registry.resolve(e)
        assert points, e.name
        for p in points:
            settings.get(e.setting).parse(p.config)


def test_default_entries_find_the_committed_runs(tmp_path):
    results = committed_results(tmp_path / "results")
    entries = registry.load()
    for name in DEFAULTS:
        e = entries[name]
        (found,) = existing.find(registry.resolve(e), results, e.setting)
        assert found is not None, name
        # the one committed directory whose config is the default's (the ablations and maps hold others)
        same = [d for d in os.listdir(os.path.join(results, e.setting)) if not d.startswith(".")
                and registry.numbers_config(yaml.safe_load(open(os.path.join(results, e.setting, d, "config.yaml"))))
                == registry.numbers_config(registry.resolve(e)[0].config)]
        assert [found.path] == [os.path.join(results, e.setting, d) for d in same], name
        assert "+dirty" not in found.commit and found.commit != "unknown", (name, found.commit)


def test_the_committed_targets_hold_on_the_committed_runs(tmp_path):
    """``reproduce --check`` with results/targets.csv on a copy of results/ (so nothing is written into
    the checkout). The targets are point estimates, which do not depend on the bootstrap resamples:
    the registry's are lowered here to keep the test short, except for entries with criteria, whose
    bounds on CI ends are checked as the entry states them."""
    results = committed_results(tmp_path / "results")
    reg = {f[:-5]: yaml.safe_load(open(os.path.join(registry.EXPERIMENTS, f)))
           for f in os.listdir(registry.EXPERIMENTS) if f.endswith(".yaml")}
    for body in reg.values():
        if not body.get("criteria"):
            body.setdefault("aggregate", {})["reps"] = 100
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump(reg))
    rc, out, err = _reproduce("--check", "--targets", TARGETS, "--experiments", str(tmp_path / "registry.yaml"),
                              "--results-dir", str(results))
    n = sum(1 for _ in csv.DictReader(open(TARGETS)))
    assert rc == 0, err + out
    assert f"{n} of {n} cells pass" in out
    assert set(DEFAULTS) <= {r["entry"] for r in csv.DictReader(open(TARGETS))}


def test_a_run_on_other_data_is_named_and_never_paired_with_the_committed_data():
    """An entry's ``data`` records the committed runs' data identity: a run whose meta records another
    dataset hash gets one line naming both; runs on different data have different pair keys."""
    from lossmooth.runner.records import pair_key
    from lossmooth.settings import get

    entry = registry._entry("x", {"description": "d", "setting": "offline_to_online", "runs": [[]],
                                  "data": {"dataset_sha256": "a" * 64}}, "experiments/x.yaml")
    same = existing.Found(path="r/1", config={}, commit="abc1234", data={"dataset_sha256": "a" * 64})
    other = existing.Found(path="r/2", config={}, commit="abc1234", data={"dataset_sha256": "b" * 64})
    assert existing.data_differs(entry, [same, None]) == []
    (line,) = existing.data_differs(entry, [same, other])
    assert "r/2" in line and "b" * 64 in line and "a" * 64 in line and "not comparable" in line
    with pytest.raises(registry.ConfigError, match="data must map"):
        registry._entry("x", {"description": "d", "setting": "supervised", "runs": [[]], "data": 5}, "x.yaml")
    setting = get("offline_to_online")
    cfg = {"setting": {"name": "offline_to_online"}, "td3": {"alpha": 2.5}}
    assert pair_key(cfg, setting, "td3", {"dataset_sha256": "a"}) != pair_key(cfg, setting, "td3", {"dataset_sha256": "b"})
    assert pair_key(cfg, setting, "td3", {}) == pair_key(cfg, setting, "td3")


def test_criteria_bound_cells_and_a_stated_miss_must_still_be_a_miss():
    from lossmooth.reproduce import criteria as C

    rows = [{"kind": "aggregate", "method": "hard_switch", "hparams": "{}", "source_drop_mean_lo": "0.02",
             "source_at_switch_mean": "0.9"},
            {"kind": "paired_diff", "method": "loss_smoothing", "hparams": "{}", "final_target_acc_diff": "0.01",
             "final_target_acc_diff_lo": "-0.01", "final_target_acc_diff_hi": "0.05", "n_pairs": "4"}]
    crit = C.parse([
        {"name": "a", "row": "kind=aggregate method=hard_switch", "metric": "source_at_switch_mean", "at_least": 0.9},
        {"name": "b", "row": "kind=aggregate method=hard_switch", "metric": "source_drop_mean_lo", "above": 0},
        {"name": "d", "row": "kind=paired_diff method=loss_smoothing", "metric": "final_target_acc_diff",
         "max_halfwidth": 0.02},
        {"name": "seeds", "row": "kind=paired_diff", "metric": "n_pairs", "at_least": 8, "missed": "4 seeds here"},
    ], "x.yaml")
    res = C.evaluate(crit, rows, "x")
    assert [r.holds for r in res] == [True, True, False, False]
    assert res[2].value == pytest.approx(0.03) and not res[2].ok  # missed without a reason: a failure
    assert res[3].ok  # a stated miss that is a miss
    text = C.report(res)
    assert "**no**" in text and "no (known: 4 seeds here)" in text
    stale = C.evaluate(C.parse([{"name": "s", "row": "kind=aggregate", "metric": "source_at_switch_mean",
                                 "above": 0.5, "missed": "old reason"}], "x.yaml"), rows, "x")
    assert stale[0].holds and not stale[0].ok and "stale" in C.report(stale)
    for bad, msg in (([{"name": "a", "row": "kind=x", "metric": "m"}], "exactly one of"),
                     ([{"name": "a", "row": "kind=x", "metric": "m", "above": 1, "below": 2}], "exactly one of"),
                     ([{"name": "a", "row": "kind", "metric": "m", "above": 1}], "key=value"),
                     ("x", "must be a list")):
        with pytest.raises(registry.ConfigError, match=msg):
            C.parse(bad, "x.yaml")


def test_a_map_puts_each_paired_difference_in_its_cell_and_stars_those_resolved_after_benjamini_hochberg(tmp_path):
    from lossmooth.results import aggregate as agg
    from lossmooth.results import plots, tables

    diffs = []
    for shift, sev in (("blur", 0.5), ("blur", 1.0), ("label_permutation", 0.5)):
        for T in (25, 100):
            p = 0.004 if (shift, T) == ("blur", 100) else 0.3  # a CI end alone stars nothing
            diffs.append({"shift": shift, "severity": sev, "hparams": {"T": T, "lr": 1e-3},
                          "min_acc_diff": 0.03 * T / 100, "min_acc_diff_lo": 0.01, "min_acc_diff_hi": 0.05,
                          "min_acc_diff_p": p})
    assert agg.adjust_map(diffs, "T", ("min_acc", "wc_acc")) == 6
    # BH over 6 cells: the two p = 0.004 get q = 0.004 * 6 / 2 = 0.012; the others 0.3
    assert [round(d["min_acc_diff_q"], 4) for d in diffs] == [0.3, 0.012, 0.3, 0.012, 0.3, 0.3]
    md = tables.map_markdown(diffs, ("shift", "severity"), "T", ("min_acc", "wc_acc"), pct=True)
    assert "| shift / severity | T=25 | T=100 |" in md and "wc acc" not in md  # a metric no cell has: no grid
    assert "| blur, 0.5 | +0.8 | +3.0* |" in md and "| blur, 1 | +0.8 | +3.0* |" in md
    assert "| label_permutation, 0.5 | +0.8 | +3.0 |" in md
    assert "over the map's 6 comparisons" in md and "Resolved (q < 0.05): 2 of 6 cells above 0, 0 below 0." in md
    plots.plot_map(diffs, str(tmp_path / "m.png"), ("shift", "severity"), "T", ("min_acc",), True)
    assert (tmp_path / "m.png").stat().st_size > 1000
    with pytest.raises(registry.ConfigError, match="aggregate.map must be"):
        registry._entry("x", {"description": "d", "setting": "supervised", "runs": [[]],
                              "aggregate": {"map": {"rows": "shift", "cols": "T", "metrics": []}}}, "x.yaml")
    e = registry._entry("x", {"description": "d", "setting": "supervised", "runs": [[]],
                              "aggregate": {"map": {"rows": ["shift"], "cols": "T", "metrics": ["min_acc"]}}}, "x.yaml")
    assert e.map == (("shift",), "T", ("min_acc",), "heat") and e.outputs("r")["map"] == "r/reproduce/x_map.png"
    lines = registry._entry("x", {"description": "d", "setting": "supervised", "runs": [[]], "aggregate": {
        "map": {"rows": ["shift"], "cols": "T", "metrics": ["min_acc"], "plot": "lines"}}}, "x.yaml")
    assert lines.map[3] == "lines"
    with pytest.raises(registry.ConfigError, match="plot: heat or lines"):
        registry._entry("x", {"description": "d", "setting": "supervised", "runs": [[]], "aggregate": {
            "map": {"rows": ["shift"], "cols": "T", "metrics": ["min_acc"], "plot": "bars"}}}, "x.yaml")
    plots.plot_map(diffs, str(tmp_path / "lines.png"), ("shift", "severity"), "T", ("min_acc",), True, style="lines")
    assert (tmp_path / "lines.png").stat().st_size > 1000
    # columns by method: one per method beside the hard switch
    by_method = [{"shift": "blur", "severity": 1.0, "method": m, "hparams": {"lr": 1e-3}, "min_acc_diff": v,
                  "min_acc_diff_lo": v - 0.01, "min_acc_diff_hi": v + 0.01, "min_acc_diff_p": p}
                 for m, v, p in (("source_guard", 0.05, 0.01), ("progress_ramp", 0.0, 0.9))]
    assert agg.adjust_map(by_method, "method", ("min_acc",)) == 2
    md = tables.map_markdown(by_method, ("shift", "severity"), "method", ("min_acc",), pct=True)
    assert "each method minus hard switch" in md and "| shift / severity | progress_ramp | source_guard |" in md
    assert "| blur, 1 | +0.0 | +5.0* |" in md
    plots.plot_map(by_method, str(tmp_path / "methods.png"), ("shift", "severity"), "method", ("min_acc",), True)
    assert (tmp_path / "methods.png").stat().st_size > 1000


def test_an_entry_keeps_its_rows_when_another_run_directory_holds_the_same_runs(tmp_path):
    """The T ablation's job holds the default's hard switch and T = 100 runs again (same experiment,
    numbers and seeds): the default's table is still built from the default's own directory."""
    results = committed_results(tmp_path / "results")
    e = registry.load()["supervised_default"]
    points = registry.resolve(e)
    (found,) = existing.find(points, results, e.setting)
    other = os.path.join(results, "supervised", "20991231-000000-otherjob00")
    shutil.copytree(found.path, other)
    cfg = yaml.safe_load(open(os.path.join(other, "config.yaml")))
    cfg["sweep"] = {"T": [100.0]}  # another job's config, the same runs inside
    with open(os.path.join(other, "config.yaml"), "w") as f:
        yaml.safe_dump(cfg, f)
    assert existing.find(points, results, e.setting)[0].path == found.path
    rows = build.rows_of(e, [found], results)
    assert len(rows) == 36 and {r["run_dir"] for r in rows} == {found.path}  # 18 seeds x 2 methods


def test_a_target_row_names_a_dataset_by_its_id_alone():
    """Tables label a dataset with its id and identity note; a target names it by the id (the first
    word), and a prefix of the id is not the id."""
    from lossmooth.reproduce import targets

    rows = [{"kind": "paired_diff", "method": "loss_smoothing", "dataset": f"lossmooth/halfcheetah-{q}-v0 "
             f"(sha256 {h}; refs -93, 2106)", "hparams": "{}"} for q, h in (("medium", "cc6df037"), ("expert", "1309"))]
    sel = targets.selector("kind=paired_diff dataset=lossmooth/halfcheetah-expert-v0", "t")
    assert targets.select_row(rows, sel, "t", "e") is rows[1]
    with pytest.raises(Exception, match="matches 0 rows"):
        targets.select_row(rows, targets.selector("kind=paired_diff dataset=lossmooth/halfcheetah", "t"), "t", "e")
    with pytest.raises(Exception, match="matches 2 rows"):
        targets.select_row(rows, targets.selector("kind=paired_diff", "t"), "t", "e")
