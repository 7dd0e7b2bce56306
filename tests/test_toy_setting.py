"""A setting from outside the project, registered through the public contract alone
(``tests/toy_setting``: its package and its config folder), runs end to end through ``lossmooth run``,
``table``, ``status`` and ``reproduce`` like a built-in one."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args, cwd, env):
    return subprocess.run([sys.executable, "-m", "lossmooth.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def toy(tmp_path_factory, cache_dir):
    root = tmp_path_factory.mktemp("toy")
    env = {**os.environ, "LOSSMOOTH_SETTINGS": "tests.toy_setting:SETTING", "PYTHONPATH": REPO,
           "WANDB_MODE": "disabled"}
    results = root / "results"
    run = _cli("run", "setting=toy", f"results_dir={results}", f"cache_dir={cache_dir}", "logger=jsonl",
               "progress=false", cwd=root, env=env)
    return {"root": root, "env": env, "results": results, "run": run}


def test_the_toy_setting_runs_through_lossmooth_run(toy):
    r = toy["run"]
    assert r.returncode == 0, r.stderr[-3000:]
    (run_dir,) = [d for d in (toy["results"] / "toy").iterdir() if not d.name.startswith(".")]
    runs = json.loads((run_dir / "runs.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] and summary["setting"] == "toy" and len(runs) == 6
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["stand_in"] and meta["choices"]["setting"] == "toy"
    by = {(x["method"], x["seed"]): x["summary"] for x in runs}
    for seed in (0, 1, 2):
        hard, smooth = by[("hard_switch", seed)], by[("loss_smoothing", seed)]
        # both learn the target mean; during the ramp smoothing stays nearer the source mean (less forgetting)
        assert hard["final_target_loss"] < 1.0 and smooth["final_target_loss"] < 1.0
        assert smooth["auc_target_loss"] > hard["auc_target_loss"]
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {x["step"] for x in rows if x["phase"] == "adapt"} == {0, 10, 20, 30, 40}
    assert "final target loss" in r.stdout and "source loss after (forgetting)" in r.stdout


@pytest.mark.slow  # about 3 min on 2 cores
def test_table_status_and_reproduce_know_the_toy_setting(toy):
    root, env, results = toy["root"], toy["env"], toy["results"]
    table = _cli("table", "--results-dir", str(results), "--setting", "toy", "--reps", "50", cwd=root, env=env)
    assert table.returncode == 0, table.stderr
    assert "| toy | gauss | mean-4 |" in table.stdout and "loss_smoothing" in table.stdout
    status = _cli("status", "--results-dir", str(results), cwd=root, env=env)
    assert status.returncode == 0 and "| toy |" in status.stdout and "1 complete" in status.stdout
    experiments = root / "experiments"
    experiments.mkdir()
    (experiments / "toy_default.yaml").write_text(
        "description: the toy setting's default\nsetting: toy\nruns:\n  - []\naggregate:\n  reps: 50\n")
    (experiments / "toy_T.yaml").write_text(
        "description: two ramp lengths\nsetting: toy\nruns:\n  - [\"+sweep.T=[10,30]\"]\naggregate:\n  reps: 50\n")
    listed = _cli("reproduce", "--list", "--experiments", str(experiments), "--results-dir", str(results),
                  cwd=root, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "| toy_default | toy | 1 | 1 |" in listed.stdout and "| toy_T | toy | 1 | 0 |" in listed.stdout
    made = _cli("reproduce", "toy_T", "--experiments", str(experiments), "--results-dir", str(results),
                "progress=false", cwd=root, env=env)
    assert made.returncode == 0, made.stderr[-3000:]
    assert "1 command(s) make the rest" in made.stdout and "T=10" in made.stdout and "T=30" in made.stdout
    assert (results / "reproduce" / "toy_T.png").exists()


def test_the_builder_derives_the_source_free_program_and_compiles_each_program_once():
    """A setting gives pure functions; :mod:`lossmooth.settings.programs` swaps in the program without the
    source branch from the first chunk after every run's ramp, and keeps each compiled program."""
    from lossmooth.settings import Context, PhaseResult
    from tests.toy_setting import SETTING

    ramp = lambda T: {"schedule": {"kind": "linear", "T": T, "lam0": 0.0}}  # noqa: E731
    cfg = {"num_seeds": 2, "seed": 0, "method": {"hard_switch": ramp(0), "loss_smoothing": ramp(20)},
           "setting": {"dim": 2, "shift": 2.0, "source_steps": 40, "adapt_steps": 40, "eval_every": 10,
                       "smoothing_T": 20, "gap_window": 20, "lr": 0.1}}
    spec = SETTING.parse(cfg)
    ctx = Context(spec=spec, loaded=SETTING.load(spec, cfg, {}))
    source = SETTING.source_phase(ctx, "")
    assert (source.n_chunks, source.eval_every, source.later) == (4, 10, None)
    start = PhaseResult(state=source.state, metrics={}, steps=None, diverged_at=None)
    runs = SETTING.runs(spec)
    assert [(r["name"], r["lr"], r["init"]) for r in runs] == [("hard_switch", 0.1, "switch")] * 2 + [
        ("loss_smoothing", 0.1, "switch")] * 2
    both = SETTING.adapt_phase(ctx, "", runs, start)
    assert both.later[0] == 2 and both.later[1] is not both.chunk  # the ramp ends at update 20: chunk 2 on
    hard = SETTING.adapt_phase(ctx, "", runs[:2], start)
    assert hard.later == (0, both.later[1]) and hard.chunk is both.chunk  # one compiled program each
    mix = {**cfg, "method": {"replay_mix": {"schedule": {"kind": "constant", "value": 0.5}}}}
    spec = SETTING.parse(mix)
    assert SETTING.adapt_phase(Context(spec=spec, loaded=ctx.loaded), "", SETTING.runs(spec), start).later is None
