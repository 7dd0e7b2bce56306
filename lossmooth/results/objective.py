"""What one job returns to a sweeper that optimizes (``hydra/sweeper=optuna``): one summary of its run.

With ``objective.metric = m`` and ``objective.method = M``, a job returns the mean over seeds of the
paired difference ``m(M) - m(hard switch)`` (same seed, same source model, same data order), as its
table's "paired difference" block shows it. Whether larger is better depends on ``m``
(:func:`lossmooth.results.metrics.higher_is_better`): set ``hydra.sweeper.direction`` to match. The
trained numbers do not depend on the objective (``objective`` is a host-only key): each trial is an
ordinary run directory that ``lossmooth table`` reads.
"""
from __future__ import annotations

import math
import os

from lossmooth.errors import ConfigError
from lossmooth.results import aggregate as agg
from lossmooth.results import metrics

# the summaries of every kind's standard curves, the field's and the dense evaluation's
KNOWN = tuple(dict.fromkeys(n for family in ("curve", "field", "dense") for kind in metrics.KINDS
                            for n in metrics.names(family, kind)))


def parse(cfg: dict) -> tuple[str, str] | None:
    """``(metric, method)`` of the config's ``objective`` (None: the job returns its run folder); the
    method must be in the run beside the hard switch. One line on anything else."""
    o = cfg.get("objective") or {}
    if not isinstance(o, dict):
        raise ConfigError(f"objective: must be a mapping with metric and method, got {o!r}")
    unknown = sorted(set(o) - {"metric", "method"})
    if unknown:
        raise ConfigError(f"objective.{unknown[0]}: unknown key (objective has metric and method)")
    metric, method = o.get("metric"), o.get("method")
    if metric is None:
        if method is not None:
            raise ConfigError("objective.metric: set it too (e.g. objective.metric=wc_acc), or drop objective.method")
        return None
    if metric not in KNOWN:
        raise ConfigError(f"objective.metric: unknown summary '{metric}'; choose one of {', '.join(KNOWN)}")
    methods = list(cfg.get("method") or {})
    if agg.BASELINE not in methods:
        raise ConfigError(f"objective: the paired difference needs the {agg.BASELINE} in the run; "
                          f"add it (method=[{agg.BASELINE},...])")
    others = [m for m in methods if m != agg.BASELINE]
    if method is None:
        if len(others) != 1:
            raise ConfigError(f"objective.method: the run has {len(others)} methods beside the {agg.BASELINE}; "
                              f"name one ({', '.join(others) or 'none'})")
        method = others[0]
    elif method not in others:
        raise ConfigError(f"objective.method: '{method}' is not among the run's methods beside the "
                          f"{agg.BASELINE} ({', '.join(others) or 'none'})")
    return metric, method


def value(run_dir: str, metric: str, method: str, rows: list[dict] | None = None) -> float:
    """The mean paired difference ``metric(method) - metric(hard switch)`` over the run's seeds.

    Runs swept inside the job (``+sweep.*``) give one difference per swept point: the job returns the
    best of them in the metric's direction, so a trial scores its best point. NaN where no pair
    exists (every run of the method diverged): the sweeper records the trial as failed. ``rows``: the
    run's rows when the caller has already read them (the app, for the run's table).
    """
    if rows is None:
        rows = agg.collect(os.path.dirname(os.path.dirname(run_dir)), filters={"run_dir": run_dir})
    diffs = [d for d in agg.paired_differences(rows, metrics=[metric]) if d["method"] == method]
    values = [d[f"{metric}_diff"] for d in diffs if f"{metric}_diff" in d]
    if not values:
        return math.nan
    return float(max(values) if metrics.higher_is_better(metric, metrics.kind_of(rows)) else min(values))
