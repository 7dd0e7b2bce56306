"""Aggregate complete runs into tables: mean over seeds with its 95% Student-t CI and IQM with a 95%
percentile bootstrap CI (descriptive), and paired differences (method minus hard switch, paired by seed
on the same source model) with a 95% Student-t CI and an exact sign-flip p-value
(:mod:`lossmooth.results.inference`, whose calibration ``benchmarks/calibration.py`` measures).

A *row* is one run (method, numbers, seed) read from a run directory's ``runs.json`` together with
its context (setting, data, model, shift, stand-in flag). Rows group by the whole experiment: the
run's ``pair_key`` (a hash of its resolved config without the methods, the swept numbers, the seeds
and the host-only keys) + method + numbers, so runs of different configs are never pooled, however
alike the table's columns look; where two groups differ only in config fields no column shows, the
table names those fields (``context``). A seed is counted once: the same run (experiment, method,
numbers, seed) in several run directories is taken from the newest. Diverged runs are excluded from
the statistics and counted.
"""
from __future__ import annotations

import json
import os

import numpy as np
import yaml

from lossmooth.core import yamlio
from lossmooth.results import inference, store, summaries
from lossmooth.results.metrics import curve_higher, kind_of, source_perplexity

GROUP_KEYS = ("setting", "dataset", "model", "shift", "severity", "method", "hparams")
BASELINE = "hard_switch"
# config keys that never tell two experiments apart in a table (methods, numbers and seeds are columns)
NOT_CONTEXT = store.HOST_ONLY + ("method", "schedule", "sweep", "num_seeds", "seed")


def collect(results_dir: str, setting: str | None = None, filters: dict | None = None,
            run_dirs: set | None = None, progress=None) -> list[dict]:
    """Rows of every complete run under ``results_dir`` matching ``filters`` (``key=value`` on row
    fields, e.g. ``method=loss_smoothing``, ``shift=blur``, ``run_id=...``), each run once; with
    ``run_dirs``, of those run directories only (each run once among them: a table built from exactly
    some runs never loses a row to the same run in another directory). ``progress(i, total, path)`` is
    called before each directory is read."""
    rows = []
    found = list(store.complete_runs(results_dir, setting))
    for i, (path, meta, runs) in enumerate(found):
        if run_dirs is not None and path not in run_dirs:
            continue
        if progress is not None:
            progress(i, len(found), path)
        kept = []
        for r in runs:
            row = dict(r)
            row.update(run_dir=path, stand_in=meta.get("stand_in", True))
            if all(str(row.get(k)) == str(v) for k, v in (filters or {}).items()):
                kept.append(row)
        cfg = None
        if any(isinstance(r.get("judge"), dict) and "pipeline_check" not in r["judge"] for r in kept):
            # runs judged before the flag existed: the model under study served as its own judge
            cfg = _config(path)
            serve = ((cfg.get("judge") or {}).get("kind") == "serve")
            for r in kept:
                if isinstance(r.get("judge"), dict):
                    r["judge"] = {**r["judge"], "pipeline_check": serve}
        try:
            field_metrics(path, kept, cfg)
        except store.CorruptRun as e:  # the run's own summaries stay; only the added ones are missing
            store.warn(f"{path}: the field's metrics cannot be added from its curves: {e}")
        rows += kept
    return once(rows)


def summary_params(cfg: dict) -> tuple[int, int]:
    """(w, beta) of the field's metrics from a run's config (``summaries.window``, ``summaries.lca_beta``)."""
    sp = (cfg or {}).get("summaries") or {}
    return int(sp.get("window", summaries.WINDOW)), int(sp.get("lca_beta", summaries.LCA_BETA))


