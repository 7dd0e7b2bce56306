"""Tables that are never wrong and run directories that never lie, on tiny supervised runs:

- runs of different experiments are never pooled (the table names the config field that differs),
  and a run found in two directories counts once;
- a finite blow-up of a loss is marked diverged; a ramp longer than the adaptation is marked;
- a corrupt run directory is skipped with one warning by table, plot, status and reproduce;
- a finish interrupted by a kill is completed by the next reader, never leaving checkpoints behind;
- a run killed before its first checkpoint is started anew, saying so;
- every file is strict JSON (no bare NaN).
"""
import json
import shutil

import pytest

from lossmooth import cli
from lossmooth.results import aggregate as agg
from lossmooth.results import store
from tests.conftest import TINY


def _run(capsys, results, cache_dir, *overrides):
    rc = cli.main(["run", f"results_dir={results}", f"cache_dir={cache_dir}", *TINY, *overrides])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out


def _dirs(results):
    return sorted(p for p in (results / "supervised").iterdir() if not p.name.startswith("."))


def _strict(path):
    """Parse a file as strict JSON (Python's json accepts NaN tokens: refuse them like jq would)."""
    def no_constant(token):
        raise ValueError(f"non-JSON token {token}")

    with open(path) as f:
        text = f.read()
    if path.endswith(".jsonl"):
        return [json.loads(line, parse_constant=no_constant) for line in text.splitlines() if line.strip()]
    return json.loads(text, parse_constant=no_constant)


@pytest.fixture(scope="module")
def two(tmp_path_factory, cache_dir):
    """Two tiny runs that differ only in the replayed examples per source batch (a field no table
    column shows), the second with 3 seeds (its first two are the first run's seeds)."""
    results = tmp_path_factory.mktemp("two") / "results"
    for extra in ([], ["setting.source_batch=8", "num_seeds=3"]):
        assert cli.main(["run", f"results_dir={results}", f"cache_dir={cache_dir}", *TINY, *extra]) == 0
    return results


def test_runs_of_different_experiments_are_never_pooled(two, capsys):
    capsys.readouterr()
    rows = agg.collect(str(two))
    groups, diffs, _ = agg.tables(rows, reps=50)
    # four rows, not two: each experiment's own seeds (2 and 3), never pooled into n = 5
    assert sorted((g["method"], g["n"], g["context"]) for g in groups) == [
        ("hard_switch", 2, "setting.source_batch=32"), ("hard_switch", 3, "setting.source_batch=8"),
        ("loss_smoothing", 2, "setting.source_batch=32"), ("loss_smoothing", 3, "setting.source_batch=8")]
    assert sorted((d["n_pairs"], d["context"]) for d in diffs) == [(2, "setting.source_batch=32"),
                                                                   (3, "setting.source_batch=8")]
    assert cli.main(["table", "--results-dir", str(two), "--reps", "50"]) == 0
    out = capsys.readouterr().out
    assert "| context |" in out and "setting.source_batch=8" in out


def test_a_run_in_two_directories_counts_once(two, tmp_path, cache_dir, capsys):
    results = tmp_path / "results"
    shutil.copytree(two, results)
    # the first experiment again with 3 seeds: seeds 0 and 1 now exist twice (identical runs)
    _run(capsys, results, cache_dir, "num_seeds=3")
    rows = agg.collect(str(results))
    per = {}
    for r in rows:
        per.setdefault((r["pair_key"], r["method"], r["seed"]), []).append(r["run_dir"])
    assert all(len(v) == 1 for v in per.values())  # each run once, from the newest directory
    groups, _, _ = agg.tables(rows, reps=50)
    assert sorted((g["method"], g["n"], g["context"]) for g in groups) == [
        ("hard_switch", 3, "setting.source_batch=32"), ("hard_switch", 3, "setting.source_batch=8"),
        ("loss_smoothing", 3, "setting.source_batch=32"), ("loss_smoothing", 3, "setting.source_batch=8")]


