"""What the shared runner keeps of a run besides its curves: the run directory's life (open or resume,
finish, discard on late bad input, SIGTERM), the pairing key of each run, and the host-side pieces
between compiled chunks (progress bar, the warning for a run whose metrics turn non-finite)."""
from __future__ import annotations

import copy
import signal
import threading
import time

import numpy as np

from lossmooth.core import engine
from lossmooth.errors import ConfigError
from lossmooth.results import store
from lossmooth.runner.loggers import Loggers

# config keys that do not change what a source model and a data order are for a given seed (the
# pairing context; runs pair seed by seed, so the first seed and the seed count are not part of it)
NOT_CONTEXT = store.HOST_ONLY + ("method", "schedule", "sweep", "num_seeds", "seed")


def pair_key(cfg: dict, setting, line: str = "", data: dict | None = None) -> str:
    """Runs with equal keys adapt from the same source models with the same data order, seed by
    seed: the paired comparisons of the tables. The key hashes the resolved config without the
    methods, the swept numbers, the seeds, the host-only keys and the setting's default
    learning rate (``Setting.lr_key``: each run pairs with the hard switch at its own rate); of a
    setting's lines (``Setting.line_key``, online RL's algorithms) only this line's entry counts; ``data``
    (the ``identity`` of :meth:`Setting.describe`: e.g. a dataset's content hash) joins the key where a
    setting names it, so runs on different data never pair however equal their configs."""
    drop = NOT_CONTEXT + ((setting.line_key,) if setting.line_key else ())
    ctx = {k: copy.deepcopy(v) for k, v in store.numbers_config(cfg).items() if k not in drop}
    if setting.lr_key:
        *path, last = setting.lr_key.split(".")
        node = ctx
        for p in path:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    if setting.line_key and setting.line_key in cfg:
        ctx[setting.line_key] = {line: cfg[setting.line_key][line]}
    if data:
        ctx["_data_identity"] = data
    return store.config_hash(ctx)


def check_finite(m: dict, labels: list[str], bar) -> None:
    bad = engine.first_nonfinite({k: np.asarray(v)[: len(labels)] for k, v in m.items()})
    for i in np.flatnonzero(bad >= 0):
        bar.write(f"lossmooth: warning: {labels[i]} has a non-finite metric (marked diverged)")


class _NoBar:
    def update(self, n=1):
        pass

    def write(self, s):
        print(s)

    def close(self):
        pass


def progress_bar(total: int, enabled: bool, done: int = 0):
    """The chunks' progress bar; ``done``: chunks a resumed run's checkpoints already hold (its
    rate and time left count only the chunks this process runs)."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="chunks", unit="chunk", dynamic_ncols=True)


def record_run(cfg: dict, setting: str, meta: dict, body, started: float | None = None,
               line_key: str | None = None) -> str:
    """Open this config's run directory (a killed or preempted run of it resumes:
    :meth:`RunStore.open_or_create`), run ``body(rs, loggers, checkpoints) -> (rows, summary)`` and
    finish it; return the run directory.

    SIGTERM and SIGINT ask the checkpoints to save after the current chunk and stop. Any error closes the
    loggers; a :class:`ConfigError` (bad input found late, e.g. a dataset that does not fit the task)
    on a new run also discards its directory, so nothing half-written is left, unless the error says
    the work so far is worth resuming (``keep_run``: a judge endpoint that fails after training)."""
    started = time.time() if started is None else started
    rs = store.RunStore.open_or_create(cfg, setting, meta)
    loggers = None
    restore_sigterm = None
    try:
        ckpt = rs.checkpoints(cfg, started)
        restore_sigterm = stop_on_sigterm(ckpt)
        loggers = Loggers(cfg.get("logger", {}), rs.path, rs.run_id, cfg,
                          history=store.read_metrics(rs.path) if rs.resumed and rs.metric_rows() else
                          ([] if rs.resumed else None), setting=setting, stand_in=meta.get("stand_in", True),
                          line_key=line_key)
        rows, summary = body(rs, loggers, ckpt)
        rs.finish(rows, summary)
    except BaseException as e:
        if loggers is not None:
            loggers.close()
        if isinstance(e, ConfigError) and not rs.resumed and not getattr(e, "keep_run", False):
            rs.discard()
        raise
    finally:
        if restore_sigterm is not None:
            restore_sigterm()
        rs.release()
    loggers.close()
    return rs.path


def stop_on_sigterm(checkpoints):
    """From now on SIGTERM (a cluster's preemption) and SIGINT (Ctrl-C) ask ``checkpoints`` to save
    after the current chunk and stop (:class:`lossmooth.core.engine.Preempted`); a second SIGINT
    stops at once (KeyboardInterrupt: the checkpoints already saved stay). Returns the function that
    puts the previous handlers back (a no-op outside the main thread, where signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        if signum == signal.SIGINT and checkpoints.stop_requested:
            raise KeyboardInterrupt
        checkpoints.stop_requested = signum
        if signum == signal.SIGINT:
            print("lossmooth: stopping after the current chunk (Ctrl-C again stops at once)", flush=True)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    return lambda: [signal.signal(s, h) for s, h in previous.items()]
