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
then the summary under a pending name, then the summary is renamed into place, then the checkpoints
are removed (a run with a summary, pending or in place, never resumes from them); whoever next reads the directory completes a pending finish where the folder takes writes
(:func:`settle`); where it does not (a read-only copy), the pending summary is read as the summary and
nothing is changed. A directory whose files cannot be read (a truncated ``runs.json`` or ``summary.json``,
a missing ``meta.json``, a ``config.yaml`` that is not YAML, a torn last line in ``metrics.jsonl``) is
*corrupt*: every reader (``table``, ``plot``, ``status``) skips it with one warning line naming the file.

No command deletes a directory that holds results: a run directory of a config that has nothing to
resume is moved aside into ``<results_dir>/<setting>/.quarantine/`` (:func:`quarantine`), and a finished
run whose ``summary.json`` went missing gets it rebuilt from its ``runs.json`` (:func:`refinish`).
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

from lossmooth.core import yamlio
from lossmooth.errors import ConfigError

SUMMARY = "summary.json"
PENDING = ".summary.json.pending"  # a summary written, its checkpoints not yet removed (see settle)
QUARANTINE = ".quarantine"  # run directories moved aside, never deleted (see quarantine)
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


def loads(text: str):
    """Strict JSON ``text`` decoded (:func:`decode`); the walk is skipped where the text holds no
    non-finite number's string (most metric rows: reading a results folder parses millions of values)."""
    obj = json.loads(text)
    return decode(obj) if ('"NaN"' in text or 'Infinity"' in text) else obj


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
DATA_IDENTITY = ("dataset_sha256", "ref_scores")  # meta.json's data fields that name the data itself


def data_identity(meta: dict) -> dict:
    """The fields of a run's ``meta["data"]`` that name its data (:data:`DATA_IDENTITY`), as JSON
    stores them."""
    data = meta.get("data") or {}
    return json.loads(dumps({k: data[k] for k in DATA_IDENTITY if k in data}))


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


def settle(path: str) -> bool:
    """Complete a finish a kill interrupted (see the module docstring): a pending summary means the
    run is done; it takes its place, then the checkpoints go (also those a kill between the two
    left beside a summary). Returns whether the summary is in place afterwards. A folder that refuses
    the writes (read-only, a network filesystem losing the rename) keeps its pending summary and its
    checkpoints, and False comes back: nothing raises, nothing is removed."""
    pending, summary = os.path.join(path, PENDING), os.path.join(path, SUMMARY)
    if not os.path.exists(pending):
        done = os.path.exists(summary)
        if done and os.path.isdir(os.path.join(path, CHECKPOINTS)) and os.access(path, os.W_OK):
            shutil.rmtree(os.path.join(path, CHECKPOINTS), ignore_errors=True)
        return done
    if not os.access(path, os.W_OK):
        return False
    try:
        os.replace(pending, summary)
    except FileNotFoundError:  # another reader settled it first
        pass
    except OSError:
        return False
    shutil.rmtree(os.path.join(path, CHECKPOINTS), ignore_errors=True)
    return os.path.exists(summary)


def is_complete(path: str) -> bool:
    """The run directory at ``path`` finished: its summary is in place (after :func:`settle`), or it
    is pending in a folder that could not be written (:func:`summary_path` reads it there)."""
    return settle(path) or os.path.exists(os.path.join(path, PENDING))


def summary_path(path: str) -> str:
    """The file holding a complete run's summary: ``summary.json``, or the pending one where the
    finish could not be settled (a read-only folder)."""
    done = os.path.join(path, SUMMARY)
    return done if os.path.exists(done) or not os.path.exists(os.path.join(path, PENDING)) else \
        os.path.join(path, PENDING)


def finished_without_summary(path: str) -> bool:
    """A run that finished (its ``runs.json`` is written) and has nothing to resume (no checkpoints),
    but whose summary is gone, neither in place nor pending: removed by hand or lost by a copy."""
    return (os.path.exists(os.path.join(path, "runs.json")) and not os.path.isdir(os.path.join(path, CHECKPOINTS))
            and not os.path.exists(os.path.join(path, SUMMARY)) and not os.path.exists(os.path.join(path, PENDING)))


