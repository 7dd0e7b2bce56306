"""Nothing lost, nothing passed off: no command deletes a run directory that holds results, a finished run
that lost its summary is re-finished, the readers share one rule for damaged files and never write where
they cannot, a full disk at a checkpoint is one line with nothing half-written, a blown-up source phase
marks its adaptation runs, and a busy config is an error.

Most tests build run directories by hand in each state a run can be left in (killed before its first
checkpoint, checkpointed, finished but unsettled, complete, damaged) and call the store's functions and
the commands on them; one module fixture makes a real run whose source phase blows up."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lossmooth import cli
from lossmooth.core import engine
from lossmooth.errors import ConfigError
from lossmooth.results import aggregate as agg
from lossmooth.results import store
from lossmooth.runner.bounds import HOST_BYTES_PER_RUN, check_sizes
from lossmooth.runner.execute import diverged_sources
from lossmooth.runner.phase import blowups
from tests.conftest import TINY, compose

CLEAN = {"commit": "0123abcd", "dirty": False}
RUNS = [{"run_index": 0, "method": "hard_switch", "seed": 0, "hparams": {}, "diverged_step": -1, "setting": "supervised", "summary": {"x": 1.0}},
        {"run_index": 1, "method": "loss_smoothing", "seed": 0, "hparams": {}, "diverged_step": -1, "setting": "supervised", "summary": {"x": 2.0}}]
ROWS = '{"phase": "source", "seed": 0, "step": 5, "source_loss": 1.0}\n{"phase": "adapt", "step": 5}\n'


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    """A config whose run key is stable (the code a clean commit) and its results folder."""
    monkeypatch.setattr(store, "_code", lambda: CLEAN)
    return {"results_dir": str(tmp_path / "results"), "seed": 0, "num_seeds": 1, "setting": {"name": "supervised"}}


def _run_dir(cfg: dict, stamp: str = "20260101-000000") -> Path:
    return Path(cfg["results_dir"]) / "supervised" / f"{stamp}-{store.resume_key(cfg)}"


def _checkpoint(d: Path, tag: str = "source") -> None:
    (d / "checkpoints" / tag).mkdir(parents=True)
    (d / "checkpoints" / tag / "done.json").write_text(json.dumps({"next_chunk": 1, "marker": {"metric_rows": 2}}))


# every state a run directory can be left in: what a kill, a full disk, a lost file or a copy leaves
STATES = {
    "created": dict(),  # config and meta only: killed before its first metric row
    "rows": dict(metrics=ROWS),  # killed before its first checkpoint
    "checkpoint": dict(checkpoint=True),
    "checkpoint+rows": dict(metrics=ROWS, checkpoint=True),
    "torn-rows+checkpoint": dict(metrics=ROWS + '{"phase": "ad', checkpoint=True),
    "runs-no-summary": dict(metrics=ROWS, runs=True),  # summary.json removed by hand
    "runs+checkpoint": dict(metrics=ROWS, runs=True, checkpoint=True),  # killed between runs.json and the summary
    "pending+checkpoint": dict(metrics=ROWS, runs=True, pending=True, checkpoint=True),  # killed in the finish
    "pending": dict(metrics=ROWS, runs=True, pending=True),
    "complete": dict(metrics=ROWS, runs=True, summary=True),
    "complete-torn": dict(metrics=ROWS[:-3], runs=True, summary=True),
    "complete-bad-yaml": dict(metrics=ROWS, runs=True, summary=True, config="a: [unclosed\n"),
    # a write a kill cut inside atomic_write, left beside a finished run
    "complete+stale-temporary": dict(metrics=ROWS, runs=True, summary=True, stale=True),
}


def make(d: Path, metrics=None, runs=False, summary=False, pending=False, checkpoint=False, config=None,
         stale=False) -> Path:
    """A run directory in one of :data:`STATES`."""
    d.mkdir(parents=True)
    if stale:
        (d / ".tmp-k1ll3dsummary.json").write_text('{"run_id": "2026')
    (d / "config.yaml").write_text(config or "num_seeds: 1\nseed: 0\n")
    (d / "meta.json").write_text('{"stand_in": true}\n')
    if metrics is not None:
        (d / "metrics.jsonl").write_text(metrics)
    if runs:
        (d / "runs.json").write_text(json.dumps(RUNS))
    done = {"run_id": d.name, "setting": "supervised", "complete": True, "runs": 2}
    if summary:
        (d / "summary.json").write_text(json.dumps(done))
    if pending:
        (d / store.PENDING).write_text(json.dumps(done))
    if checkpoint:
        _checkpoint(d)
    return d


def _contents(root: Path) -> dict:
    """Digest -> relative paths of every result file (rows, runs, summaries) under ``root``."""
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and p.name in ("metrics.jsonl", "runs.json", "summary.json", store.PENDING):
            out.setdefault(hashlib.sha256(p.read_bytes()).hexdigest(), []).append(str(p.relative_to(root)))
    return out


def _lost_rename(*a, **k):
    raise OSError(errno.EIO, "Input/output error (the network filesystem lost the rename)")


# ----------------------------------------------------------------------------- never delete what can be kept


def test_a_run_killed_before_its_first_checkpoint_is_moved_aside_not_deleted(cfg):
    d = make(_run_dir(cfg), metrics=ROWS)
    said = []
    rs = store.RunStore.open_or_create(cfg, "supervised", {"stand_in": True}, say=said.append)
    rs.release()
    moved = Path(cfg["results_dir"]) / "supervised" / store.QUARANTINE / d.name
    assert (moved / "metrics.jsonl").read_text() == ROWS and not d.exists()
    assert len(said) == 1 and str(moved) in said[0] and "moved" in said[0]
    assert not rs.resumed and Path(rs.path).is_dir()  # started anew beside it
    # quarantine never hides a reader's run: the folder starts with a dot
    assert [r["run_id"] for r in store.run_states(cfg["results_dir"])] == [os.path.basename(rs.path)]


def test_a_second_directory_of_one_name_moved_aside_gets_a_suffix(tmp_path):
    first = make(tmp_path / "s" / "r1", metrics=ROWS)
    a = store.quarantine(str(first))
    make(tmp_path / "s" / "r1", metrics=ROWS + ROWS)
    b = store.quarantine(str(tmp_path / "s" / "r1"))
    assert a != b and b.endswith("r1.1") and Path(a, "metrics.jsonl").read_text() == ROWS


def test_a_finished_run_that_lost_its_summary_is_refinished_not_removed(cfg):
    d = make(_run_dir(cfg), **STATES["runs-no-summary"])
    said = []
    with pytest.raises(store.NothingToDo) as e:  # the same config on the same code: complete again
        store.RunStore.open_or_create(cfg, "supervised", {"stand_in": True}, say=said.append)
    assert e.value.complete == str(d)
    summary = json.loads((d / "summary.json").read_text())
    assert summary["complete"] and summary["runs"] == 2 and summary["methods"] == ["hard_switch", "loss_smoothing"]
    assert "rebuilt" in summary and any("rebuilt" in s for s in said)
    assert (d / "runs.json").read_text() == json.dumps(RUNS) and (d / "metrics.jsonl").read_text() == ROWS


@pytest.mark.parametrize("damage, named", [("metrics.jsonl", "metrics.jsonl"), ("meta.json", "meta.json")])
def test_a_finished_run_whose_summary_cannot_be_rebuilt_is_refused_in_one_line(cfg, damage, named):
    d = make(_run_dir(cfg), **STATES["runs-no-summary"])
    if damage == "metrics.jsonl":
        (d / damage).write_text(ROWS + '{"cut')
    else:
        (d / damage).unlink()
    before = _contents(d)
    with pytest.raises(ConfigError) as e:
        store.RunStore.open_or_create(cfg, "supervised", {}, say=print)
    assert str(d) in str(e.value) and named in str(e.value) and "\n" not in str(e.value)
    assert _contents(d) == before and not (d / "summary.json").exists()


def test_a_run_with_checkpoints_resumes_and_says_so(cfg):
    d = make(_run_dir(cfg), **STATES["checkpoint+rows"])
    said = []
    rs = store.RunStore.open_or_create(cfg, "supervised", {}, say=said.append)
    rs.release()
    assert rs.resumed and rs.path == str(d) and said == [f"lossmooth: resuming {d} from its checkpoints"]


def test_late_bad_input_keeps_a_directory_with_rows(cfg, capsys):
    rs = store.RunStore.open_or_create(cfg, "supervised", {}, say=print)
    rs.append_metrics([{"step": 5}])
    rs.discard()
    rs.release()
    assert not Path(rs.path).exists()
    moved = Path(cfg["results_dir"]) / "supervised" / store.QUARANTINE / os.path.basename(rs.path)
    assert (moved / "metrics.jsonl").exists() and "moved" in capsys.readouterr().err
    empty = store.RunStore.open_or_create(cfg, "supervised", {}, say=print)
    empty.discard()  # nothing in it yet: removed, as bad input leaves nothing
    empty.release()
    assert not Path(empty.path).exists() and len(os.listdir(moved.parent)) == 1


@pytest.mark.parametrize("lost_rename", [False, True], ids=["writable", "rename-lost"])
@pytest.mark.parametrize("state", list(STATES))
def test_no_command_deletes_a_directory_that_holds_results(cfg, state, lost_rename, monkeypatch, capsys):
    """Over every state a run directory can be left in, and a folder that loses renames: after each
    command (run's opening of its directory, status, table, plot's reading, the run-key look-up) every
    result file's bytes are still under the setting's folder (in place, settled, or moved aside), and a
    directory only disappears into the quarantine."""
    d = make(_run_dir(cfg), **STATES[state])
    sdir = Path(cfg["results_dir"]) / "supervised"
    before = _contents(sdir)
    if lost_rename:
        monkeypatch.setattr(os, "replace", _lost_rename)

    commands = {
        "open": lambda: store.RunStore.open_or_create(cfg, "supervised", {}, say=print).release(),
        "status": lambda: cli.main(["status", "--results-dir", cfg["results_dir"]]),
        "complete_runs": lambda: list(store.complete_runs(cfg["results_dir"])),
        "collect": lambda: agg.collect(cfg["results_dir"]),
        "find_complete": lambda: store.find_complete(cfg["results_dir"], "supervised", store.run_key(cfg)),
    }
    for name, command in commands.items():
        try:
            command()
        except (ConfigError, store.NothingToDo, OSError):
            pass  # refusals are fine; losing results is not
        after = _contents(sdir)
        for digest, paths in before.items():
            assert digest in after, f"{state}: `{name}` lost {paths}"
        if not d.exists():
            assert (sdir / store.QUARANTINE / d.name).is_dir(), f"{state}: `{name}` deleted {d.name}"
    if (d / "summary.json").exists() or (d / store.PENDING).exists():
        pass  # a finished run may drop its checkpoints
    elif STATES[state].get("checkpoint") and d.exists():
        assert (d / "checkpoints" / "source" / "done.json").exists(), f"{state}: checkpoints lost"


# ----------------------------------------------------------------------------- the readers


def test_a_pending_finish_in_a_folder_that_takes_no_writes_is_reported_not_settled(cfg, monkeypatch, capsys):
    d = make(_run_dir(cfg), **STATES["pending+checkpoint"])
    monkeypatch.setattr(os, "replace", _lost_rename)
    assert cli.main(["status", "--results-dir", cfg["results_dir"]]) == 0
    out = capsys.readouterr().out
    assert "finish pending" in out and "1 complete" in out
    assert (d / store.PENDING).exists() and not (d / "summary.json").exists()
    assert (d / "checkpoints" / "source" / "done.json").exists()  # nothing removed before the rename fails
    assert [p for p, _, _ in store.complete_runs(cfg["results_dir"])] == [str(d)]  # tabulated from the pending file


def test_a_read_only_folder_is_never_written(cfg, monkeypatch):
    d = make(_run_dir(cfg), **STATES["pending+checkpoint"])
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if mode == os.W_OK else real(p, mode, **k))
    assert store.is_complete(str(d)) and not store.settle(str(d))
    assert (d / store.PENDING).exists() and (d / "checkpoints").is_dir()


@pytest.mark.parametrize("damage, named", [("torn", "metrics.jsonl"), ("yaml", "config.yaml"),
                                           ("runs", "runs.json")])
def test_table_plot_and_status_skip_a_damaged_run_with_one_warning_naming_the_file(tmp_path, damage, named, capsys):
    results = tmp_path / "results"
    d = make(results / "supervised" / "20260101-000000-k", **STATES["complete"])
    if damage == "torn":
        (d / "metrics.jsonl").write_text(ROWS + '{"phase": "adapt", "st')
    elif damage == "yaml":
        (d / "config.yaml").write_text("a: [unclosed\n")
    else:
        (d / "runs.json").write_text(json.dumps(RUNS)[:30])
    for args, rc in ((["table", "--reps", "5"], 2), (["plot", "--out", str(tmp_path / "c.png")], 2), (["status"], 0)):
        assert cli.main(args + ["--results-dir", str(results)]) == rc, args
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        warnings = [ln for ln in err if ln.startswith("lossmooth: warning:")]
        assert len(warnings) == 1 and str(d) in warnings[0] and named in warnings[0], (args, err)
        if rc == 2:  # nothing left to read: one error line, nothing drawn
            assert err[-1].startswith("lossmooth: error: no complete runs"), err
    assert not (tmp_path / "c.png").exists()


def test_check_metrics_reads_only_the_end_and_accepts_an_empty_file(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("")
    store.check_metrics(str(tmp_path))
    (tmp_path / "metrics.jsonl").write_text(ROWS * 5000)
    store.check_metrics(str(tmp_path))
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 1}')  # whole JSON, but no line break: the write was cut before it
    with pytest.raises(store.CorruptRun, match="metrics.jsonl"):
        store.check_metrics(str(tmp_path))


# ----------------------------------------------------------------------------- writes that fail


def test_a_finish_whose_rename_is_lost_raises_one_line_and_leaves_the_run_whole(cfg, monkeypatch):
    rs = store.RunStore.open_or_create(cfg, "supervised", {}, say=print)
    rs.append_metrics([{"step": 5}])
    _checkpoint(Path(rs.path))
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: _lost_rename() if b.endswith(store.SUMMARY) else real(a, b))
    with pytest.raises(OSError) as e:
        rs.finish(RUNS, {"complete": True})
    rs.release()
    assert "\n" not in str(e.value) and store.PENDING in str(e.value)
    assert store.is_complete(rs.path)  # whole: its pending summary is read; any later command settles it
    monkeypatch.setattr(os, "replace", real)
    assert store.settle(rs.path) and not (Path(rs.path) / "checkpoints").exists()


def test_preemption_during_the_finish_leaves_a_run_the_next_command_completes(cfg, monkeypatch):
    rs = store.RunStore.open_or_create(cfg, "supervised", {}, say=print)
    rs.append_metrics([{"step": 5}])
    _checkpoint(Path(rs.path))
    real = os.replace

    def preempted(a, b):
        if b.endswith(store.SUMMARY):
            raise KeyboardInterrupt  # the signal lands between the pending summary and its rename
        real(a, b)

    monkeypatch.setattr(os, "replace", preempted)
    with pytest.raises(KeyboardInterrupt):
        rs.finish(RUNS, {"complete": True, "runs": 2})
    rs.release()
    monkeypatch.setattr(os, "replace", real)
    assert (Path(rs.path) / store.PENDING).exists() and (Path(rs.path) / "checkpoints").is_dir()
    with pytest.raises(store.NothingToDo) as e:  # the same command: complete, settled, nothing trained
        store.RunStore.open_or_create(cfg, "supervised", {}, say=print)
    assert e.value.complete == rs.path and (Path(rs.path) / store.SUMMARY).exists()
    assert not (Path(rs.path) / "checkpoints").exists()


def test_an_atomic_write_on_a_folder_losing_renames_leaves_no_temporary(tmp_path, monkeypatch):
    (tmp_path / "runs.json").write_text("old")
    monkeypatch.setattr(os, "replace", _lost_rename)
    with pytest.raises(OSError):
        store.write_json(str(tmp_path / "runs.json"), RUNS)
    assert os.listdir(tmp_path) == ["runs.json"] and (tmp_path / "runs.json").read_text() == "old"


def _checkpoints(tmp_path):
    return engine.Checkpoints(str(tmp_path / "checkpoints"), lambda: {"metric_rows": 0})


def test_a_full_disk_at_a_checkpoint_is_one_line_naming_the_folder_and_the_space(tmp_path, monkeypatch):
    ck = _checkpoints(tmp_path)
    state = {"w": np.zeros((256, 1024), np.float32)}  # 1 MiB
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 2**19))
    with pytest.raises(ConfigError) as e:
        ck.save("source", 1, state, {"loss": np.zeros((2, 3))})
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "checkpoints") in msg and "2.0 MiB free" in msg and "0.5 MiB" in msg
    assert getattr(e.value, "keep_run", False)  # the run directory stays for the rerun
    assert os.listdir(tmp_path / "checkpoints") == []


def test_a_disk_filling_during_a_save_leaves_the_last_whole_checkpoint_and_nothing_beside_it(tmp_path, monkeypatch):
    ck = _checkpoints(tmp_path)
    state = {"w": np.arange(4, dtype=np.float32)}
    ck.save("source", 1, state, {"loss": np.zeros((1, 2))})

    def full(path, state):
        os.makedirs(path)
        Path(path, "half").write_text("x")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(engine, "save_state", full)
    with pytest.raises(ConfigError, match="no space left for a checkpoint"):
        ck.save("source", 2, {"w": state["w"] + 1}, {"loss": np.zeros((1, 4))})
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["source"]  # no source.new
    monkeypatch.undo()
    nxt, restored, metrics = ck.load("source", state)  # the rerun resumes from the last whole save
    assert nxt == 1 and np.array_equal(restored["w"], state["w"]) and metrics["loss"].shape == (1, 2)


# ----------------------------------------------------------------------------- bounded inputs


def test_seeds_and_run_counts_are_bounded_before_anything_is_allocated():
    base = {"method": {"hard_switch": {}, "loss_smoothing": {}}, "seed": 0}
    with pytest.raises(ConfigError, match=r"seed: seeds 100000000000000000000\.\.") as e:
        check_sizes({**base, "num_seeds": 8, "seed": 1e20})
    assert "32-bit" in str(e.value)
    check_sizes({**base, "num_seeds": 2, "seed": 2**32 - 2})
    with pytest.raises(ConfigError, match="seed: seeds 4294967295..4294967296"):
        check_sizes({**base, "num_seeds": 2, "seed": 2**32 - 1})
    with pytest.raises(ConfigError, match=r"num_seeds: 1000000000 seeds x 2 method\(s\) = 2000000000 runs") as e:
        check_sizes({**base, "num_seeds": 10**9}, memory=16 * 2**30)
    assert "16 GiB" in str(e.value) and f"num_seeds <= {16 * 2**30 // (2 * HOST_BYTES_PER_RUN)}" in str(e.value)
    check_sizes({**base, "num_seeds": 1000}, memory=16 * 2**30)
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="num_seeds: must be an integer >= 1"):
            check_sizes({**base, "num_seeds": bad})
    steps = {"setting": {"eval_every": 10, "source_steps": 100, "adapt_steps": 10**12}}
    with pytest.raises(ConfigError, match=r"setting.adapt_steps: 100000000010 evaluations per run x 16 runs"):
        check_sizes({**base, "num_seeds": 8, **steps}, memory=16 * 2**30)
    check_sizes({**base, "num_seeds": 8, "setting": {**steps["setting"], "adapt_steps": 10**6}}, memory=16 * 2**30)


def test_an_unquoted_value_hydra_cannot_read_gets_the_hint_to_quote_it(tmp_path):
    from lossmooth.runner.compose import compose as run_compose

    with pytest.raises(ConfigError) as e:
        run_compose([f"results_dir={tmp_path}/résultats"])
    assert "quote the value" in str(e.value) and f"'results_dir=\"{tmp_path}/résultats\"'" in str(e.value)
    assert run_compose([f'results_dir="{tmp_path}/résultats dir"'])["results_dir"] == f"{tmp_path}/résultats dir"


# ----------------------------------------------------------------------------- divergence in every phase


def test_a_blow_up_is_measured_from_the_phase_start_where_the_phase_records_none():
    loss = np.array([[1e9, 1e12, 1e15], [2.0, 2.1, 2.2]])
    # without a reference the first recorded value (already huge) is the start: nothing seen
    assert list(blowups({"source_loss": loss}, ("source_loss",), 100.0, 0)) == [1, -1]
    ref = {"source_loss": np.array([2.3, 2.3])}  # the loss at initialization
    assert list(blowups({"source_loss": loss}, ("source_loss",), 100.0, 0, ref)) == [0, -1]


def test_diverged_sources_names_the_seeds_and_steps():
    class Res:
        steps = np.array([5, 10, 15])
        diverged_at = np.array([-1, 1, 0])

    assert diverged_sources(Res, [3, 4, 5]) == {4: 10, 5: 5}


@pytest.fixture(scope="module")
def blown_source(tmp_path_factory, cache_dir):
    """A tiny supervised run whose source phase blows up (setting.source_lr=1e4): its run directory."""
    from lossmooth import runner

    cfg = compose([o for o in TINY if not o.startswith("setting.source_lr")] + ["setting.source_lr=1e4"])
    cfg.update(results_dir=str(tmp_path_factory.mktemp("blown")), cache_dir=cache_dir)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store, "_code", lambda: CLEAN)  # a stable run key, so the same command finds the run
        run_dir = runner.run_config(cfg, {})
    return cfg, run_dir


def test_a_blown_up_source_phase_marks_every_run_built_on_it(blown_source, capsys):
    cfg, run_dir = blown_source
    runs = json.load(open(os.path.join(run_dir, "runs.json")))
    assert runs and all(r.get("source_diverged") is True for r in runs)
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert set(summary["source_diverged"][""]) == {"0", "1"}
    assert cli.main(["status", "--results-dir", cfg["results_dir"]]) == 0
    out = capsys.readouterr().out
    assert "| diverged |" in out and f"{len(runs)} runs built on a diverged source" in out


def test_a_run_whose_summary_is_removed_is_refinished_by_the_same_command(blown_source, monkeypatch, capsys):
    """The issue's repro: a finished run, its summary.json removed, the same command again."""
    from lossmooth import runner

    cfg, run_dir = blown_source
    monkeypatch.setattr(store, "_code", lambda: CLEAN)
    rows = open(os.path.join(run_dir, "metrics.jsonl")).read()
    os.remove(os.path.join(run_dir, "summary.json"))
    assert runner.run_config(cfg, {}) == run_dir
    out = capsys.readouterr().out
    assert "rebuilt it from runs.json" in out and "removing" not in out and "starting it anew" not in out
    assert open(os.path.join(run_dir, "metrics.jsonl")).read() == rows
    assert json.load(open(os.path.join(run_dir, "summary.json")))["complete"]
    assert [p for p in os.listdir(os.path.dirname(run_dir)) if not p.startswith(".")] == [os.path.basename(run_dir)]


