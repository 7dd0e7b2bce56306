"""Schedule search with ``hydra/sweeper=optuna``: a three-trial search over the ramp length runs here,
two trials and then the same command continuing the study from its storage with a third; each trial
is an ordinary run directory whose paired difference is what the study recorded."""
import subprocess
import sys

import pytest

from lossmooth.results import aggregate as agg
from lossmooth.results import objective
from tests.conftest import TINY

optuna = pytest.importorskip("optuna")
pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
# the tiny config without its fixed ramp length: the search chooses T
SEARCHED = [o for o in TINY if not o.startswith("schedule.T=")]


def _search(results, storage, cache_dir, trials):
    cmd = [sys.executable, "-m", "lossmooth.cli", "run", "-m", "hydra/sweeper=optuna",
           f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.direction=maximize", "hydra.sweeper.study_name=T",
           f"hydra.sweeper.storage=sqlite:///{storage}", "hydra.sweeper.sampler.seed=0",
           "schedule.T=int(interval(2,20))", "objective.metric=wc_acc",
           f"results_dir={results}", f"cache_dir={cache_dir}"] + SEARCHED
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200)


def _trials(storage):
    """``(state, value, T)`` of every trial the study's storage holds."""
    study = optuna.load_study(study_name="T", storage=f"sqlite:///{storage}")
    return [(t.state.name, t.value, t.params.get("schedule.T")) for t in study.trials]


def test_a_three_trial_search_records_each_runs_paired_difference_and_resumes(tmp_path, cache_dir):
    results, storage = tmp_path / "results", tmp_path / "study.db"
    first = _search(results, storage, cache_dir, trials=2)
    assert first.returncode == 0, first.stderr[-2000:]
    assert [state for state, _, _ in _trials(storage)] == ["COMPLETE"] * 2
    # the same command (one trial more) continues the study: the sampler sees the two finished trials
    done = _search(results, storage, cache_dir, trials=1)
    assert done.returncode == 0, done.stderr[-2000:]
    trials = _trials(storage)
    assert [state for state, _, _ in trials] == ["COMPLETE"] * 3
    # every trial is an ordinary run (lossmooth table reads it): its T is the trial's, and its paired
    # difference of WC-ACC (loss smoothing minus the hard switch) is the value the study holds
    rows = agg.collect(str(results), "supervised")
    by_T = {}
    for r in rows:
        if r["method"] == "loss_smoothing":
            by_T[r["hparams"]["T"]] = r["run_dir"]
    # (a T proposed again reads the run already made for it instead of training again)
    assert set(by_T) == {float(T) for _, _, T in trials}
    for _, value, T in trials:
        assert value == pytest.approx(objective.value(by_T[float(T)], "wc_acc", "loss_smoothing"), abs=1e-9)
    lines = [ln for ln in (first.stdout + done.stdout).splitlines()
             if ln.startswith("objective: wc_acc of loss_smoothing")]
    assert len(lines) == 3
    assert sorted(float(ln.rsplit("=", 1)[1]) for ln in lines) == pytest.approx(sorted(v for _, v, _ in trials),
                                                                              rel=1e-5)
