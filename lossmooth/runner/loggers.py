"""Loggers fed between compiled chunks: JSONL (always, via the results store), wandb, TensorBoard.

wandb runs in offline mode by default: it writes a run directory under the run's folder that
``wandb sync`` uploads later; no network is needed. Each logger receives, per evaluation, the mean
over seeds of every metric per method plus every seed's value.
"""
from __future__ import annotations

import os

import numpy as np

from lossmooth.errors import ConfigError

WANDB_MODES = ("offline", "online", "disabled")
LOGGER_KEYS = ("wandb", "tensorboard", "project")


def check_loggers(cfg: dict) -> None:
    """The ``logger`` group's values (one line naming the key on anything else)."""
    unknown = sorted(set(cfg) - set(LOGGER_KEYS))
    if unknown:
        raise ConfigError(f"logger.{unknown[0]}: unknown key; the logger group's keys are {', '.join(LOGGER_KEYS)}")
    if cfg.get("wandb", "offline") not in WANDB_MODES:
        raise ConfigError(f"logger.wandb: unknown mode '{cfg.get('wandb')}'; choose one of {', '.join(WANDB_MODES)}")
    if not isinstance(cfg.get("tensorboard", False), bool):
        raise ConfigError(f"logger.tensorboard: must be true or false, got {cfg.get('tensorboard')!r}")
    if not isinstance(cfg.get("project", "lossmooth"), str):
        raise ConfigError(f"logger.project: must be a string, got {cfg.get('project')!r}")


class Loggers:
    def __init__(self, cfg: dict, run_dir: str, run_id: str, config: dict):
        self._wandb = None
        self._tb = None
        check_loggers(cfg)
        mode = cfg.get("wandb", "offline")
        if mode != "disabled":
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            # the run id is the wandb id: a resumed run (killed or preempted) continues its wandb run
            self._wandb = wandb.init(project=cfg.get("project", "lossmooth"), name=run_id, id=run_id,
                                     dir=run_dir, mode=mode, config=config, reinit="finish_previous",
                                     resume="allow")
        if cfg.get("tensorboard", False):
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(run_dir, "tensorboard"))

    def log(self, step: int, phase: str, values: dict[str, np.ndarray], labels: list[str]) -> None:
        """``values[name]`` is [runs]; ``labels[i]`` names run i (``method/seed``)."""
        flat = {}
        groups: dict[str, list[int]] = {}
        for i, lab in enumerate(labels):
            groups.setdefault(lab.rsplit("/", 1)[0], []).append(i)
        for name, v in values.items():
            v = np.asarray(v, np.float64)
            for g, idx in groups.items():
                flat[f"{phase}/{g}/{name}"] = float(np.nanmean(v[idx]))
            for i, lab in enumerate(labels):
                flat[f"{phase}/{lab}/{name}"] = float(v[i])
        if self._wandb is not None:
            self._wandb.log({**flat, f"{phase}/step": step})
        if self._tb is not None:
            for k, v in flat.items():
                self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()
        if self._tb is not None:
            self._tb.close()
