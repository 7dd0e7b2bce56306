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
    lg.close()
    assert glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
    runs = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))
    assert runs and any(f.endswith(".wandb") for f in os.listdir(runs[0]))


def test_unknown_wandb_mode_is_one_line(tmp_path):
    import pytest

    from lossmooth.errors import ConfigError

    with pytest.raises(ConfigError, match="logger.wandb: unknown mode 'sometimes'"):
        Loggers({"wandb": "sometimes"}, str(tmp_path), "x", {})
