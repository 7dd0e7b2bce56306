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
Every file is strict JSON: a non-finite number is written as the string ``"NaN"``, ``"Infinity"`` or
``"-Infinity"`` and read back as the float (:func:`encode`, :func:`decode`).

A run finishes in an order that a kill at any moment leaves recoverable, never half-done: ``runs.json``,
then the summary under a pending name, then the checkpoints are removed, then the summary is renamed
into place; whoever next reads the directory completes a pending finish (:func:`settle`). A directory
whose files cannot be read (a truncated ``runs.json`` or ``summary.json``, a missing ``meta.json``, a torn
line in ``metrics.jsonl``) is *corrupt*: the readers skip it with one warning line naming it and why.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time

import yaml

from lossmooth.errors import ConfigError

SUMMARY = "summary.json"
PENDING = ".summary.json.pending"  # a summary written, its checkpoints not yet removed (see settle)
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class CorruptRun(Exception):
    """A run directory whose files cannot be read; the message says which file and why."""


def encode(obj):
    """``obj`` with every non-finite float replaced by its string (strict JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    return obj


def decode(obj):
    """The inverse of :func:`encode`: the strings of non-finite numbers back to floats."""
    if isinstance(obj, str) and obj in _NONFINITE:
        return _NONFINITE[obj]
    if isinstance(obj, dict):
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj


def dumps(obj, **kw) -> str:
    """Strict JSON of ``obj`` (numpy scalars and arrays as numbers and lists, non-finite numbers as strings)."""
    return json.dumps(encode(json.loads(json.dumps(obj, default=_jsonable))), allow_nan=False, **kw)


def read_json(path: str):
    """A JSON file written by this module, decoded; :class:`CorruptRun` naming the file if it cannot be read."""
    try:
        with open(path) as f:
            return decode(json.load(f))
    except OSError as e:
        raise CorruptRun(f"{os.path.basename(path)}: {e.strerror or e}") from None
    except ValueError as e:
        raise CorruptRun(f"{os.path.basename(path)} is not valid JSON ({e})") from None


def warn(message: str) -> None:
    print(f"lossmooth: warning: {message}", file=sys.stderr)


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
    atomic_write(path, dumps(obj, indent=1, sort_keys=True) + "\n")


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


# keys that change where and how a run is shown, never its trained numbers (``summaries`` sets the
# windows of summaries computed from the stored curves: a complete run keeps the ones it was made with)
HOST_ONLY = ("results_dir", "progress", "cache_dir", "logger", "devices", "shard", "distributed", "rerun", "run_name",
             "checkpoint_every_s", "summaries", "objective")
CHECKPOINTS = "checkpoints"
# keys added after runs were made, at the value that leaves a run's numbers as they were: a config
# holding one at that value is the same config as one without it
NEUTRAL = {"dense_eval": {"steps": 0, "size": None}, "sequence": {"shifts": [], "replay": "previous"}}


def numbers_config(cfg: dict) -> dict:
    """The part of a resolved config that decides a run's numbers: all but the host-only keys and
    the keys at their neutral value (:data:`NEUTRAL`)."""
    return {k: v for k, v in cfg.items() if k not in HOST_ONLY and not (k in NEUTRAL and v == NEUTRAL[k])}


def run_key(cfg: dict, code: dict | None = None) -> str | None:
    """The identity of a run's numbers: a hash of the resolved config without host-only keys, and of
    the code (git commit). None where the code is not a clean commit (a run then never counts as
    already done: uncommitted edits may change its numbers)."""
    code = code if code is not None else _code()
    if not code.get("commit") or code.get("dirty") is not False:
        return None
    return config_hash({"config": numbers_config(cfg), "commit": code["commit"]})


def _code() -> dict:
    from lossmooth.provenance import git_commit

    return git_commit()


def resume_key(cfg: dict) -> str:
    """:func:`run_key`, or ``<hash of the config without host-only keys>-dirty`` where the code is not a
    clean commit (the same command then still resumes its own killed run)."""
    key = run_key(cfg)
    if key is not None:
        return key
    return config_hash(numbers_config(cfg)) + "-dirty"


def settle(path: str) -> None:
    """Complete a finish a kill interrupted (see the module docstring): a pending summary means the
    run is done; its checkpoints go, then the summary takes its place."""
    pending = os.path.join(path, PENDING)
    if os.path.exists(pending):
        shutil.rmtree(os.path.join(path, CHECKPOINTS), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):  # another reader settled it first
            os.replace(pending, os.path.join(path, SUMMARY))


def is_complete(path: str) -> bool:
    """The run directory at ``path`` finished (its summary is in place, after :func:`settle`)."""
    settle(path)
    return os.path.exists(os.path.join(path, SUMMARY))


def _matching(results_dir: str, setting: str, key: str):
    """Run directories of ``setting`` whose id ends with ``key``, newest first."""
    sdir = os.path.join(results_dir, setting)
    if not os.path.isdir(sdir):
        return
    for rid in sorted(os.listdir(sdir), reverse=True):
        p = os.path.join(sdir, rid)
        if rid.endswith("-" + key) and not rid.startswith(".") and os.path.isdir(p):
            yield p


def find_resumable(results_dir: str, setting: str, cfg: dict) -> str | None:
    """The newest incomplete run directory of ``cfg`` that holds checkpoints, or None."""
    for p in _matching(results_dir, setting, resume_key(cfg)):
        if not is_complete(p) and os.path.isdir(os.path.join(p, CHECKPOINTS)):
            return p
    return None


def find_orphans(results_dir: str, setting: str, cfg: dict) -> list[str]:
    """Incomplete run directories of ``cfg`` without checkpoints: runs killed before their first
    checkpoint, which hold nothing to resume."""
    return [p for p in _matching(results_dir, setting, resume_key(cfg))
            if not is_complete(p) and not os.path.isdir(os.path.join(p, CHECKPOINTS))]


def find_complete(results_dir: str, setting: str, key: str | None) -> str | None:
    """The newest readable complete run directory of ``setting`` with run key ``key`` (None if there
    is none)."""
    if key is None:
        return None
    for p in _matching(results_dir, setting, key):
        if is_complete(p):
            try:
                read_run(p)
            except CorruptRun:
                continue
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


def read_run(path: str) -> tuple[dict, list[dict], dict]:
    """``(meta, runs, summary)`` of a complete run directory; :class:`CorruptRun` if any is unreadable
    or malformed."""
    meta, runs, summary = (read_json(os.path.join(path, n)) for n in ("meta.json", "runs.json", SUMMARY))
    if not isinstance(meta, dict) or not isinstance(summary, dict) or not summary.get("complete"):
        raise CorruptRun("meta.json or summary.json is not a run's record")
    if not isinstance(runs, list) or not all(isinstance(r, dict) and "summary" in r and "method" in r for r in runs):
        raise CorruptRun("runs.json does not hold one record per run")
    return meta, runs, summary


def run_states(results_dir: str, setting: str | None = None) -> list[dict]:
    """Every run directory: setting, id, state (complete / diverged / incomplete / corrupt) and counts;
    a corrupt directory's ``reason`` says which file and why."""
    out = []
    for s, rid, p in run_dirs(results_dir, setting):
        row = {"setting": s, "run_id": rid, "path": p, "state": "incomplete", "runs": None, "diverged": 0}
        if is_complete(p):
            try:
                _, runs, _ = read_run(p)
                read_metrics(p)
            except CorruptRun as e:
                row.update(state="corrupt", reason=str(e))
                out.append(row)
                continue
            div = sum(1 for r in runs if r.get("diverged_step", -1) >= 0)
            row.update(state="diverged" if div else "complete", runs=len(runs), diverged=div,
                       methods=sorted({str(r.get("method")) for r in runs}))
        else:
            try:
                with open(os.path.join(p, "metrics.jsonl")) as f:
                    row["metric_rows"] = sum(1 for line in f if line.strip())
            except OSError:
                row["metric_rows"] = 0
            row["resumable"] = os.path.isdir(os.path.join(p, CHECKPOINTS))
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
    def open_or_create(cls, cfg: dict, setting: str, meta: dict, say=print) -> "RunStore":
        """Under this config's :class:`ConfigLock`: the incomplete run directory of this config with
        checkpoints (a killed or preempted run: resumed, its metric rows cut back to its newest
        checkpoint), else a new one. A run of this config killed before its first checkpoint left a
        directory with nothing to resume: it is removed (``say`` tells which) and the run starts
        anew. Raises :class:`NothingToDo` where another process holds the lock, or where the config
        finished (same code) while this process was starting."""
        lock = ConfigLock(cfg["results_dir"], setting, resume_key(cfg))
        if not lock.acquire():
            raise NothingToDo(f"{setting}: this config is running in another process right now "
                              f"({lock.path} is locked); nothing to do here")
        try:
            done = None if cfg.get("rerun", False) else find_complete(cfg["results_dir"], setting, run_key(cfg))
            if done is not None:
                raise NothingToDo(f"{setting} run already complete (same config, same code): {done}; "
                                  "rerun=true runs it again", complete=done)
            for orphan in find_orphans(cfg["results_dir"], setting, cfg):
                say(f"lossmooth: removing {orphan}: a run of this config killed before its first checkpoint "
                    "(nothing to resume); starting it anew")
                shutil.rmtree(orphan, ignore_errors=True)
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
    previous_wall_s = 0.0  # wall time of the processes that ran this run before (resumed runs)

    def release(self) -> None:
        """Drop this config's lock (the run is finished, discarded or stopped)."""
        if self.lock is not None:
            self.lock.release()

    def checkpoints(self, cfg: dict, started: float | None = None):
        """This run's :class:`lossmooth.core.engine.Checkpoints`; on a resumed run, metrics.jsonl is
        first cut back to the rows its newest checkpoint had seen, and the wall time of the earlier
        processes (up to that checkpoint) is read back. ``started``: this process's start (time.time())."""
        from lossmooth.core.engine import Checkpoints

        every = cfg.get("checkpoint_every_s", 60.0)
        if isinstance(every, bool) or not isinstance(every, (int, float)) or every < 0:
            raise ConfigError(f"checkpoint_every_s: must be a number >= 0 (0: after every chunk), got {every!r}")
        started = time.time() if started is None else started

        def marker():
            return {"metric_rows": self.metric_rows(), "wall_s": self.previous_wall_s + time.time() - started}

        ck = Checkpoints(os.path.join(self.path, CHECKPOINTS), marker, float(every))
        if self.resumed:
            markers = ck.markers()
            newest = max(markers, key=lambda m: m["metric_rows"], default={"metric_rows": 0})
            self.truncate_metrics(newest["metric_rows"])
            self.previous_wall_s = float(max([m.get("wall_s", 0.0) for m in markers] or [0.0]))
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
                f.write(dumps(r, sort_keys=True) + "\n")

    def finish(self, runs: list[dict], summary: dict) -> None:
        """``runs.json``, the summary (pending), no checkpoints, the summary in place: in this order
        (see the module docstring)."""
        write_json(os.path.join(self.path, "runs.json"), runs)
        write_json(os.path.join(self.path, PENDING), summary)
        settle(self.path)

    def discard(self) -> None:
        """Remove this run's directory (bad input found late) and its lock file, so nothing is left."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self.lock is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.lock.path)
                os.rmdir(os.path.dirname(self.lock.path))  # only when empty


def complete_runs(results_dir: str, setting: str | None = None, on_corrupt=None):
    """Yield (path, meta, runs) for every readable complete run directory under ``results_dir``; of
    several complete directories of one run key (``rerun=true``), only the newest, so no run counts
    twice. A corrupt directory is skipped with one warning line (``on_corrupt(path, reason)``; default:
    a ``lossmooth: warning:`` line on stderr)."""
    on_corrupt = on_corrupt or (lambda path, why: warn(f"skipping {path}: {why}"))
    newest = {}
    for s, rid, p in run_dirs(results_dir, setting):
        if is_complete(p):
            try:
                meta, runs, _ = read_run(p)
            except CorruptRun as e:
                on_corrupt(p, str(e))
                continue
            newest[(s, rid.split("-", 2)[-1])] = (p, meta, runs)  # run ids are <date>-<time>-<key>, by time
    yield from newest.values()


def read_metrics(path: str) -> list[dict]:
    """Every row of ``metrics.jsonl`` (decoded); :class:`CorruptRun` on a torn line."""
    rows = []
    try:
        with open(os.path.join(path, "metrics.jsonl")) as f:
            for n, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        rows.append(decode(json.loads(line)))
                    except ValueError:
                        raise CorruptRun(f"metrics.jsonl line {n} is not valid JSON (a torn write)") from None
    except OSError as e:
        raise CorruptRun(f"metrics.jsonl: {e.strerror or e}") from None
    return rows
