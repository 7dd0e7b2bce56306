"""Plans a reviewer can verify: the plan's order against the runs' commits (git), seed counts from a
pilot, pilots never used as results, and the table's primary family from the command line."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from scipy import stats

from lossmooth import cli
from lossmooth.errors import ConfigError
from lossmooth.reproduce import build, command, existing, order, registry, seeds

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DEFAULT = os.path.join(ROOT, "results", "supervised", "20261130-130021-14ea330652")


def _head() -> str:
    return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_plan_is_what_a_claim_rests_on_and_not_its_commentary():
    base = {"criteria": [{"name": "a", "row": "kind=aggregate", "metric": "m_mean", "above": 0}],
            "analysis": {"primary": ["m"]}}
    renamed = {"criteria": [{"name": "b", "row": "kind=aggregate", "metric": "m_mean", "above": 0,
                             "missed": "a reason"}], "analysis": {"primary": ["m"]}, "description": "other"}
    moved = {"criteria": [{"name": "a", "row": "kind=aggregate", "metric": "m_mean", "above": 0.1}],
             "analysis": {"primary": ["m"]}}
    assert order.plan(base) == order.plan(renamed) != order.plan(moved)
    assert order.plan({"criteria": []}) is None
    assert order.plan({**base, "pilot": True}) != order.plan(base)


def test_the_order_of_plan_and_runs_is_read_from_git():
    e = registry.load()["supervised_default"]
    late = order.check(e.source, e.name, ["9ded0e4"])  # the commit that made its committed runs
    assert late.state == "after" and "written after the runs" in late.text and "9ded0e4" in late.text
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", e.source], capture_output=True,
                           text=True).stdout
    if not dirty:  # a run made from this very commit holds the plan in force
        assert order.check(e.source, e.name, [_head()]).state == "before"
    assert order.check(e.source, e.name, ["abc1234+dirty"]).state == "unknown"


def test_every_committed_table_says_whether_its_plan_came_first():
    for name in ("supervised_default", "online_rl_default"):
        with open(os.path.join(ROOT, "results", "reproduce", f"{name}.md")) as f:
            text = f.read()
        assert "Criteria written after the runs" in text or "Plan committed before its runs" in text


def test_seeds_for_a_half_width_follow_the_t_interval():
    sd, h = 2.0, 1.0
    n = seeds.n_for_halfwidth(sd, h)
    assert stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n) <= h < stats.t.ppf(0.975, n - 2) * sd / np.sqrt(n - 1)
    assert seeds.n_for_halfwidth(0.0, 1.0) == 3 and seeds.n_for_halfwidth(1e9, 1.0) is None


def test_seeds_for_power_reach_it_and_one_fewer_does_not():
    values = np.random.default_rng(0).normal(0, 1, 8)
    n = seeds.n_for_power(values, 1.0, 1.0, 0.8, 0.05)
    shape = (values - values.mean()) / values.std(ddof=1)
    assert seeds.power_at(shape, n, 1.0, 0.05) >= 0.8 > seeds.power_at(shape, n - 1, 1.0, 0.05)
    # the exact test cannot reach 0.05 / 4 below 8 pairs, whatever the effect
    assert seeds.n_for_power(values, 1.0, 100.0, 0.8, 0.05 / 4) == 8


@pytest.fixture(scope="module")
def default_rows():
    e = registry.load()["supervised_default"]
    found = existing.find(registry.resolve(e), os.path.join(ROOT, "results"), e.setting)
    return build.rows_of(e, found, os.path.join(ROOT, "results"))


def test_a_pilot_of_the_hard_switch_alone_plans_from_its_spread(default_rows):
    hard = [r for r in default_rows if r["method"] == "hard_switch"]
    (p,) = seeds.plan(hard, "final_target_acc", 0.01, None)
    sd = np.std([r["summary"]["final_target_acc"] for r in hard], ddof=1)
    assert not p.paired and p.sd == pytest.approx(np.sqrt(2) * sd) and p.pilot_n == 18
    (q,) = seeds.plan(default_rows, "final_target_acc", 0.01, None)
    assert q.paired and q.n_halfwidth == seeds.n_for_halfwidth(q.sd, 0.01)
    for bad, msg in ((dict(metric="nope", halfwidth=1.0, effect=None), "have no 'nope'"),
                     (dict(metric="final_target_acc", halfwidth=0.0, effect=None), "positive"),
                     (dict(metric="final_target_acc", halfwidth=None, effect=None), "give --halfwidth")):
        with pytest.raises(ConfigError, match=msg):
            seeds.plan(default_rows, bad["metric"], bad["halfwidth"], bad["effect"])
    with pytest.raises(ConfigError, match="at least 3"):
        seeds.plan(hard[:2], "final_target_acc", 0.01, None)


def test_a_recorded_seed_plan_is_rechecked_against_its_pilot(capsys):
    entries = registry.load()
    pilot = entries["supervised_default"]
    rows_dir = os.path.join(ROOT, "results")
    found = existing.find(registry.resolve(pilot), rows_dir, pilot.setting)
    plans = seeds.plan(build.rows_of(pilot, found, rows_dir), "min_acc", 0.02, None)
    n = seeds.answer(plans, 0.02, None)
    block = {"pilot": "supervised_default", "metric": "min_acc", "halfwidth": 0.02, "n": n}
    good = registry._entry("r", {"description": "d", "setting": "supervised", "runs": [[]], "seeds": block}, "r.yaml")
    assert command.seeds_hold(good, entries, rows_dir, n)
    stale = registry._entry("r", {"description": "d", "setting": "supervised", "runs": [[]],
                                  "seeds": {**block, "n": n + 1}}, "r.yaml")
    assert not command.seeds_hold(stale, entries, rows_dir, n) and "now gives" in capsys.readouterr().out
    assert not command.seeds_hold(good, entries, rows_dir, n - 1) and "fewer than" in capsys.readouterr().out
    # runs made for the plan (n seeds) that kept fewer pairs fail; runs that predate it await the re-run
    assert not command.seeds_hold(good, entries, rows_dir, n - 1, run_seeds=n)
    assert "fewer than" in capsys.readouterr().out
    assert command.seeds_hold(good, entries, rows_dir, n - 1, run_seeds=n - 1)
    assert "predate the plan; the planned re-run is pending" in capsys.readouterr().out
    ok, line = command.seed_status(good, entries, rows_dir, n, n)
    assert ok and line.startswith(f"Seed plan: n = {n} from the pilot supervised_default") and f"have {n} pairs" in line
    with pytest.raises(ConfigError, match="seeds needs"):
        seeds.recorded(registry._entry("r", {"description": "d", "setting": "supervised", "runs": [[]],
                                             "seeds": {"metric": "m"}}, "r.yaml"))


def test_a_budget_fixed_seed_count_states_the_effect_it_can_detect(default_rows):
    """--seeds N: the effect it prints is detected with 80% power at N seeds, and planning for that effect
    answers with at most N seeds (the two directions agree)."""
    text = seeds.sensitivity(default_rows, "final_target_acc", 8, 0.8, 1)
    effect = float(text.split("--effect ")[1].split("`")[0])
    (p,) = seeds.plan(default_rows, "final_target_acc", None, effect)
    assert p.n_power <= 8 and "half-width about" in text
    (q,) = seeds.plan(default_rows, "final_target_acc", None, 0.9 * effect)
    assert q.n_power > 8
    with pytest.raises(ConfigError, match="--seeds must be at least 3"):
        seeds.sensitivity(default_rows, "final_target_acc", 2)


def test_a_pilot_is_never_a_result():
    class F:
        path = "/r/supervised/x"
    result = registry._entry("res", {"description": "d", "setting": "supervised", "runs": [[]]}, "r.yaml")
    pilot = registry._entry("pil", {"description": "d", "setting": "supervised", "runs": [[]], "pilot": True},
                            "r.yaml")
    with pytest.raises(ConfigError, match="pilot entry 'pil': a pilot is never a result"):
        build.not_a_pilot(result, [F()], {F.path: "pil"})
    build.not_a_pilot(pilot, [F()], {F.path: "pil"})  # its own runs
    with pytest.raises(ConfigError, match="pilot must be true or false"):
        registry._entry("x", {"description": "d", "setting": "supervised", "runs": [[]], "pilot": "yes"}, "r.yaml")


def test_the_table_adjusts_a_primary_family_and_refuses_one_pair(tmp_path, capsys):
    results = tmp_path / "results" / "supervised"
    results.mkdir(parents=True)
    shutil.copytree(DEFAULT, results / os.path.basename(DEFAULT))
    assert cli.main(["table", "--results-dir", str(tmp_path / "results"), "--primary", "final_target_acc,min_acc"]) == 0
    out = capsys.readouterr().out
    assert "p_Holm" in out and "Holm-adjusted over the primary family: 2 comparisons" in out
    assert cli.main(["table", "--results-dir", str(tmp_path / "results"), "--primary", "acuracy"]) == 2
    assert "unknown metric" in capsys.readouterr().err
    runs = results / os.path.basename(DEFAULT) / "runs.json"
    one = [r for r in json.loads(runs.read_text()) if r["seed"] == 0]
    runs.write_text(json.dumps(one))
    assert cli.main(["table", "--results-dir", str(tmp_path / "results"), "--primary", "min_acc"]) == 2
    assert "one pair only" in capsys.readouterr().err
    assert cli.main(["table", "--results-dir", str(tmp_path / "results")]) == 0  # a table alone is fine
    assert "(n < 3: unresolved)" in capsys.readouterr().out
