"""wandb (offline) and TensorBoard write what a user syncs or opens later, with no network."""
import glob
import os

import numpy as np

from lossmooth.runner.loggers import Loggers


def test_offline_wandb_and_tensorboard_write_run_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    lg = Loggers({"wandb": "offline", "tensorboard": True, "project": "lossmooth-test"}, str(tmp_path),
                 "test-run", {"a": 1})
    for step in (10, 20):
        lg.log(step, "adapt", {"target_acc": np.array([0.5, 0.6, 0.7])},
               ["hard_switch/seed0", "hard_switch/seed1", "loss_smoothing/seed0"])
    rows = [{"phase": "adapt", "run_index": i, "method": m, "seed": s, "hparams": {"T": 10.0}, "step": step,
             "target_acc": 0.5 + 0.1 * i + step / 100} for step in (10, 20)
            for i, (m, s) in enumerate([("hard_switch", 0), ("hard_switch", 1), ("loss_smoothing", 0)])]
    lg.rows(rows)
    lg.close()
    assert glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
    runs = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))
    assert runs and any(f.endswith(".wandb") for f in os.listdir(runs[0]))


def _events(folder):
    """The event files under ``folder`` and their scalars ``{tag: [(step, value)]}``, read record by
    record (TFRecord framing: length, its CRC, the Event protobuf, its CRC) with tensorboardX's protos."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    files = sorted(glob.glob(str(folder / "events.out.tfevents.*")))
    scalars = {}
    for path in files:
        data = open(path, "rb").read()
        pos = 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 12 + n + 4
            for v in event.summary.value:
                scalars.setdefault(v.tag, []).append((event.step, round(v.simple_value, 6)))
    return files, scalars


def test_a_resumed_run_keeps_one_continuous_tensorboard_file(tmp_path):
    """The rows a checkpoint kept are written again into a fresh file: one file, every point once."""
    row = lambda step: {"phase": "adapt", "run_index": 0, "method": "loss_smoothing", "seed": 0,  # noqa: E731
                        "hparams": {"T": 10.0}, "step": step, "target_acc": step / 100, "lam": 0.5}
    cfg = {"wandb": "disabled", "tensorboard": True}
    lg = Loggers(cfg, str(tmp_path), "x", {})
    lg.rows([row(10), row(20), row(30)])  # 30: written after the last checkpoint, then killed
    lg.close()
    lg = Loggers(cfg, str(tmp_path), "x", {}, history=[row(10), row(20)])  # the rows the checkpoint kept
    lg.rows([row(30), row(40)])
    lg.close()
    files, scalars = _events(tmp_path / "tensorboard")
    assert len(files) == 1
    tag = "adapt/loss_smoothing.T-10/seed0/target_acc"
    assert scalars[tag] == [(10, 0.1), (20, 0.2), (30, 0.3), (40, 0.4)]


def test_unknown_wandb_mode_is_one_line(tmp_path):
    import pytest

    from lossmooth.errors import ConfigError

    with pytest.raises(ConfigError, match="logger.wandb: unknown mode 'sometimes'"):
        Loggers({"wandb": "sometimes"}, str(tmp_path), "x", {})