def test_a_finite_blow_up_is_marked_diverged_and_files_stay_strict_json(tmp_path, cache_dir, capsys):
    out = _run(capsys, tmp_path, cache_dir, "+sweep.lr=[0.01,1e6]")
    assert "exceeds 100x its value at the switch" in out.out + out.err
    (run_dir,) = _dirs(tmp_path)
    runs = _strict(str(run_dir / "runs.json"))
    blown = [r for r in runs if r["hparams"]["lr"] == 1e6]
    assert blown and all(r["diverged_step"] > 0 for r in blown)
    assert all(r["diverged_step"] == -1 for r in runs if r["hparams"]["lr"] == 0.01)
    _strict(str(run_dir / "metrics.jsonl"))  # NaN rows (training losses at the switch) are strings
    _strict(str(run_dir / "summary.json"))
    rows = store.read_metrics(str(run_dir))
    assert any(isinstance(r.get("loss_target"), float) and r["loss_target"] != r["loss_target"] for r in rows)
    assert cli.main(["table", "--results-dir", str(tmp_path), "--reps", "50"]) == 0
    assert "(+2 diverged)" in capsys.readouterr().out


def test_a_ramp_longer_than_the_adaptation_is_marked(tmp_path, cache_dir, capsys):
    out = _run(capsys, tmp_path, cache_dir, "schedule.T=50")  # 20 adaptation updates
    assert "loss_smoothing's ramp (T=50 updates) outlasts the adaptation (20 updates)" in out.out
    (run_dir,) = _dirs(tmp_path)
    runs = _strict(str(run_dir / "runs.json"))
    assert all(r.get("ramp_unfinished") for r in runs if r["method"] == "loss_smoothing")
    assert not any(r.get("ramp_unfinished") for r in runs if r["method"] == "hard_switch")
    assert "(ramp unfinished)" in out.out


@pytest.fixture(scope="module")
def corrupt(two, tmp_path_factory):
    """A results folder with one good run, one run with a torn metrics.jsonl line, and run directories
    with a truncated runs.json, a missing meta.json and a truncated summary.json."""
    results = tmp_path_factory.mktemp("corrupt") / "results"
    good, other = sorted(p for p in (two / "supervised").iterdir() if not p.name.startswith("."))
    shutil.copytree(good, results / "supervised" / good.name)
    broken = {"torn": lambda d: open(d / "metrics.jsonl", "a").write('{"phase": "adapt", "st'),
              "runs": lambda d: (d / "runs.json").write_text((d / "runs.json").read_text()[:40]),
              "meta": lambda d: (d / "meta.json").unlink(),
              "summary": lambda d: (d / "summary.json").write_text('{"run_id": "x", "compl')}
    for i, (name, damage) in enumerate(broken.items()):
        d = results / "supervised" / f"20990101-00000{i}-{name}"
        shutil.copytree(other, d)
        damage(d)
    return results


def test_corrupt_run_directories_are_skipped_with_one_warning_each(corrupt, capsys, tmp_path):
    capsys.readouterr()
    assert cli.main(["table", "--results-dir", str(corrupt), "--reps", "50"]) == 0
    out = capsys.readouterr()
    warnings = [ln for ln in out.err.splitlines() if ln.startswith("lossmooth: warning: skipping")]
    # one rule for every reader: the torn metrics.jsonl is skipped by table as by plot and status
    assert len(warnings) == 4 and all(k in out.err for k in ("runs.json", "meta.json", "summary.json", "metrics.jsonl"))
    assert "| supervised |" in out.out
    assert cli.main(["plot", "--results-dir", str(corrupt), "--out", str(tmp_path / "c.png")]) == 0
    err = capsys.readouterr().err
    # one line naming the folder read, then one warning per corrupt run directory
    assert err.splitlines()[0] == f"lossmooth plot: reading {corrupt}"
    assert "metrics.jsonl's last line is cut" in err and len(err.strip().splitlines()) == 5
    assert (tmp_path / "c.png").exists()
    assert cli.main(["status", "--results-dir", str(corrupt)]) == 0
    out = capsys.readouterr().out
    assert "5 run directories: 1 complete, 0 diverged, 0 incomplete, 4 corrupt" in out
    assert "not valid JSON" in out and "a torn write" in out