def field_metrics(run_dir: str, rows: list[dict], cfg: dict | None = None) -> None:
    """Add the field's metrics (min-ACC, WC-ACC, WF^w, WP^w, LCA^beta) to the summaries of rows of a run
    made before they existed, from the run's stored curves and its config's ``summaries`` (the same
    function the runner uses; a run that has them keeps its own); and, for rows made before the
    stability gap was the source curve's (:func:`lossmooth.results.summaries.stability_gap`), rename
    their target-curve dip ``target_dip`` and add the source curve's ``stability_gap`` from the stored
    curves and the config's ``setting.gap_window`` (dense: from ``dense_source_drop``)."""
    for r in rows:
        renamed(r)
    missing = [r for r in rows if not (r.get("sequence") and r.get("switch") == "all")  # its own metrics
               and (not all(m in r.get("summary", {}) for m in summaries.FIELD_METRICS)
                    or "stability_gap" not in r.get("summary", {}))]
    if not missing or not os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
        return
    cfg = _config(run_dir) if cfg is None else cfg
    window, beta = summary_params(cfg)
    gap_window = ((cfg or {}).get("setting") or {}).get("gap_window")
    curves: dict[int, list[dict]] = {}
    for m in store.read_metrics(run_dir):
        if m.get("phase") == "adapt" and "run_index" in m:
            curves.setdefault(m["run_index"], []).append(m)
    for r in missing:
        kind = kind_of([r.get("summary", {})])
        names = r.get("curves") or {}
        target, source = names.get("target", f"target_{kind}"), names.get("source")
        evals = sorted(curves.get(r["run_index"], []), key=lambda m: m["step"])
        if not evals or target not in evals[0]:
            continue  # nothing to compute from (a run without stored curves keeps its summaries)
        a = np.array([m[target] for m in evals], np.float64)
        b = np.array([m[source] for m in evals], np.float64) if source else None
        added = {}
        if not all(m in r["summary"] for m in summaries.FIELD_METRICS):
            added.update(summaries.field_metrics(kind, a, b, window, beta,
                                                   source_perplexity(r.get("curves"), r.get("setting"))))
            r["summary_params"] = {"window": window, "lca_beta": beta}
        if "stability_gap" not in r["summary"] and gap_window is not None:
            steps = np.array([m["step"] for m in evals], np.float64)
            added["stability_gap"] = summaries.stability_gap(steps, a if b is None else b, int(gap_window),
                                                             curve_higher(kind))
        r["summary"] = {**r["summary"], **added}


def renamed(row: dict) -> None:
    """A row made before ``target_dip`` existed: its ``stability_gap`` (then the target curve's dip) is
    renamed ``target_dip`` (dense: ``dense_target_dip``, and ``dense_stability_gap`` = max(0, dense
    source drop)); the source curve's stability gap is added by :func:`field_metrics` from the curves."""
    s = row.get("summary", {})
    if "stability_gap" not in s or "target_dip" in s:
        return
    s = dict(s)
    s["target_dip"] = s.pop("stability_gap")
    if "dense_stability_gap" in s:
        s["dense_target_dip"] = s.pop("dense_stability_gap")
        s["dense_stability_gap"] = max(0.0, float(s["dense_source_drop"]))
    row["summary"] = s


def usable(row: dict) -> bool:
    """A run the statistics take: it did not diverge and was not built on a diverged source phase (both
    are counted apart: ``n_diverged``, ``n_source_diverged``)."""
    return row.get("diverged_step", -1) < 0 and not row.get("source_diverged")


def run_identity(row: dict) -> tuple:
    """What makes a row the same run as another: its experiment, line, method, numbers and seed."""
    return (row.get("setting"), row.get("pair_key"), row.get("model"), row.get("method"),
            json.dumps(row.get("hparams"), sort_keys=True), row.get("seed"))


def once(rows: list[dict]) -> list[dict]:
    """``rows`` with each run once: of the same run in several directories, the newest directory's
    (run ids start with their time)."""
    newest: dict[tuple, dict] = {}
    for r in rows:
        key = run_identity(r)
        if key not in newest or os.path.basename(r["run_dir"]) > os.path.basename(newest[key]["run_dir"]):
            newest[key] = r
    kept = {id(r) for r in newest.values()}
    return [r for r in rows if id(r) in kept]


def group_label(row: dict) -> tuple:
    return tuple(json.dumps(row.get(k), sort_keys=True) if k == "hparams" else row.get(k)
                 for k in GROUP_KEYS) + (row.get("pair_key"),)


def _flat(cfg, prefix="") -> dict:
    out = {}
    for k, v in (cfg or {}).items():
        if not prefix and k in NOT_CONTEXT:
            continue
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v, sort_keys=True)
    return out


