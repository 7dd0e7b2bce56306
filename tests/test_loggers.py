"""Dashboards as researchers use them, read back from the files wandb (offline) and tensorboardX write:
one wandb run per logical run (method x numbers x seed) with its config, summaries and tags, grouped by
the job; the job's table and figure on a summary run; one TensorBoard folder per logical run with an
HParams session; a killed and resumed job adds no run folder and keeps one event file per run."""
import glob
import json
import os
import signal
import struct
import subprocess
import sys
import time

import pytest

from lossmooth.runner.loggers import Loggers
from tests.conftest import TINY


def wandb_records(path):
    """The records of a ``.wandb`` file: W&B's 7-byte header, then LevelDB's log format (32 KiB blocks of
    records, each a CRC, a length, a type and a ``Record`` protobuf, long ones split FIRST/MIDDLE/LAST)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    pos, block, out, buf = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk
        elif kind == 4:
            out.append(buf + chunk)
            buf = b""
        else:  # zero padding to the end of the block
            pos += left - 7 - length
    return [pb.Record.FromString(c) for c in out]


def wandb_runs(run_dir):
    """``{wandb id: {"folders", "group", "job_type", "tags", "config", "summary", "history"}}`` of every
    offline wandb run under ``run_dir``."""
    runs = {}
    for folder in sorted(glob.glob(os.path.join(str(run_dir), "wandb", "offline-run-*"))):
        (log,) = glob.glob(os.path.join(folder, "*.wandb"))
        info = {"folders": [folder], "summary": {}, "history": 0, "tags": [], "config": {}}
        for rec in wandb_records(log):
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                info.update(id=rec.run.run_id, group=rec.run.run_group, job_type=rec.run.job_type,
                            tags=list(rec.run.tags), config={u.key: json.loads(u.value_json)
                                                             for u in rec.run.config.update})
            elif kind == "summary":
                info["summary"].update({u.key: json.loads(u.value_json) for u in rec.summary.update if u.key})
            elif kind == "history":
                info["history"] += 1
        if info["id"] in runs:
            runs[info["id"]]["folders"].append(folder)
        else:
            runs[info["id"]] = info
    return runs


def tb_events(folder):
    """``(event files, {tag: [(step, value)]}, plugins)`` of a TensorBoard folder (TFRecord framing:
    length, its CRC, the Event protobuf, its CRC; tensorboardX's protos)."""
    from tensorboardX.proto.event_pb2 import Event

    files = sorted(glob.glob(os.path.join(str(folder), "events.out.tfevents.*")))
    scalars, plugins = {}, set()
    for path in files:
        data = open(path, "rb").read()
        pos = 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 12 + n + 4
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name:
                    plugins.add(v.metadata.plugin_data.plugin_name)
                if v.HasField("simple_value"):
                    scalars.setdefault(v.tag, []).append((event.step, round(v.simple_value, 6)))
    return files, scalars, plugins


def test_a_resumed_job_rebuilds_its_tensorboard_runs_with_every_point_once(tmp_path):
    """The rows a checkpoint kept are written again into fresh folders: one file, every point once."""
    row = lambda step: {"phase": "adapt", "run_index": 0, "method": "loss_smoothing", "seed": 0,  # noqa: E731
                        "hparams": {"T": 10.0}, "step": step, "target_acc": step / 100, "lam": 0.5}
    ids = [{k: v for k, v in row(0).items() if k in ("phase", "run_index", "method", "seed", "hparams")}]
    cfg = {"wandb": "disabled", "tensorboard": True}
    lg = Loggers(cfg, str(tmp_path), "x", {})
    lg.start(ids, ["loss_smoothing[T=10]/seed0"])
    lg.rows([row(10), row(20), row(30)])  # 30: written after the last checkpoint, then killed
    lg.close()
    lg = Loggers(cfg, str(tmp_path), "x", {}, history=[row(10), row(20)])  # the rows the checkpoint kept
    lg.start(ids, ["loss_smoothing[T=10]/seed0"])
    lg.rows([row(30), row(40)])
    lg.close()
    (folder,) = glob.glob(str(tmp_path / "tensorboard" / "*"))
    files, scalars, _ = tb_events(folder)
    assert len(files) == 1 and scalars["adapt/target_acc"] == [(10, 0.1), (20, 0.2), (30, 0.3), (40, 0.4)]


def test_unknown_wandb_mode_is_one_line(tmp_path):
    from lossmooth.errors import ConfigError

    with pytest.raises(ConfigError, match="logger.wandb: unknown mode 'sometimes'"):
        Loggers({"wandb": "sometimes"}, str(tmp_path), "x", {})


def _job(results, cache_dir, extra=()):
    return [sys.executable, "-m", "lossmooth.cli", "run", f"results_dir={results}", f"cache_dir={cache_dir}",
            *TINY, "logger=all", *extra]


@pytest.fixture(scope="module")
def env():
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


@pytest.fixture(scope="module")
def job(tmp_path_factory, cache_dir, env):
    """A tiny job (hard switch and loss smoothing x 2 seeds) logged to offline wandb and TensorBoard."""
    results = tmp_path_factory.mktemp("dashboards") / "results"
    subprocess.run(_job(results, cache_dir), check=True, capture_output=True, env=env, timeout=600)
    (run_dir,) = [p for p in (results / "supervised").iterdir() if not p.name.startswith(".")]
    return run_dir


def test_one_wandb_run_per_logical_run_grouped_by_the_job(job):
    runs = wandb_runs(job)
    job_id = job.name
    assert set(runs) == {f"{job_id}-{i}" for i in range(4)} | {f"{job_id}-summary"}
    records = {r["run_index"]: r for r in json.loads((job / "runs.json").read_text())}
    for i in range(4):
        run, rec = runs[f"{job_id}-{i}"], records[i]
        assert len(run["folders"]) == 1 and run["group"] == job_id and run["job_type"] == "supervised"
        assert run["config"]["run"]["method"] == rec["method"] and run["config"]["run"]["seed"] == rec["seed"]
        assert run["config"]["run"]["hparams"] == rec["hparams"] and run["config"]["run"]["stand_in"] is True
        assert run["config"]["shift"]["name"] == "pixel_permutation"  # the resolved config is on the run
        assert rec["method"] in run["tags"] and "stand-in" in run["tags"]
        assert run["summary"]["final_target_acc"] == pytest.approx(rec["summary"]["final_target_acc"])
        assert run["history"] >= 5  # the adaptation's evaluations (and the seed's source phase)
    summary = runs[f"{job_id}-summary"]
    assert summary["job_type"] == "supervised-summary" and summary["group"] == job_id
    media = glob.glob(os.path.join(summary["folders"][0], "files", "media", "**", "*"), recursive=True)
    assert any(p.endswith(".table.json") for p in media) and any(p.endswith(".png") for p in media)


def test_one_tensorboard_folder_per_logical_run_with_an_hparams_session(job):
    folders = sorted(p for p in glob.glob(str(job / "tensorboard" / "*")) if os.path.isdir(p))
    assert [os.path.basename(p) for p in folders] == [
        "hard_switch-seed0", "hard_switch-seed1", "loss_smoothing-seed0", "loss_smoothing-seed1"]
    for folder in folders:
        files, scalars, _ = tb_events(folder)
        assert len(files) == 1 and [s for s, _ in scalars["adapt/target_acc"]] == [0, 5, 10, 15, 20]
        assert [s for s, _ in scalars["source/source_acc"]] == [5, 10, 15, 20]
        _, hp_scalars, plugins = tb_events(os.path.join(folder, "hparams"))
        assert "hparams" in plugins and "summary/final_target_acc" in hp_scalars


@pytest.mark.slow  # about 1 min on 2 cores; CI keeps a kill and a SIGTERM resumed (tests/test_resume.py)
def test_a_killed_and_resumed_job_adds_no_run_folder(tmp_path, cache_dir, env):
    results = tmp_path / "results"
    cmd = _job(results, cache_dir, ["setting.adapt_steps=200", "checkpoint_every_s=0"])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 600
    try:
        while not list(results.glob("supervised/*/checkpoints/adapt0/done.json")):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        time.sleep(1.0)  # a few more chunks: rows past the checkpoint that the resumed job drops
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=600)
    (run_dir,) = [p for p in (results / "supervised").iterdir() if not p.name.startswith(".")]
    runs = wandb_runs(run_dir)
    assert set(runs) == {f"{run_dir.name}-{i}" for i in range(4)} | {f"{run_dir.name}-summary"}
    assert all(len(r["folders"]) == 1 for r in runs.values())
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for folder in glob.glob(str(run_dir / "tensorboard" / "*")):
        files, scalars, _ = tb_events(folder)
        steps = [s for s, _ in scalars["adapt/target_acc"]]
        assert len(files) == 1 and steps == sorted(set(steps))  # every point once
    assert len({(m["run_index"], m["step"]) for m in metrics if m["phase"] == "adapt"}) == 4 * 41
