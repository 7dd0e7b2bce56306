"""Dashboards fed between compiled chunks: wandb and TensorBoard, one run per logical run.

JSONL (``metrics.jsonl``, :mod:`lossmooth.results.store`) is always written; the dashboards are views
of its rows. A *logical run* is one (method, swept numbers, seed) run (per algorithm in online RL),
even though it trains vmapped beside the others in one process.

- **wandb** (offline by default: ``wandb sync <run dir>/wandb/offline-run-*`` uploads later). Each
  logical run is its own wandb run (``reinit="create_new"``: several live in one process): id
  ``<job run id>-<run index>``, name its label (``loss_smoothing[T=100]/seed3``), ``group`` the job's
  run id, ``job_type`` the setting, ``tags`` its method, setting, line, ``stand-in`` and, at the end,
  ``diverged``; its ``config`` is the resolved config plus ``run``: method, swept numbers
  (``hparams``), seed, run index, line and the stand-in flag. Metrics: ``adapt/<metric>`` against
  ``adapt/step`` (the adaptation step, 0 = the switch, in the setting's step unit) and the seed's
  source phase as ``source/<metric>`` against ``source/step``. At the end each run's summaries
  (``runs.json``) go to its ``summary``, and one more run, ``<job run id>-summary`` (job_type
  ``<setting>-summary``), holds the job's table (a ``wandb.Table`` of every aggregated number) and its
  curves figure.
- **TensorBoard** (``logger.tensorboard=true``): ``tensorboard/<label>/`` per logical run with the
  same scalars (``adapt/<metric>``, ``source/<metric>``) and, at the end, an HParams session
  (``tensorboard/<label>/hparams/``: the run's method, numbers, seed and context against its summaries),
  so TensorBoard's HParams tab compares runs.

A resumed job rebuilds both from the rows its checkpoint kept: its TensorBoard folders and offline
wandb runs are written anew (the same ids, one folder per run, every point once). Online wandb runs
are resumed instead (``resume="allow"``), and rows written after the last checkpoint are sent again.
"""
from __future__ import annotations

import glob
import math
import os
import re
import shutil

from lossmooth.errors import ConfigError

WANDB_MODES = ("offline", "online", "disabled")
LOGGER_KEYS = ("wandb", "tensorboard", "project")
ROW_IDS = ("phase", "algo", "run_index", "method", "seed", "hparams", "step")


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


def folder_name(label: str) -> str:
    """A run label as a folder name (TensorBoard's runs are folders)."""
    return re.sub(r"[^A-Za-z0-9_.=,\-]+", "_", label.replace("/", "-")).strip("_")