def _config(run_dir: str) -> dict:
    try:
        with open(os.path.join(run_dir, "config.yaml")) as f:
            return yamlio.load(f) or {}
    except (OSError, yaml.YAMLError):
        return {}


def contexts(entries: list[dict], rows: list[dict]) -> None:
    """Name, in each entry's ``context``, the config fields that tell apart entries whose table columns
    are equal but whose experiments (``pair_key``) differ; entries alone in their columns get none."""
    by_cols: dict[tuple, set] = {}
    for e in entries:
        cols = tuple(json.dumps(e.get(k), sort_keys=True) for k in GROUP_KEYS if k != "method")
        by_cols.setdefault(cols, set()).add(e.get("pair_key"))
    clashing = {k for s in by_cols.values() if len(s) > 1 for k in s}
    if not clashing:
        return
    configs = {}
    for r in rows:
        if r.get("pair_key") in clashing and r["pair_key"] not in configs:
            configs[r["pair_key"]] = _flat(store.numbers_config(_config(r["run_dir"])))
    for e in entries:
        cols = tuple(json.dumps(e.get(k), sort_keys=True) for k in GROUP_KEYS if k != "method")
        keys = by_cols[cols]
        if len(keys) < 2:
            continue
        mine = configs.get(e.get("pair_key"), {})
        others = [configs.get(k, {}) for k in keys if k != e.get("pair_key")]
        differ = sorted(f for f in set(mine) | {f for o in others for f in o}
                        if any(o.get(f) != mine.get(f) for o in others))
        e["context"] = ", ".join(f"{f}={json.loads(mine[f]) if f in mine else 'unset'}" for f in differ) or \
            f"pair_key={e.get('pair_key')}"


def interval(values: np.ndarray, stat: str, reps: int, seed: int = 0) -> tuple[float, float, float]:
    """(point, lo, hi): the mean over runs with its 95% Student-t CI, or the IQM with a 95% percentile
    bootstrap CI (``reps`` resamples; descriptive at small n) (:mod:`lossmooth.results.inference`)."""
    point, lo, hi = intervals(np.asarray(values, np.float64).reshape(-1, 1), stat, reps, seed)
    return float(point[0]), float(lo[0]), float(hi[0])


def intervals(values: np.ndarray, stat: str, reps: int, seed: int = 0):
    """:func:`interval` for every column of ``values`` (``(runs, cells)``, NaN = missing) at once."""
    if stat == "iqm":
        return inference.bootstrap_interval(values, "iqm", reps, seed)
    return inference.t_interval(values)


def metrics_of(rows: list[dict]) -> list[str]:
    """The summary names present in ``rows`` (accuracy or return summaries), in their order."""
    names: list[str] = []
    for r in rows:
        names += [k for k in r.get("summary", {}) if k not in names]
    return names


def aggregate(rows: list[dict], metrics=None, reps: int = 2000) -> list[dict]:
    """One entry per group: n, n_diverged, and for each metric mean/IQM with CIs."""
    metrics = metrics_of(rows) if metrics is None else metrics
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(group_label(r), []).append(r)
    out = []
    for label, rs in groups.items():
        ok = [r for r in rs if usable(r)]
        on_bad = sum(1 for r in rs if r.get("source_diverged"))
        entry = dict(zip(GROUP_KEYS + ("pair_key",), label), n=len(ok), n_diverged=len(rs) - len(ok) - on_bad,
                     stand_in=any(r.get("stand_in", True) for r in rs))
        if on_bad:
            entry["n_source_diverged"] = on_bad
        if rs[0].get("switch") is not None:  # a sequence's switch (1, 2, ...) or the whole sequence (all)
            entry["switch"] = rs[0]["switch"]
        if any(r.get("ramp_unfinished") for r in rs):
            entry["ramp_unfinished"] = True
        if any((r.get("judge") or {}).get("pipeline_check") for r in rs):
            entry["judge_pipeline_check"] = True
        if rs[0].get("curves"):  # the names the table's labels are made from (lossmooth.results.metrics)
            entry["curves"] = rs[0]["curves"]
        params = {json.dumps(r.get("summary_params"), sort_keys=True) for r in rs if r.get("summary_params")}
        if len(params) == 1:  # the windows of the field's metrics (mixed windows are not shown as one)
            entry.update(json.loads(params.pop()))
        entry["hparams"] = json.loads(entry["hparams"])
        vals = np.array([[r["summary"].get(m, np.nan) for m in metrics] for r in ok],
                        np.float64).reshape(len(ok), len(metrics))
        for stat in ("mean", "iqm"):  # every metric of the group in one call
            p, lo, hi = intervals(vals, stat, reps)
            for k, m in enumerate(metrics):
                entry[f"{m}_{stat}"], entry[f"{m}_{stat}_lo"], entry[f"{m}_{stat}_hi"] = \
                    float(p[k]), float(lo[k]), float(hi[k])
        out.append(entry)
    return out


