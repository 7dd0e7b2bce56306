"""The one results store: ``<results_dir>/<setting>/<run-id>/``.

A run directory holds

- ``config.yaml``     the resolved config;
- ``meta.json``       lossmooth version, git commit, package versions, devices, data provenance
                      (paper data or a stand-in) and every ``# assumed:`` value used;
- ``metrics.jsonl``   one row per (run, evaluation): method, seed, swept numbers, step, metrics;
- ``runs.json``       one row per run (method, seed, numbers, summaries, divergence);
- ``summary.json``    written atomically, last. A directory without it is incomplete: never
                      tabulated.

Every file is written to a temporary name and renamed into place, so a reader never sees half a file.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time

import yaml

SUMMARY = "summary.json"


def atomic_write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(x):
    try:
        import numpy as np

        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            return x.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serializable: {type(x)}")


def config_hash(cfg: dict) -> str:
    """A short stable hash of a resolved config (keys sorted)."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:10]


class RunStore:
    """One run's directory. Create it only after the config and data are validated."""

    def __init__(self, results_dir: str, setting: str, run_id: str):
        self.path = os.path.join(results_dir, setting, run_id)
        self.run_id = run_id

    @staticmethod
    def new_id(cfg: dict) -> str:
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{config_hash(cfg)}"

    def create(self, cfg: dict, meta: dict) -> None:
        os.makedirs(self.path, exist_ok=False)
        atomic_write(os.path.join(self.path, "config.yaml"), yaml.safe_dump(cfg, sort_keys=False))
        write_json(os.path.join(self.path, "meta.json"), meta)

    def append_metrics(self, rows: list[dict]) -> None:
        # appended between chunks; a reader trusts it only once summary.json exists
        with open(os.path.join(self.path, "metrics.jsonl"), "a") as f:
            for r in rows:
                f.write(json.dumps(r, sort_keys=True, default=_jsonable) + "\n")

    def finish(self, runs: list[dict], summary: dict) -> None:
        write_json(os.path.join(self.path, "runs.json"), runs)
        write_json(os.path.join(self.path, SUMMARY), summary)  # last: marks the run complete

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def complete_runs(results_dir: str, setting: str | None = None):
    """Yield (path, meta, runs) for every complete run directory under ``results_dir``."""
    if not os.path.isdir(results_dir):
        return
    for s in sorted(os.listdir(results_dir)):
        sdir = os.path.join(results_dir, s)
        if s.startswith(".") or not os.path.isdir(sdir) or (setting and s != setting):
            continue
        for rid in sorted(os.listdir(sdir)):
            p = os.path.join(sdir, rid)
            if not os.path.exists(os.path.join(p, SUMMARY)):
                continue
            with open(os.path.join(p, "meta.json")) as f:
                meta = json.load(f)
            with open(os.path.join(p, "runs.json")) as f:
                runs = json.load(f)
            yield p, meta, runs


def read_metrics(path: str) -> list[dict]:
    with open(os.path.join(path, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]