def _metrics(row: dict) -> dict:
    return {k: v for k, v in row.items()
            if k not in ROW_IDS and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class Loggers:
    """The dashboards of one job (see the module docstring). ``history``: a resumed job's metric rows
    so far (its dashboards are rebuilt from them); ``line_key``: the row field naming a run's line."""

    def __init__(self, cfg: dict, run_dir: str, run_id: str, config: dict, history: list[dict] | None = None,
                 setting: str = "", stand_in: bool = True, line_key: str | None = None):
        check_loggers(cfg)
        self.mode = cfg.get("wandb", "offline")
        self.project = cfg.get("project", "lossmooth")
        self.tensorboard = cfg.get("tensorboard", False)
        self.run_dir, self.run_id, self.config = run_dir, run_id, config
        self.setting, self.stand_in, self.line_key = setting, stand_in, line_key
        self._open: dict[tuple, dict] = {}  # logical run -> {"label", "ids", "wandb", "tb"}
        self._source: dict[tuple, list] = {}  # (line, seed) -> source-phase rows
        self._kept: dict[tuple, list] = {}  # logical run -> its rows a resumed job kept
        self._written: set = set()  # (logical run, phase, step) already on its dashboards
        self._replay = history is not None and self.mode != "online"
        if history is not None:
            self._forget_dashboards()
            for r in history:
                self._remember(r)
        if self.mode != "disabled":
            os.environ.setdefault("WANDB_SILENT", "true")

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled" or self.tensorboard

    # -- rows
    def _key(self, row: dict) -> tuple:
        return (row.get(self.line_key) if self.line_key else None, row["run_index"])

    def _remember(self, row: dict) -> None:
        if row.get("phase") == "source":
            self._source.setdefault((row.get(self.line_key) if self.line_key else None, row["seed"]), []).append(row)
        elif self._replay:
            self._kept.setdefault(self._key(row), []).append(row)

    def _forget_dashboards(self) -> None:
        """A resumed job's dashboards are rebuilt: its TensorBoard folders and offline wandb runs go."""
        shutil.rmtree(os.path.join(self.run_dir, "tensorboard"), ignore_errors=True)
        if self.mode == "offline":
            for d in glob.glob(os.path.join(self.run_dir, "wandb", f"offline-run-*-{self.run_id}-*")):
                shutil.rmtree(d, ignore_errors=True)

    def start(self, ids: list[dict], labels: list[str]) -> None:
        """A batch of logical runs begins (``ids``: their metric rows' identity fields): open each one's
        dashboards and write what it already has (its seed's source phase, rows a resumed job kept)."""
        if not self.enabled:
            return
        for row_ids, label in zip(ids, labels):
            key = self._key(row_ids)
            if key in self._open:
                continue
            # a resumed job's kept rows wait for the run's first new row (its evaluation at the switch,
            # which the kept rows may lack), so every run's points go out in step order
            run = {"label": label, "ids": row_ids, "wandb": None, "tb": None,
                   "pending": sorted(self._kept.pop(key, []), key=lambda r: r["step"])}
            self._open[key] = run
            if self.mode != "disabled":
                run["wandb"] = self._wandb_run(row_ids, label)
            if self.tensorboard:
                from tensorboardX import SummaryWriter

                run["tb"] = SummaryWriter(os.path.join(self.run_dir, "tensorboard", folder_name(label)))
            line = row_ids.get(self.line_key) if self.line_key else None
            self._write(run, self._source.get((line, row_ids["seed"]), []))

    def _wandb_run(self, ids: dict, label: str):
        import wandb

        line = ids.get(self.line_key) if self.line_key else None
        run_info = {"method": ids["method"], "hparams": ids.get("hparams", {}), "seed": ids["seed"],
                    "run_index": ids["run_index"], "line": line, "stand_in": self.stand_in}
        tags = [t for t in (ids["method"], self.setting, line, "stand-in" if self.stand_in else None) if t]
        run = wandb.init(project=self.project, id=f"{self.run_id}-{ids['run_index']}", name=label,
                         group=self.run_id, job_type=self.setting, dir=self.run_dir, mode=self.mode,
                         config={**self.config, "run": run_info}, tags=tags, reinit="create_new",
                         resume="allow" if self.mode == "online" else None)
        for phase in ("source", "adapt"):
            run.define_metric(f"{phase}/step")
            run.define_metric(f"{phase}/*", step_metric=f"{phase}/step")
        return run

    def _write(self, run: dict, rows: list[dict]) -> None:
        """``rows`` to ``run``'s dashboards, each (phase, step) once: the evaluation at the switch comes
        first (before the chunks), the same row again from the results store is not written twice."""
        for r in rows:
            values = _metrics(r)
            phase = "source" if r["phase"] == "source" else "adapt"
            mark = (self._key(run["ids"]), phase, r["step"])
            if not values or mark in self._written:
                continue
            self._written.add(mark)
            if run["wandb"] is not None:
                run["wandb"].log({f"{phase}/step": r["step"], **{f"{phase}/{k}": v for k, v in values.items()}})
            if run["tb"] is not None:
                for k, v in values.items():
                    run["tb"].add_scalar(f"{phase}/{k}", v, r["step"])

    def rows(self, rows: list[dict]) -> None:
        """Metric rows to their logical runs' dashboards (source-phase rows wait for the runs of their seed)."""
        if not self.enabled:
            return
        for r in rows:
            if r.get("phase") == "source":
                self._remember(r)
            elif self._key(r) in self._open:
                run = self._open[self._key(r)]
                rows_now, run["pending"] = sorted(run["pending"] + [r], key=lambda x: x["step"]), []
                self._write(run, rows_now)

    # -- the end of the job
    def finish(self, records: list[dict]) -> None:
        """Each logical run's summaries (its ``runs.json`` record) to its dashboards, then close them."""
        if not self.enabled:
            return
        for rec in records:
            run = self._open.pop((rec.get(self.line_key) if self.line_key else None, rec["run_index"]), None)
            if run is None:
                continue
            self._write(run, run["pending"])
            summary = {k: v for k, v in (rec.get("summary") or {}).items() if isinstance(v, (int, float))}
            diverged = rec.get("diverged_step", -1) >= 0
            if run["wandb"] is not None:
                run["wandb"].summary.update({**summary, "diverged_step": rec.get("diverged_step", -1)})
                if diverged:
                    run["wandb"].tags = tuple(run["wandb"].tags) + ("diverged",)
                run["wandb"].finish()
            if run["tb"] is not None:
                hp = {"method": rec["method"], "seed": rec["seed"], "setting": rec.get("setting", self.setting),
                      **{k: rec[k] for k in ("dataset", "model", "shift", "severity") if k in rec},
                      **{k: v for k, v in (rec.get("hparams") or {}).items() if isinstance(v, (int, float, str))},
                      "diverged": diverged}
                finite = {f"summary/{k}": v for k, v in summary.items() if math.isfinite(v)}
                run["tb"].add_hparams(hp, finite, name="hparams")
                run["tb"].close()

    def job(self, table_rows: list[dict], markdown: str, figure: str | None) -> None:
        """The job's table (every aggregated number) and curves figure, on one more wandb run."""
        if self.mode == "disabled":
            return
        import wandb

        run = wandb.init(project=self.project, id=f"{self.run_id}-summary", name=f"{self.run_id} (table)",
                         group=self.run_id, job_type=f"{self.setting}-summary", dir=self.run_dir, mode=self.mode,
                         config=self.config, tags=[self.setting, "summary"], reinit="create_new",
                         resume="allow" if self.mode == "online" else None)
        if table_rows:
            columns = list(dict.fromkeys(k for r in table_rows for k in r))
            data = [[_cell(r.get(c)) for c in columns] for r in table_rows]
            run.log({"table": wandb.Table(columns=columns, data=data)})
        run.summary["table_markdown"] = markdown
        if figure is not None and os.path.exists(figure):
            run.log({"curves": wandb.Image(figure)})
        run.finish()

    def close(self) -> None:
        """Close whatever is open (a job that stops early leaves its dashboards to be rebuilt on resume)."""
        for run in self._open.values():
            if run["wandb"] is not None:
                run["wandb"].finish()
            if run["tb"] is not None:
                run["tb"].close()
        self._open.clear()


def _cell(v):
    if isinstance(v, (dict, list)):
        import json

        return json.dumps(v, sort_keys=True)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