def rebuilt_summary(path: str) -> dict:
    """The summary of a finished run whose ``summary.json`` went missing, from what it kept: its
    ``runs.json`` (the runs and methods), ``meta.json`` (stand-in data or not), ``config.yaml`` (the
    seeds) and a whole ``metrics.jsonl``. :class:`CorruptRun` naming the file where one is missing or
    unreadable (then nothing can be rebuilt)."""
    meta = read_json(os.path.join(path, "meta.json"))
    runs = read_json(os.path.join(path, "runs.json"))
    if not isinstance(meta, dict):
        raise CorruptRun("meta.json is not a run's record")
    if not isinstance(runs, list) or not runs or not all(isinstance(r, dict) and "summary" in r and "method" in r
                                                        for r in runs):
        raise CorruptRun("runs.json does not hold one record per run")
    cfg = read_config(path)
    if not os.path.exists(os.path.join(path, "metrics.jsonl")):
        raise CorruptRun("metrics.jsonl is missing")
    check_metrics(path)
    settings = {r.get("setting") for r in runs}
    return {"run_id": os.path.basename(path), "setting": settings.pop() if len(settings) == 1 else None,
            "complete": True, "runs": len(runs), "methods": list(dict.fromkeys(str(r["method"]) for r in runs)),
            "seeds": cfg.get("num_seeds"), "stand_in": meta.get("stand_in", True),
            "rebuilt": "summary.json was missing; rebuilt from runs.json (wall time and memory peaks lost)"}


def refinish(path: str) -> dict:
    """Write the summary of a finished run whose ``summary.json`` went missing (:func:`rebuilt_summary`)
    in the finish's order (pending, then in place); return it. :class:`CorruptRun` naming the file
    where it cannot be rebuilt; an ``OSError`` where the folder takes no writes."""
    summary = rebuilt_summary(path)
    write_json(os.path.join(path, PENDING), summary)
    if not settle(path):
        raise OSError(f"cannot rename {PENDING} to {SUMMARY} in {path}")
    return summary


def quarantine(path: str) -> str:
    """Move the run directory at ``path`` aside into ``<results_dir>/<setting>/.quarantine/`` (one
    rename: the files are kept whole, and no reader sees the directory any more); return where it went.
    The name gets a numbered suffix where an earlier directory of that name was moved aside."""
    folder = os.path.join(os.path.dirname(path), QUARANTINE)
    os.makedirs(folder, exist_ok=True)
    dest, n = os.path.join(folder, os.path.basename(path)), 1
    while os.path.exists(dest):
        dest, n = os.path.join(folder, f"{os.path.basename(path)}.{n}"), n + 1
    os.replace(path, dest)
    return dest


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
    """Incomplete run directories of ``cfg`` without checkpoints and without a finished run's
    ``runs.json``: runs killed before their first checkpoint, which hold nothing to resume."""
    return [p for p in _matching(results_dir, setting, resume_key(cfg))
            if not is_complete(p) and not os.path.isdir(os.path.join(p, CHECKPOINTS))
            and not finished_without_summary(p)]


def find_unsummarized(results_dir: str, setting: str, cfg: dict) -> list[str]:
    """Run directories of ``cfg`` that finished but lost their summary (:func:`finished_without_summary`)."""
    return [p for p in _matching(results_dir, setting, resume_key(cfg)) if finished_without_summary(p)]


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
    meta, runs, summary = (read_json(p) for p in (os.path.join(path, "meta.json"), os.path.join(path, "runs.json"),
                                                  summary_path(path)))
    if not isinstance(meta, dict) or not isinstance(summary, dict) or not summary.get("complete"):
        raise CorruptRun("meta.json or summary.json is not a run's record")
    if not isinstance(runs, list) or not all(isinstance(r, dict) and "summary" in r and "method" in r for r in runs):
        raise CorruptRun("runs.json does not hold one record per run")
    return meta, runs, summary


def read_config(path: str) -> dict:
    """A run directory's ``config.yaml``; :class:`CorruptRun` naming it where it is missing or not a
    YAML mapping."""
    try:
        with open(os.path.join(path, "config.yaml")) as f:
            cfg = yamlio.load(f)
    except OSError as e:
        raise CorruptRun(f"config.yaml: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise CorruptRun(f"config.yaml is not YAML ({' '.join(str(e).split())})") from None
    if not isinstance(cfg, dict):
        raise CorruptRun("config.yaml is not a YAML mapping of the run's config")
    return cfg


def check_metrics(path: str) -> None:
    """``metrics.jsonl`` is whole: it ends with a line break and its last line is JSON (what a write cut
    by a kill or a full disk breaks); :class:`CorruptRun` naming it otherwise. Reads the file's end only;
    a missing file is not a torn one (the tables need only ``runs.json``; a plot says it has nothing to
    draw)."""
    name = os.path.join(path, "metrics.jsonl")
    if not os.path.exists(name):
        return
    try:
        with open(name, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - (1 << 16)))
            tail = f.read()
    except OSError as e:
        raise CorruptRun(f"metrics.jsonl: {e.strerror or e}") from None
    if not tail:
        return
    last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        json.loads(last)
        whole = tail.endswith(b"\n")
    except ValueError:
        whole = False
    if not whole:
        raise CorruptRun("metrics.jsonl's last line is cut (a torn write)")


def check_readable(path: str) -> tuple[dict, list[dict], dict]:
    """:func:`read_run`, and the files the readers open later checked too (``config.yaml`` is YAML,
    ``metrics.jsonl`` has no torn last line): one rule for every reader. :class:`CorruptRun` naming
    the file."""
    out = read_run(path)
    read_config(path)
    check_metrics(path)
    return out