# ----------------------------------------------------------------------------- two jobs, one run id


def test_a_second_run_of_a_config_another_process_is_running_exits_non_zero(tmp_path, cache_dir):
    results = tmp_path / "results"
    overrides = TINY + [f"results_dir={results}", f"cache_dir={cache_dir}"]
    cfg = compose(overrides)
    lock = store.ConfigLock(str(results), "supervised", store.resume_key(cfg))
    assert lock.acquire()
    try:
        p = subprocess.run([sys.executable, "-m", "lossmooth.cli", "run", *overrides], capture_output=True,
                           text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    finally:
        lock.release()
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 75, p.stderr
    assert lines[-1].startswith("lossmooth: error: supervised: this config is running in another process"), p.stderr
    assert "Traceback" not in p.stderr
    assert not [d for d in (results / "supervised").iterdir() if not d.name.startswith(".")]


def test_a_run_is_not_resumed_on_other_data_than_its_checkpoints_were_made_on(cfg):
    """A dataset collected again (collection is not bit-reproducible) under the same config would mix
    two datasets' rows in one run: refused in one line, the directory untouched; the same data resumes."""
    d = make(_run_dir(cfg), **STATES["checkpoint+rows"])
    had = {"dataset_sha256": "a" * 64, "ref_scores": [-93.4, 2252.2]}
    (d / "meta.json").write_text(json.dumps({"stand_in": True, "data": {**had, "data": "expert"}}))
    before = _contents(d)
    for other in ({**had, "dataset_sha256": "b" * 64}, {**had, "ref_scores": [-93.4, 1927.0]}):
        with pytest.raises(ConfigError) as e:
            store.RunStore.open_or_create(cfg, "supervised", {"data": other}, say=print)
        msg = str(e.value)
        assert str(d) in msg and "\n" not in msg and "move the directory aside" in msg
        assert _contents(d) == before and (d / store.CHECKPOINTS).is_dir()
    rs = store.RunStore.open_or_create(cfg, "supervised", {"data": {**had, "data": "expert, loaded again"}},
                                       say=print)
    rs.release()
    assert rs.resumed and rs.path == str(d)
