"""Runs keyed by config and code: a finished run is not redone, ``rerun=true`` redoes it with
identical metrics (determinism), and ``lossmooth status`` tells complete, incomplete and diverged
run directories apart."""
import json
import os

import pytest

from lossmooth import cli, runner
from lossmooth.results import store
from tests.conftest import TINY, compose

CLEAN = {"commit": "0123abcd", "dirty": False}


def test_run_key_ignores_host_only_keys_and_follows_config_and_code():
    cfg = {"seed": 0, "setting": {"name": "supervised"}, "results_dir": "a", "progress": True}
    k = store.run_key(cfg, CLEAN)
    assert k == store.run_key({**cfg, "results_dir": "b", "progress": False, "rerun": True}, CLEAN)
    assert k != store.run_key({**cfg, "seed": 1}, CLEAN)
    assert k != store.run_key(cfg, {"commit": "ffff", "dirty": False})
    assert store.run_key(cfg, {"commit": "0123abcd", "dirty": True}) is None  # uncommitted edits
    assert store.run_key(cfg, {"commit": None, "dirty": None}) is None


def test_a_finished_run_is_not_redone_and_a_rerun_is_identical(tmp_path, monkeypatch, cache_dir, capsys):
    monkeypatch.setattr(store, "_code", lambda: CLEAN)
    cfg = compose(TINY)
    cfg.update(results_dir=str(tmp_path / "r"), cache_dir=cache_dir)
    first = runner.run_config(cfg, {})
    assert os.path.basename(first).endswith("-" + store.run_key(cfg))
    again = runner.run_config({**cfg, "progress": True}, {})  # a host-only difference: the same run
    assert again == first and "already complete" in capsys.readouterr().out
    assert [d for d in os.listdir(tmp_path / "r" / "supervised") if not d.startswith(".")] == [os.path.basename(first)]
    redo = runner.run_config({**cfg, "rerun": True}, {})
    assert redo != first
    # determinism: the same command twice on CPU writes identical metrics
    assert open(os.path.join(first, "metrics.jsonl")).read() == open(os.path.join(redo, "metrics.jsonl")).read()
    a, b = (json.load(open(os.path.join(d, "runs.json"))) for d in (first, redo))
    assert a == b
    with pytest.raises(Exception, match="rerun: must be true or false"):
        runner.run_config({**cfg, "rerun": "yes"}, {})
    # bad input on a finished config is an error, not that run's table
    with pytest.raises(Exception, match="progress: must be true or false"):
        runner.run_config({**cfg, "progress": "banana"}, {})
    with pytest.raises(Exception, match="shift.severity"):
        runner.run_config({**cfg, "shift": {**cfg["shift"], "severity": 7}}, {})


def test_status_tells_complete_incomplete_and_diverged_apart(tmp_path, capsys):
    sdir = tmp_path / "r" / "supervised"
    for rid, runs in (("1-done", [{"method": "hard_switch", "diverged_step": -1, "summary": {}}]),
                      ("2-div", [{"method": "hard_switch", "diverged_step": -1, "summary": {}},
                                 {"method": "loss_smoothing", "diverged_step": 40, "summary": {}}]),
                      ("3-part", None)):
        d = sdir / rid
        d.mkdir(parents=True)
        (d / "metrics.jsonl").write_text('{"step": 5}\n{"step": 10}\n')
        if runs is not None:
            (d / "runs.json").write_text(json.dumps(runs))
            (d / "meta.json").write_text("{}")
            (d / "config.yaml").write_text("num_seeds: 1\n")
            (d / "summary.json").write_text('{"complete": true}')
    assert cli.main(["status", "--results-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "| supervised | 1-done | complete | 1 | 0 | 0 | hard_switch |" in out
    assert "| supervised | 2-div | diverged | 2 | 1 | 0 | hard_switch, loss_smoothing |" in out
    assert "| supervised | 3-part | incomplete |  | 0 | 0 | 2 metric rows so far, no checkpoint: moved aside" in out
    assert "3 run directories: 1 complete, 1 diverged, 1 incomplete, 0 corrupt" in out
    assert cli.main(["status", "--results-dir", str(tmp_path / "nowhere")]) == 2
