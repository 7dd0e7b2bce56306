"""Loggers fed between compiled chunks: JSONL (always, via the results store), wandb, TensorBoard.

wandb runs in offline mode by default: it writes a run directory under the run's folder that
``wandb sync`` uploads later; no network is needed. It receives, per chunk, the mean over seeds of
every metric per method plus every seed's value. TensorBoard receives every metric row (every run,
every evaluation) under ``<phase>/<run>/<metric>``; a resumed run rebuilds its event file from the
rows its checkpoint kept, so ``tensorboard --logdir`` shows one continuous curve per run with no
point twice.
"""
from __future__ import annotations

import math
import os
import shutil

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


def tb_tag(row: dict, metric: str) -> str:
    """A metric row's TensorBoard tag, ``<phase>/[<line>/]<method>[.<number>-<value>...]/seed<seed>/<metric>``
    (TensorBoard's tags keep letters, digits, ``_.-/`` only)."""
    line = next((f"{row[k]}/" for k in ("algo",) if row.get(k)), "")
    hp = row.get("hparams") or {}
    nums = "".join(f".{k}-{v:g}" for k, v in sorted(hp.items()) if isinstance(v, (int, float)))
    run = f"{row['method']}{nums}" if "method" in row else "source"
    return f"{row['phase']}/{line}{run}/seed{row['seed']}/{metric}"


ROW_IDS = ("phase", "algo", "run_index", "method", "seed", "hparams", "step")


class Loggers:
    def __init__(self, cfg: dict, run_dir: str, run_id: str, config: dict, history: list[dict] | None = None):
        """``history``: a resumed run's metric rows so far (its TensorBoard file is rebuilt from them)."""
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

            folder = os.path.join(run_dir, "tensorboard")
            if history is not None:  # a resumed run: one event file, rebuilt from the rows it kept
                shutil.rmtree(folder, ignore_errors=True)
            self._tb = SummaryWriter(folder)
            self.rows(history or [])

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

    def rows(self, rows: list[dict]) -> None:
        """Every numeric metric of every row to TensorBoard (wandb gets :meth:`log`'s per-chunk view)."""
        if self._tb is None:
            return
        for r in rows:
            for k, v in r.items():
                if k not in ROW_IDS and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(tb_tag(r, k), v, r["step"])

    def close(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()
        if self._tb is not None:
            self._tb.close()