def test_an_interrupted_finish_is_completed_by_the_next_reader(two, tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(two, results)
    run_dir = _dirs(results)[0]
    # a kill between the pending summary and the removal of the checkpoints
    (run_dir / "summary.json").rename(run_dir / store.PENDING)
    (run_dir / "checkpoints" / "adapt0").mkdir(parents=True)
    assert cli.main(["status", "--results-dir", str(results)]) == 0
    assert "2 run directories: 2 complete" in capsys.readouterr().out
    assert (run_dir / "summary.json").exists() and not (run_dir / "checkpoints").exists()
    assert not (run_dir / store.PENDING).exists()


@pytest.mark.slow  # about 2 min on 2 cores (resume: tests/test_resume.py keeps three cases in CI)
def test_a_run_killed_before_its_first_checkpoint_starts_anew(tmp_path, cache_dir, capsys):
    _run(capsys, tmp_path, cache_dir)
    (first,) = _dirs(tmp_path)
    # the directory a run of the same config leaves when killed before any checkpoint
    orphan = tmp_path / "supervised" / (first.name[:9] + "000000" + first.name[15:])  # an earlier time
    orphan.mkdir()
    for name in ("config.yaml", "meta.json"):
        shutil.copy(first / name, orphan / name)
    shutil.rmtree(first)
    assert cli.main(["status", "--results-dir", str(tmp_path)]) == 0
    assert "no checkpoint: moved aside and started anew if run again" in capsys.readouterr().out
    out = _run(capsys, tmp_path, cache_dir)
    moved = tmp_path / "supervised" / store.QUARANTINE / orphan.name
    assert f"moved {orphan} aside to {moved}" in out.out and "starting it anew" in out.out
    assert (moved / "config.yaml").exists()  # kept, not deleted
    (again,) = _dirs(tmp_path)
    assert again != orphan and (again / "summary.json").exists()


def test_a_table_over_several_settings_gives_one_table_each(two, tmp_path, capsys):
    """Settings summarize different curves (accuracy, returns, losses): one table per setting."""
    from tests.test_reproduce import committed_results

    results = tmp_path / "results"
    committed_results(results)
    shutil.copytree(two / "supervised", results / "supervised", dirs_exist_ok=True)
    capsys.readouterr()
    assert cli.main(["table", "--results-dir", str(results), "--reps", "20", "--csv", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    assert all(f"## {s}\n" in out for s in ("lm", "online_rl", "supervised"))
    assert "final target loss" in out and "final target return" in out and "final target acc" in out


def test_a_d4rl_file_is_scored_with_its_own_environment_s_references(tmp_path):
    """Only dataset.path set: the file's name names the dataset and selects D4RL's references."""
    import h5py
    import numpy as np

    from lossmooth.offline.scores import D4RL_REF
    from lossmooth.settings.offline_to_online.config import parse
    from lossmooth.settings.offline_to_online.data import load_dataset
    from tests.conftest import compose

    n, rng = 40, np.random.default_rng(0)
    o = rng.normal(size=(n + 1, 17)).astype(np.float32)
    with h5py.File(tmp_path / "halfcheetah_medium-v2.hdf5", "w") as f:
        for k, v in dict(observations=o[:-1], next_observations=o[1:], rewards=np.zeros(n, np.float32),
                         actions=np.zeros((n, 6), np.float32), terminals=np.zeros(n, bool),
                         timeouts=np.arange(n) % 10 == 9).items():
            f[k] = v
    cfg = compose(["setting=offline_to_online", "task=gymnasium", "task.id=HalfCheetah-v5", "dataset=d4rl",
                   f"dataset.path={tmp_path}/halfcheetah_medium-v2.hdf5"])
    data = load_dataset(parse(cfg))
    assert data.name == "halfcheetah_medium-v2" and data.ref_scores == D4RL_REF["halfcheetah"]


def test_a_judge_that_is_the_model_under_study_is_shown_as_a_pipeline_check_not_a_result():
    from lossmooth.results import aggregate as agg
    from lossmooth.results import tables

    def rows(pipeline_check):
        out = []
        for method, hp in (("hard_switch", {"lr": 1e-4, "schedule": "hard"}), ("loss_smoothing", {"lr": 1e-4, "T": 10})):
            for seed in range(3):
                out.append({"setting": "lm", "dataset": "sharegpt", "model": "m", "shift": "replay:x", "severity": 0.0,
                            "method": method, "hparams": hp, "pair_key": "k", "seed": seed, "run_dir": "r",
                            "diverged_step": -1, "judge": {"win_rate": 0.5, "pipeline_check": pipeline_check},
                            "summary": {"final_target_loss": 2.0 + seed / 10, "replay_ppl_after": 12.0,
                                        "judge_win_rate": 0.5}})
        return out

    for check in (True, False):
        groups, diffs, _ = agg.tables(rows(check), reps=50)
        md = tables.markdown(groups, diffs)
        assert ("judge win rate vs reference" in md) is not check
        assert ("Judge: pipeline check only" in md) is check
        assert ("0.5 [" in md or "| 0.5 |" in md) is not check  # the ties are not presented as a result
