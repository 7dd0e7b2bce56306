"""Host-side pieces every experiment runner shares: run labels, the progress bar between compiled
chunks, and the warning for a run whose metrics turn non-finite."""
from __future__ import annotations

import numpy as np

from lossmooth.core import engine


def run_label(r: dict, swept: list[str]) -> str:
    nums = ",".join(f"{k}={r['hparams'][k]:g}" for k in swept if k in r["hparams"])
    return f"{r['name']}" + (f"[{nums}]" if nums else "") + f"/seed{r['seed']}"


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


def progress_bar(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="chunks", unit="chunk", dynamic_ncols=True)


def record_run(cfg: dict, setting: str, meta: dict, body) -> str:
    """Open this config's run directory (a killed or preempted run of it resumes:
    :meth:`RunStore.open_or_create`), run ``body(rs, loggers, checkpoints) -> (rows, summary)`` and
    finish it; return the run directory.

    SIGTERM asks the checkpoints to save after the current chunk and stop. Any error closes the
    loggers; a :class:`ConfigError` (bad input found late, e.g. a dataset that does not fit the task)
    on a new run also discards its directory, so nothing half-written is left, unless the error says
    the work so far is worth resuming (``keep_run``: a judge endpoint that fails after training)."""
    from lossmooth.errors import ConfigError
    from lossmooth.loggers import Loggers
    from lossmooth.results import store

    rs = store.RunStore.open_or_create(cfg, setting, meta)
    loggers = None
    restore_sigterm = None
    try:
        ckpt = rs.checkpoints(cfg)
        restore_sigterm = stop_on_sigterm(ckpt)
        loggers = Loggers(cfg.get("logger", {}), rs.path, rs.run_id, cfg)
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
    """From now on SIGTERM (a cluster's preemption) asks ``checkpoints`` to save after the current
    chunk and stop (:class:`lossmooth.core.engine.Preempted`). Returns the function that puts the
    previous handler back (a no-op outside the main thread, where signals cannot be handled)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        checkpoints.stop_requested = True

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)
