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

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time

import yaml

from lossmooth.errors import ConfigError

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


# keys that change where and how a run is shown, never its numbers
HOST_ONLY = ("results_dir", "progress", "cache_dir", "logger", "devices", "rerun", "run_name",
             "checkpoint_every_s")
CHECKPOINTS = "checkpoints"


def run_key(cfg: dict, code: dict | None = None) -> str | None:
    """The identity of a run's numbers: a hash of the resolved config without host-only keys, and of
    the code (git commit). None where the code is not a clean commit (a run then never counts as
    already done: uncommitted edits may change its numbers)."""
    code = code if code is not None else _code()
    if not code.get("commit") or code.get("dirty") is not False:
        return None
    body = {k: v for k, v in cfg.items() if k not in HOST_ONLY}
    return config_hash({"config": body, "commit": code["commit"]})


def _code() -> dict:
    from lossmooth.provenance import git_commit

    return git_commit()


def resume_key(cfg: dict) -> str:
    """:func:`run_key`, or ``<hash of the config without host-only keys>-dirty`` where the code is not a
    clean commit (the same command then still resumes its own killed run)."""
    key = run_key(cfg)
    if key is not None:
        return key
    return config_hash({k: v for k, v in cfg.items() if k not in HOST_ONLY}) + "-dirty"


def find_resumable(results_dir: str, setting: str, cfg: dict) -> str | None:
    """The newest incomplete run directory of ``cfg`` that holds checkpoints, or None."""
    key = resume_key(cfg)
    sdir = os.path.join(results_dir, setting)
    if not os.path.isdir(sdir):
        return None
    for rid in sorted(os.listdir(sdir), reverse=True):
        p = os.path.join(sdir, rid)
        if (rid.endswith("-" + key) and not os.path.exists(os.path.join(p, SUMMARY))
                and os.path.isdir(os.path.join(p, CHECKPOINTS))):
            return p
    return None


def find_complete(results_dir: str, setting: str, key: str | None) -> str | None:
    """The complete run directory of ``setting`` with run key ``key`` (None if there is none)."""
    if key is None:
        return None
    sdir = os.path.join(results_dir, setting)
    if not os.path.isdir(sdir):
        return None
    for rid in sorted(os.listdir(sdir), reverse=True):
        p = os.path.join(sdir, rid)
        if rid.endswith("-" + key) and os.path.exists(os.path.join(p, SUMMARY)):
            return p
    return None


def run_dirs(results_dir: str, setting: str | None = None):
    """Yield (setting, run id, path) for every run directory under ``results_dir``."""
    if not os.path.isdir(results_dir):
        return
    for s in sorted(os.listdir(results_dir)):
        sdir = os.path.join(results_dir, s)
        if s.startswith(".") or not os.path.isdir(sdir) or (setting and s != setting):
            continue
        for rid in sorted(os.listdir(sdir)):
            p = os.path.join(sdir, rid)
            if not rid.startswith(".") and os.path.isdir(p):
                yield s, rid, p


def run_states(results_dir: str, setting: str | None = None) -> list[dict]:
    """Every run directory: setting, id, state (complete / incomplete / diverged) and counts."""
    out = []
    for s, rid, p in run_dirs(results_dir, setting):
        row = {"setting": s, "run_id": rid, "path": p, "state": "incomplete", "runs": None, "diverged": 0}
        if os.path.exists(os.path.join(p, SUMMARY)):
            try:
                with open(os.path.join(p, "runs.json")) as f:
                    runs = json.load(f)
            except (OSError, ValueError):
                row["state"] = "unreadable"
                out.append(row)
                continue
            div = sum(1 for r in runs if r.get("diverged_step", -1) >= 0)
            row.update(state="diverged" if div else "complete", runs=len(runs), diverged=div,
                       methods=sorted({r.get("method") for r in runs}))
        else:
            try:
                with open(os.path.join(p, "metrics.jsonl")) as f:
                    row["metric_rows"] = sum(1 for line in f if line.strip())
            except OSError:
                row["metric_rows"] = 0
        out.append(row)
    return out


class NothingToDo(Exception):
    """This config needs no work here: it is complete (``complete`` is its directory) or another
    process is running it right now (``complete`` is None)."""

    def __init__(self, message: str, complete: str | None = None):
        super().__init__(message)
        self.complete = complete


class ConfigLock:
    """An exclusive, non-blocking ``flock`` on ``<results_dir>/<setting>/.locks/<resume key>.lock``,
    held while a process creates, resumes or runs that config's directory, so two sweeps writing one
    results folder never run (or resume) the same config at once. The kernel drops the lock when the
    process dies, however it dies, so a killed run never leaves a stale lock."""

    def __init__(self, results_dir: str, setting: str, key: str):
        self.path = os.path.join(results_dir, setting, ".locks", key + ".lock")
        self._fd = None

    def acquire(self) -> bool:
        import fcntl

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