def paired_differences(rows: list[dict], metrics=None, baseline: str = BASELINE,
                       reps: int = 2000) -> list[dict]:
    """For every non-baseline group: mean of (method - baseline) over seeds paired on ``pair_key``."""
    metrics = metrics_of(rows) if metrics is None else metrics
    out = []
    for g in paired_values(rows, baseline):
        label, rs, pairs = g["label"], g["rows"], g["pairs"]
        entry = dict(zip(GROUP_KEYS + ("pair_key",), label), n_pairs=len(pairs), baseline=baseline)
        if rs[0].get("switch") is not None:
            entry["switch"] = rs[0]["switch"]
        if any(r.get("ramp_unfinished") for r in rs):
            entry["ramp_unfinished"] = True
        if any((r.get("judge") or {}).get("pipeline_check") for r in rs):
            entry["judge_pipeline_check"] = True
        if rs[0].get("curves"):  # the names the table's labels are made from (lossmooth.results.metrics)
            entry["curves"] = rs[0]["curves"]
        entry["hparams"] = json.loads(entry["hparams"])
        # a metric the pairs do not all have (another setting's) is left out
        have = [m for m in metrics if all(m in r["summary"] and m in b["summary"] for r, b in pairs)]
        d = np.array([[r["summary"][m] - b["summary"][m] for m in have] for r, b in pairs],
                     np.float64).reshape(len(pairs), len(have))
        mean, lo, hi = inference.t_interval(d)
        p = inference.sign_flip_p(d)
        few = len(pairs) < inference.MIN_PAIRS  # nothing resolved: no interval, no p-value
        for k, m in enumerate(have):
            entry[f"{m}_diff"] = float(mean[k])
            entry[f"{m}_diff_lo"], entry[f"{m}_diff_hi"] = (np.nan, np.nan) if few else (float(lo[k]), float(hi[k]))
            entry[f"{m}_diff_p"] = float(p[k])
        out.append(entry)
    return out


def paired_samples(rows: list[dict], baseline: str = BASELINE) -> list[dict]:
    """Per paired-difference group (:func:`paired_differences`): metric -> the per-seed differences."""
    out = []
    for e in paired_values(rows, baseline):
        out.append({m: np.array([r["summary"][m] - b["summary"][m] for r, b in e["pairs"]], np.float64)
                    for m in e["metrics"]})
    return out


def paired_values(rows: list[dict], baseline: str = BASELINE):
    """Yield, per non-baseline group with pairs, ``{"label", "rows", "pairs", "metrics"}``: its runs,
    (run, baseline run of the same seed, source model and learning rate) pairs of non-diverged runs, and
    the summaries every pair has."""
    base = {}
    for r in rows:
        if r["method"] == baseline and usable(r):
            base[(r["pair_key"], r["seed"], r["hparams"].get("lr"))] = r
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["method"] != baseline:
            groups.setdefault(group_label(r), []).append(r)
    for label, rs in groups.items():
        pairs = [(r, base.get((r["pair_key"], r["seed"], r["hparams"].get("lr")))) for r in rs
                 if usable(r)]
        pairs = [(r, b) for r, b in pairs if b is not None]
        if pairs:
            yield {"label": label, "rows": rs, "pairs": pairs,
                   "metrics": [m for m in metrics_of(rs) if all(m in r["summary"] and m in b["summary"]
                                                                for r, b in pairs)]}