def run_states(results_dir: str, setting: str | None = None, on_corrupt=None) -> list[dict]:
    """Every run directory: setting, id, state (complete / diverged / incomplete / corrupt) and counts
    (``diverged``: runs that diverged; ``source_diverged``: runs built on a diverged source phase);
    a corrupt directory's ``reason`` says which file and why, and ``on_corrupt(path, reason)`` hears
    of it (default: the readers' one warning line). ``pending``: a finished run whose summary is
    still pending because the folder takes no writes (reported, not settled); ``unsummarized``: a
    finished run whose summary is gone (``lossmooth run`` with its config rebuilds it)."""
    on_corrupt = on_corrupt or (lambda path, why: warn(f"skipping {path}: {why}"))
    out = []
    for s, rid, p in run_dirs(results_dir, setting):
        row = {"setting": s, "run_id": rid, "path": p, "state": "incomplete", "runs": None, "diverged": 0,
               "source_diverged": 0}
        if is_complete(p):
            try:
                _, runs, _ = check_readable(p)
            except CorruptRun as e:
                row.update(state="corrupt", reason=str(e))
                on_corrupt(p, str(e))
                out.append(row)
                continue
            div = sum(1 for r in runs if r.get("diverged_step", -1) >= 0)
            on_bad = sum(1 for r in runs if r.get("source_diverged"))
            row.update(state="diverged" if div or on_bad else "complete", runs=len(runs), diverged=div,
                       source_diverged=on_bad, methods=sorted({str(r.get("method")) for r in runs}),
                       pending=not os.path.exists(os.path.join(p, SUMMARY)))
        else:
            row["unsummarized"] = finished_without_summary(p)
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


def _same_data(path: str, meta: dict) -> None:
    """Refuse to resume the run at ``path`` on other data than its checkpoints were trained on (e.g. a
    dataset collected again, which is not bit-reproducible): its rows would mix two datasets."""
    try:
        had = data_identity(read_json(os.path.join(path, "meta.json")) or {})
    except CorruptRun:
        return  # a meta.json that cannot be read names no data to compare
    now = data_identity(meta)
    differ = [k for k in DATA_IDENTITY if k in had and k in now and had[k] != now[k]]
    if differ:
        k = differ[0]
        raise ConfigError(f"{path}: its checkpoints were made on data with {k} {had[k]}, this process loaded "
                          f"{now[k]}: put that data back, or move the directory aside to run anew on this data")


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
            for p in find_unsummarized(cfg["results_dir"], setting, cfg):
                try:
                    refinish(p)
                except CorruptRun as e:
                    raise ConfigError(f"{p}: a finished run (runs.json written) lost its summary.json and it "
                                      f"cannot be rebuilt: {e}; restore the file or move the directory away") from None
                say(f"lossmooth: {p}: summary.json was missing; rebuilt it from runs.json (the run had finished)")
            done = None if cfg.get("rerun", False) else find_complete(cfg["results_dir"], setting, run_key(cfg))
            if done is not None:
                raise NothingToDo(f"{setting} run already complete (same config, same code): {done}; "
                                  "rerun=true runs it again", complete=done)
            for orphan in find_orphans(cfg["results_dir"], setting, cfg):
                moved = quarantine(orphan)
                say(f"lossmooth: moved {orphan} aside to {moved}: a run of this config killed before its first "
                    "checkpoint (nothing to resume); starting it anew")
            found = find_resumable(cfg["results_dir"], setting, cfg)
            if found is None:
                rs = cls(cfg["results_dir"], setting, cls.new_id(cfg))
                rs.create(cfg, meta)
            else:
                _same_data(found, meta)
                rs = cls(cfg["results_dir"], setting, os.path.basename(found))
                rs.resumed = True
                say(f"lossmooth: resuming {found} from its checkpoints")
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
        if not settle(self.path):
            raise OSError(f"the run finished, but {self.path} refused renaming {PENDING} to {SUMMARY}; its "
                          "results are whole: any later command in a writable folder settles it")

    def discard(self) -> None:
        """Remove this run's directory (bad input found late) and its lock file, so nothing is left;
        a directory that already holds metric rows is moved aside instead (:func:`quarantine`):
        results are never deleted."""
        if self.metric_rows():
            warn(f"moved {self.path} aside to {quarantine(self.path)}: it holds metric rows")
        else:
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
                meta, runs, _ = check_readable(p)
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
                        rows.append(loads(line))
                    except ValueError:
                        raise CorruptRun(f"metrics.jsonl line {n} is not valid JSON (a torn write)") from None
    except OSError as e:
        raise CorruptRun(f"metrics.jsonl: {e.strerror or e}") from None
    return rows