class RunStore:
    """One run's directory. Create it only after the config and data are validated."""

    def __init__(self, results_dir: str, setting: str, run_id: str):
        self.path = os.path.join(results_dir, setting, run_id)
        self.run_id = run_id

    @staticmethod
    def new_id(cfg: dict) -> str:
        """``<time>-<resume key>`` (:func:`resume_key`)."""
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{resume_key(cfg)}"

    @classmethod
    def open_or_create(cls, cfg: dict, setting: str, meta: dict) -> "RunStore":
        """Under this config's :class:`ConfigLock`: the incomplete run directory of this config with
        checkpoints (a killed or preempted run: resumed, its metric rows cut back to its newest
        checkpoint), else a new one. Raises :class:`NothingToDo` where another process holds the
        lock, or where the config finished (same code) while this process was starting."""
        lock = ConfigLock(cfg["results_dir"], setting, resume_key(cfg))
        if not lock.acquire():
            raise NothingToDo(f"{setting}: this config is running in another process right now "
                              f"({lock.path} is locked); nothing to do here")
        try:
            done = None if cfg.get("rerun", False) else find_complete(cfg["results_dir"], setting, run_key(cfg))
            if done is not None:
                raise NothingToDo(f"{setting} run already complete (same config, same code): {done}; "
                                  "rerun=true runs it again", complete=done)
            found = find_resumable(cfg["results_dir"], setting, cfg)
            if found is None:
                rs = cls(cfg["results_dir"], setting, cls.new_id(cfg))
                rs.create(cfg, meta)
            else:
                rs = cls(cfg["results_dir"], setting, os.path.basename(found))
                rs.resumed = True
        except BaseException:
            lock.release()
            raise
        rs.lock = lock
        return rs

    resumed = False
    lock = None

    def release(self) -> None:
        """Drop this config's lock (the run is finished, discarded or stopped)."""
        if self.lock is not None:
            self.lock.release()

    def checkpoints(self, cfg: dict):
        """This run's :class:`lossmooth.core.engine.Checkpoints`; on a resumed run, metrics.jsonl is
        first cut back to the rows its newest checkpoint had seen."""
        from lossmooth.core.engine import Checkpoints

        every = cfg.get("checkpoint_every_s", 60.0)
        if isinstance(every, bool) or not isinstance(every, (int, float)) or every < 0:
            raise ConfigError(f"checkpoint_every_s: must be a number >= 0 (0: after every chunk), got {every!r}")
        ck = Checkpoints(os.path.join(self.path, CHECKPOINTS), lambda: {"metric_rows": self.metric_rows()},
                         float(every))
        if self.resumed:
            keep = max([m["metric_rows"] for m in ck.markers()] or [0])
            self.truncate_metrics(keep)
        return ck

    def metric_rows(self) -> int:
        path = os.path.join(self.path, "metrics.jsonl")
        if not os.path.exists(path):
            return 0
        with open(path) as f:
            return sum(1 for line in f if line.strip())

    def truncate_metrics(self, rows: int) -> None:
        path = os.path.join(self.path, "metrics.jsonl")
        if not os.path.exists(path):
            return
        with open(path) as f:
            lines = [line for line in f if line.strip()][:rows]
        atomic_write(path, "".join(lines))

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
        shutil.rmtree(os.path.join(self.path, CHECKPOINTS), ignore_errors=True)

    def discard(self) -> None:
        """Remove this run's directory (bad input found late) and its lock file, so nothing is left."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self.lock is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.lock.path)
                os.rmdir(os.path.dirname(self.lock.path))  # only when empty


def complete_runs(results_dir: str, setting: str | None = None):
    """Yield (path, meta, runs) for every complete run directory under ``results_dir``; of several
    complete directories of one run key (``rerun=true``), only the newest, so no run counts twice."""
    newest = {}
    for s, rid, p in run_dirs(results_dir, setting):
        if os.path.exists(os.path.join(p, SUMMARY)):
            newest[(s, rid.split("-", 2)[-1])] = p  # run ids are <date>-<time>-<key>, sorted by time
    for p in newest.values():
        with open(os.path.join(p, "meta.json")) as f:
            meta = json.load(f)
        with open(os.path.join(p, "runs.json")) as f:
            runs = json.load(f)
        yield p, meta, runs


def read_metrics(path: str) -> list[dict]:
    with open(os.path.join(path, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]