def normalized_by_baseline(rows: list[dict], metric: str = "final_target_return",
                           baseline: str = BASELINE, reps: int = 2000) -> list[dict]:
    """Scores normalized by the hard switch, pooled over tasks and algorithms (the RL aggregate).

    For a run r of a method on context c (task, algorithm, shift, numbers of the source phase):
    score = metric(r) / mean over seeds of metric(hard switch on c), so 1 = the hard switch's level.
    Contexts whose hard-switch mean is <= 0 cannot be normalized this way and are left out (counted).
    Per method: IQM and mean over all scores with 95% stratified bootstrap CIs (rliable).
    """
    ok = [r for r in rows if usable(r) and metric in r.get("summary", {})]
    base: dict[str, list[float]] = {}
    for r in ok:
        if r["method"] == baseline:
            base.setdefault(r["pair_key"], []).append(r["summary"][metric])
    scores: dict[tuple, list[float]] = {}
    skipped: dict[tuple, int] = {}
    for r in ok:
        key = (r["method"], json.dumps(r["hparams"], sort_keys=True))
        denom = float(np.mean(base[r["pair_key"]])) if r["pair_key"] in base else float("nan")
        if not denom > 0:
            skipped[key] = skipped.get(key, 0) + 1
            continue
        scores.setdefault(key, []).append(r["summary"][metric] / denom)
    out = []
    for (method, hp), vals in scores.items():
        entry = {"method": method, "hparams": json.loads(hp), "metric": metric, "n": len(vals),
                 "n_skipped": skipped.get((method, hp), 0),
                 "contexts": len({r["pair_key"] for r in ok if r["method"] == method})}
        for stat in ("mean", "iqm"):
            entry[stat], entry[f"{stat}_lo"], entry[f"{stat}_hi"] = interval(np.array(vals), stat, reps)
        out.append(entry)
    return out


def tables(rows: list[dict], reps: int = 2000) -> tuple[list[dict], list[dict], list[dict]]:
    """Everything a report shows: per-group aggregates, paired differences vs the hard switch and,
    for return summaries (RL), the hard-switch-normalized aggregate."""
    normalized = []
    if any("final_target_return" in r.get("summary", {}) for r in rows):
        normalized = normalized_by_baseline(rows, reps=reps)
    groups, diffs = aggregate(rows, reps=reps), paired_differences(rows, reps=reps)
    contexts(groups + diffs, rows)
    return groups, diffs, normalized


def matches(entry: dict, where: dict) -> bool:
    """``entry`` has every ``key=value`` of ``where`` (``hparams.T=50`` reads a number)."""
    for k, v in (where or {}).items():
        got = entry.get("hparams", {}).get(k.split(".", 1)[1]) if k.startswith("hparams.") else entry.get(k)
        if str(got) != str(v):
            return False
    return True


def adjust_family(diffs: list[dict], primary, where: dict | None = None) -> dict:
    """Holm-adjust the sign-flip p-values of the primary family: every primary metric of every paired
    row matching ``where`` (all rows without it); each gets ``<metric>_diff_p_holm``. Returns what was
    adjusted over (``primary``, ``rows``, ``size``, ``where``) for the table's note."""
    rows = [d for d in diffs if matches(d, where)]
    cells = [(d, m) for d in rows for m in primary if f"{m}_diff_p" in d]
    adjusted = inference.holm([d[f"{m}_diff_p"] for d, m in cells])
    for (d, m), p in zip(cells, adjusted):
        d[f"{m}_diff_p_holm"] = float(p)
    size = int(np.sum(~np.isnan(adjusted))) if cells else 0
    shown = "; rows " + ", ".join(f"{k}={v}" for k, v in where.items()) if where else ""
    return {"primary": list(primary), "rows": len(rows), "size": size, "where": shown}


def adjust_map(diffs: list[dict], col: str, metrics) -> int:
    """Benjamini-Hochberg q-values over every cell of a map (each of ``metrics`` on each paired row
    with the swept number ``col``, or every method with ``col='method'``): ``<metric>_diff_q``.
    Returns the number of comparisons."""
    cells = [(d, m) for m in metrics for d in diffs
             if f"{m}_diff_p" in d and (col == "method" or col in d["hparams"])]
    q = inference.benjamini_hochberg([d[f"{m}_diff_p"] for d, m in cells])
    for (d, m), v in zip(cells, q):
        d[f"{m}_diff_q"] = float(v)
    return int(np.sum(~np.isnan(q))) if cells else 0
