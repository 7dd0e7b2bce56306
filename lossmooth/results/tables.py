"""Tables built from aggregated runs: markdown (per-group statistics, paired differences, maps of
paired differences, a sequence's whole-sequence rows) and CSV (every aggregated number).

Which summaries a table shows is :data:`COLUMNS` (per kind of curves); what each column is called, and
which way is better, is the metrics registry's (:mod:`lossmooth.results.metrics`): the kind's standard
curves keep their committed wording, other curves are labelled with their own names.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math

from lossmooth.results.metrics import BY_NAME, QUANTITY, STANDARD, CurveNames, curves_of, kind_of

# the summaries a table shows, per kind of curves, in order (registry names: {target}/{source} become the
# curves' names); a column outside the "curve" family is shown where the runs have it (runs made before it
# existed did not)
COLUMNS = {
    "acc": ("final_{target}", "{source}_after", "worst_{target}", "stability_gap", "target_dip", "min_acc", "wc_acc",
            "windowed_forgetting", "windowed_plasticity", "lca", "dense_min_acc", "dense_source_drop",
            "dense_stability_gap", "dense_target_dip", "regret"),
    "return": ("final_{target}", "{source}_after", "worst_{target}", "stability_gap", "target_dip", "auc_target",
               "min_acc", "wc_acc", "windowed_forgetting", "windowed_plasticity", "lca", "regret"),
    "loss": ("final_{target}", "{source}_after", "worst_{target}", "stability_gap", "target_dip", "min_acc", "wc_acc",
             "windowed_forgetting", "windowed_plasticity", "lca", "judge_win_rate", "regret"),
    "score": ("final_{target}", "best_{target}", "worst_{target}", "stability_gap", "auc_target", "min_acc", "wc_acc",
              "windowed_forgetting", "windowed_plasticity", "lca", "regret"),
}
# the field's metrics (lossmooth.results.metrics) for each kind's standard curves: what they mean, and their
# directions (other curves: field_note builds the same from the registry and the curves' names)
FIELD_NOTE = {
    "acc": "min-ACC: worst source accuracy after the switch; WC-ACC: 1/2 final target + 1/2 min-ACC; WF^w: largest "
           "drop of source accuracy within w consecutive evaluations (lower is better); WP^w: largest rise of "
           "target accuracy within w evaluations; LCA^beta: mean target accuracy of the first beta evaluations "
           "after the switch (De Lange et al., ICLR 2023; Chaudhry et al., ICLR 2019); higher is better but WF^w.",
    "return": "min-ACC: worst source return after the switch; WC-ACC: 1/2 final target + 1/2 min-ACC; WF^w: "
              "largest drop of the source return within w consecutive evaluations (lower is better); WP^w: "
              "largest rise of the target return within w evaluations; LCA^beta: mean target return of the "
              "first beta evaluations after the switch; higher is better but WF^w.",
    "score": "One task (the online task is the offline one): min-ACC is the worst score after the switch, WC-ACC "
             "1/2 final + 1/2 min-ACC, WF^w the largest fall of the score within w consecutive evaluations "
             "(lower is better), WP^w its largest rise, LCA^beta the mean score of the first beta online "
             "evaluations; higher is better but WF^w.",
    "loss": "Lower is better: min-ACC analogue = the worst (highest) replay perplexity after the switch; WC-ACC "
            "analogue = 1/2 final target loss + 1/2 log(worst replay perplexity), nats; WF^w = the largest rise "
            "of the replay perplexity within w consecutive evaluations; LCA^beta = the mean target loss of the "
            "first beta evaluations after the switch; WP^w = the largest fall of the target loss within w "
            "evaluations (higher is better).",
}
DENSE_NOTE = ("Dense: from the evaluations after every update of the first W after the switch (config dense_eval): "
              "min-ACC over them, the source drop (value at the switch - that min-ACC; lower is better), the "
              "stability gap (that drop where it is positive) and the target dip (drop of the target below "
              "its value at the switch), on the dense evaluation's sets.")
# how each statistic's interval is made (lossmooth.results.inference; benchmarks/calibration.py)
CI_NOTE = {"mean": "95% Student-t CIs", "iqm": "95% percentile bootstrap CIs (descriptive: anti-conservative "
                                                 "at small n)"}
_GAP = ("Stability gap (De Lange et al., ICLR 2023): the transient drop of the source (earlier-task) {q} below "
        "its value at the switch within the gap window just after it (setting.gap_window); target dip: the "
        "target {q}'s drop below its value at the switch in that window (a different quantity).")
# what each kind's standard curves are (other curves: curves_note)
NOTES = {
    "loss": "Held-out target SFT loss (nats per trained token) and held-out replay-text perplexity, lower "
            "is better; {stat} over seeds with {ci}. Stability gap: the replay perplexity's transient rise "
            "above its value at the switch within the gap window; target dip: the target loss's rise above "
            "its value at the switch in that window.",
    "acc": "Accuracies in %, {stat} over seeds with {ci}. " + _GAP.format(q="accuracy"),
    "return": "Deterministic-policy episode returns, {stat} over seeds with {ci}. " + _GAP.format(q="return"),
    "score": "Normalized scores (100 = the dataset's expert reference, 0 = random; D4RL's constants only "
             "for D4RL's own datasets) of the deterministic policy, {stat} over seeds with {ci}; each from "
             "the evaluation episodes recorded with the run. Stability gap: drop below the offline agent's "
             "score (the earlier task: there is one task) within the gap window after the switch.",
}
PAIRED_NOTE = ("Paired: mean of the per-seed differences with a 95% Student-t CI; p = two-sided exact sign-flip "
               "permutation test (all 2^n sign patterns; 20,000 random ones beyond 16 pairs), unadjusted "
               "(exploratory); {adjusted} Fewer than 3 pairs resolve nothing (no CI, no p). Calibration: "
               "benchmarks/calibration.py.")


def table_metrics(curves: CurveNames, entries: list[dict]) -> tuple:
    """The columns of a table, ``(column name, label)``: its kind's :data:`COLUMNS` named after the runs'
    ``curves``, those outside the ``curve`` family only where the runs have them, and the judge's win
    rate only where runs were judged (not where every judgement was a pipeline check)."""
    keys = {k for e in entries for k in e}
    if entries and all(e.get("judge_pipeline_check") for e in entries if any(k.startswith("judge_") and k != "judge_pipeline_check" for k in e)):
        keys = {k for k in keys if not k.startswith("judge_win_rate")}  # a pipeline check is not a result
    have = lambda m: any(k.startswith(f"{m}_") for k in keys)  # noqa: E731
    out = []
    for name in COLUMNS[curves.kind]:
        metric = BY_NAME[name]
        column = metric.column(curves)
        if metric.family == "curve" or have(column):
            out.append((column, metric.title(curves)))
    return tuple(out)


def curves_note(curves: CurveNames, stat: str) -> str:
    """What the table's numbers are: the kind's standard wording (:data:`NOTES`), or, for other curves,
    their names, direction and the stability gap's and target dip's meaning in them."""
    if curves.standard:
        return NOTES[curves.kind].format(stat=stat, ci=CI_NOTE[stat])
    w = curves.words()
    side = "below" if curves.higher else "above"
    names = f"{w['t']} (target) and {w['s']} (source)" if curves.source else f"{w['t']} (one task: it plays both parts)"
    return (f"The setting's curves {names}, {'higher' if curves.higher else 'lower'} is better"
            f"{', in %' if curves.kind == 'acc' else ''}; {stat} over seeds with {CI_NOTE[stat]}. Stability gap: the "
            f"{w['s']}'s transient {w['harm']} {side} its value at the switch within the gap window just after it "
            f"(setting.gap_window); target dip: the {w['t']}'s {w['harm']} {side} its value at the switch in that "
            "window.")


def shown_metrics(curves: CurveNames, metrics: tuple) -> list:
    """The registry entries of a table's columns ``metrics`` (``(column, label)``, :func:`table_metrics`)."""
    columns = {c for c, _ in metrics}
    return [BY_NAME[n] for n in COLUMNS[curves.kind] if BY_NAME[n].column(curves) in columns]


def field_note(curves: CurveNames, metrics: tuple) -> str:
    """What the field's metrics among ``metrics`` (``(column, label)``) mean and which way is better:
    the kind's standard wording (:data:`FIELD_NOTE`), or, for other curves, the registry's meanings."""
    if curves.standard:
        return FIELD_NOTE[curves.kind]
    shown = [m for m in shown_metrics(curves, metrics) if m.family == "field"]
    return ("; ".join(f"{m.title(curves)}: {m.meaning} ({'higher' if m.higher_is_better(curves.kind) else 'lower'} "
                      "is better)" for m in shown)
            + " (De Lange et al., ICLR 2023; Chaudhry et al., ICLR 2019).")


# schedules a method's name already implies (hard switch, constant mixes) or the paper's ramp: not shown
_IMPLIED_SCHEDULES = ("hard", "constant", "linear")


def hparams_text(h: dict) -> str:
    """A run's numbers as a table shows them (a schedule its method implies left out)."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in h.items() if not (k == "schedule" and v in _IMPLIED_SCHEDULES))


def _numbers(entry: dict) -> str:
    """A table row's numbers, marked where the ramp outlasted the adaptation (lam never reached 1)."""
    return hparams_text(entry["hparams"]) + (" (ramp unfinished)" if entry.get("ramp_unfinished") else "")


def _ci(p, lo, hi, pct=True) -> str:
    f = (lambda x: f"{100 * x:.1f}") if pct else (lambda x: f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}")
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    if lo is None or math.isnan(lo):
        return f"{f(p)}"
    return f"{f(p)} [{f(lo)}, {f(hi)}]"


def shift_label(e: dict) -> str:
    """The shift column: ``name(severity)``; a sequence's switch ``#i name(severity)``; the whole
    sequence its shifts in order."""
    if e.get("switch") == "all":
        return str(e["shift"])
    label = f"{e['shift']}({e['severity']:g})" if e.get("severity") is not None else str(e["shift"])
    return label if e.get("switch") is None else f"#{e['switch']} {label}"


SEQUENCE_COLUMNS = ("seq_avg_final_acc", "seq_min_acc", "seq_wc_acc", "seq_forgetting")


def sequence_note(unit: str) -> str:
    """What the whole-sequence columns mean, in the runs' own quantity (accuracy, RL return)."""
    q = QUANTITY[unit]
    task0 = "the unshifted data" if unit == "acc" else "the unshifted task"
    return (f"Whole sequence (tasks 0..k, task 0 {task0}, task i after switch i; De Lange et al. 2023): avg "
            f"final {q} = mean {q} over all tasks at the end (higher is better); min-ACC = for each earlier task "
            f"the lowest {q} after its training ended, averaged (higher is better); WC-ACC = 1/(k+1) final {q} "
            f"on the last task + k/(k+1) min-ACC (higher is better); forgetting = a task's {q} at the end of its "
            "training minus at the end, averaged over earlier tasks (lower is better); per-task columns in the "
            "CSV (seq_*_task<j>).")


def sequence_markdown(groups: list[dict], diffs: list[dict], stat: str = "mean", unit: str = "acc") -> str:
    """The whole-sequence rows (switch ``all``): the k-task metrics per method (and per algorithm or
    model where a run has several), then paired differences; ``unit``: the runs' quantity (accuracies
    in %, RL returns as they are)."""
    pct = unit == "acc"
    titles = [BY_NAME[m].title(STANDARD[unit]) for m in SEQUENCE_COLUMNS]
    line = "algo" if unit in ("return", "score") else "model"
    lines_ = sorted({str(e.get("model")) for e in groups + diffs})
    by_line = line == "algo" or len(lines_) > 1
    lead = [line] if by_line else []

    def key(e):
        return (str(e["shift"]), str(e.get("model")), e["method"] != "hard_switch", e["method"])

    lines = ["\n**Whole sequence** (" + ", ".join(sorted({str(g["shift"]) for g in groups})) + "):\n"]
    head = lead + ["method", "numbers", "n"] + titles
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in sorted(groups, key=key):
        n = n_cell(g)
        cells = ([str(g.get("model"))] if by_line else []) + [g["method"], _numbers(g), n] + [
            _ci(g.get(f"{m}_{stat}"), g.get(f"{m}_{stat}_lo"), g.get(f"{m}_{stat}_hi"), pct) for m in SEQUENCE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("\n" + sequence_note(unit))
    if diffs:
        lines.append("\n**Whole sequence, paired difference vs hard switch** ("
                     + ("percentage points" if pct else QUANTITY[unit]) + "):\n")
        head = lead + ["method", "numbers", "pairs"] + titles
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for d in sorted(diffs, key=key):
            cells = ([str(d.get("model"))] if by_line else []) + [d["method"], _numbers(d), str(d["n_pairs"])] + [
                diff_cell(d, m, pct) for m in SEQUENCE_COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def n_cell(g: dict) -> str:
    """A group's run count: the runs in its statistics, then those left out (diverged; built on a
    diverged source phase)."""
    return (f"{g['n']}" + (f" (+{g['n_diverged']} diverged)" if g["n_diverged"] else "")
            + (f" (+{g['n_source_diverged']} on a diverged source)" if g.get("n_source_diverged") else ""))


def p_text(p) -> str:
    """A p-value as the tables show it."""
    if p is None or p != p:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.2g}" if p < 0.1 else f"{p:.2f}"


def diff_cell(d: dict, m: str, pct: bool) -> str:
    """A paired difference: mean [95% t CI], its sign-flip p and, in the primary family, Holm's p
    (``p_Holm``); fewer than 3 pairs: the mean alone, said to resolve nothing."""
    v = d.get(f"{m}_diff")
    if v is None or v != v:
        return "n/a"
    if d.get("n_pairs", 0) < 3:
        return _ci(v, None, None, pct) + " (n < 3: unresolved)"
    out = _ci(v, d.get(f"{m}_diff_lo"), d.get(f"{m}_diff_hi"), pct)
    if f"{m}_diff_p" in d:
        out += f", p {p_text(d[f'{m}_diff_p'])}"
    if f"{m}_diff_p_holm" in d:
        out += f", p_Holm {p_text(d[f'{m}_diff_p_holm'])}"
    return out


def family_note(family: dict | None) -> str:
    """What the table's p-values were adjusted over (the registry entry's primary family)."""
    if not family or not family.get("size"):
        return "no primary family is declared for this table: every p is exploratory."
    return (f"p_Holm = Holm-adjusted over the primary family: {family['size']} comparisons "
            f"({', '.join(family['primary'])} x {family['rows']} paired row(s){family.get('where', '')}); "
            "every other column is exploratory.")


def markdown(groups: list[dict], diffs: list[dict], stat: str = "mean",
             normalized: list[dict] | None = None, family: dict | None = None) -> str:
    """A markdown table: per group, each metric as {stat} [95% CI] (accuracies in %), then paired
    differences, then (RL) scores normalized by the hard switch; a sequence's whole-sequence rows
    in a table of their own (:func:`sequence_markdown`)."""
    whole = [e for e in groups + diffs if e.get("switch") == "all"]
    if whole:
        tail = sequence_markdown([g for g in groups if g.get("switch") == "all"],
                                 [d for d in diffs if d.get("switch") == "all"], stat,
                                 kind_of([e for e in groups + diffs if e.get("switch") != "all"]))
        groups = [g for g in groups if g.get("switch") != "all"]
        diffs = [d for d in diffs if d.get("switch") != "all"]
        return markdown(groups, diffs, stat, normalized, family) + tail
    curves = curves_of(groups + diffs)
    metrics = table_metrics(curves, groups + diffs)
    layout = _Layout(curves.kind == "acc", curves.kind in ("acc", "loss"),
                     any(e.get("context") for e in groups + diffs))
    lines = []
    if any(g.get("stand_in") for g in groups):
        lines.append("_Results on stand-in data or budgets (embedded default, not the paper's datasets "
                     "or training lengths)._\n")
    lines += _group_lines(groups, metrics, stat, layout)
    lines += _notes(groups, diffs, curves, metrics, stat)
    if diffs:
        lines += _diff_lines(diffs, metrics, layout, family)
    lines += _normalized_lines(groups, normalized)
    return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class _Layout:
    """How a table reads: accuracies in % (``pct``); data and model columns (supervised, LM) or task
    and algorithm (RL) (``named``); a context column where experiments differ in a field no column shows."""

    pct: bool
    named: bool
    ctx: bool


def _group_lines(groups: list[dict], metrics, stat: str, layout: _Layout) -> list[str]:
    """The per-group table: each metric as {stat} [95% CI]."""
    head = ["setting", "data" if layout.named else "task", "model" if layout.named else "algo", "shift", "method",
            "numbers"] + (["context"] if layout.ctx else []) + ["n"] + [t for _, t in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in sorted(groups, key=lambda g: (g["setting"], g["dataset"], str(g["model"]), str(g.get("switch")),
                                           g["shift"], g["method"] != "hard_switch", g["method"])):
        cells = [g["setting"], g["dataset"], str(g["model"]), shift_label(g),
                 g["method"], _numbers(g)] + ([g.get("context", "")] if layout.ctx else []) + [n_cell(g)]
        cells += [_ci(g.get(f"{m}_{stat}"), g.get(f"{m}_{stat}_lo"), g.get(f"{m}_{stat}_hi"), layout.pct)
                  for m, _ in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _notes(groups: list[dict], diffs: list[dict], curves, metrics, stat: str) -> list[str]:
    """What the per-group table's columns mean: its curves, the judge, the field's metrics, dense evaluation."""
    lines = ["\n" + curves_note(curves, stat)]
    if any(m == "judge_win_rate" for m, _ in metrics):
        lines.append("Judge win rate: share of pairwise wins (ties count half) against the reference run's replies "
                     "(hard switch, first seed), both presentation orders.")
    if any(e.get("judge_pipeline_check") for e in groups + diffs):
        lines.append("Judge: pipeline check only. The model under study, served on loopback, judged its own "
                     "fine-tuned copies; its verdicts (in the CSV and runs.json) check that generation, serving "
                     "and judging run end to end and are not a result (the paper's judge is a 70B model; set "
                     "judge=openai with such an endpoint for one).")
    families = {m.family for m in shown_metrics(curves, metrics)}
    if "field" in families:
        params = sorted({(g.get("window"), g.get("lca_beta")) for g in groups if g.get("window")})
        shown = "; ".join(f"w = {w}, beta = {b}" for w, b in params) or "w and beta as the runs' summaries set"
        lines.append(f"{field_note(curves, metrics)} Here {shown} evaluations.")
    if "dense" in families:
        lines.append(DENSE_NOTE)
    return lines


def _diff_lines(diffs: list[dict], metrics, layout: _Layout, family: dict | None) -> list[str]:
    """The paired-difference table (each method minus the hard switch, by seed), primary metrics marked."""
    primary = tuple((family or {}).get("primary", ()))
    lines = ["\n**Paired difference vs hard switch** (same seed, same source model, same data order; "
             f"mean [95% t CI], sign-flip p{', percentage points' if layout.pct else ''}):\n"]
    head = ["data" if layout.named else "task", "model" if layout.named else "algo", "shift", "method", "numbers"] + \
        (["context"] if layout.ctx else []) + ["pairs"] + [t + (" (primary)" if m in primary else "") for m, t in metrics]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for d in sorted(diffs, key=lambda d: (d["dataset"], str(d["model"]), str(d.get("switch")), d["shift"],
                                          d["method"])):
        cells = [d["dataset"], str(d["model"]), shift_label(d), d["method"],
                 _numbers(d)] + ([d.get("context", "")] if layout.ctx else []) + [str(d["n_pairs"])]
        cells += [diff_cell(d, m, layout.pct) for m, _ in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("\n" + PAIRED_NOTE.format(adjusted=family_note(family)))
    return lines


def _normalized_lines(groups: list[dict], normalized: list[dict] | None) -> list[str]:
    """RL: the final target return normalized by the hard switch (or why there is none)."""
    if normalized:
        lines = ["\n**Final target return normalized by the hard switch** (score = return / mean "
                 "hard-switch return of the same task, algorithm and shift; pooled over all of them; "
                 "IQM with a 95% percentile bootstrap CI, descriptive; mean with a 95% Student-t CI):\n",
                 "| method | numbers | scores | contexts | IQM | mean |", "|---|---|---|---|---|---|"]
        for e in sorted(normalized, key=lambda e: (e["method"] != "hard_switch", e["method"])):
            skipped = f" ({e['n_skipped']} left out: hard-switch mean <= 0)" if e["n_skipped"] else ""
            lines.append(f"| {e['method']} | {hparams_text(e['hparams'])} | {e['n']}{skipped} | {e['contexts']} | "
                         f"{_ci(e['iqm'], e['iqm_lo'], e['iqm_hi'], False)} | "
                         f"{_ci(e['mean'], e['mean_lo'], e['mean_hi'], False)} |")
        return lines
    if normalized is not None and any(g.get("final_target_return_mean") is not None for g in groups):
        return ["\n_No final target return normalized by the hard switch: every hard-switch mean return "
                "here is <= 0 (e.g. pendulum's costs), so return / hard-switch return has no meaning._"]
    return []


def csv_text(groups: list[dict], diffs: list[dict], normalized: list[dict] | None = None) -> str:
    """Every aggregated number, one row per group (and per paired-difference group); the curves' names
    an entry carries are not a column (they name the columns already)."""
    buf = io.StringIO()
    rows = [dict(g, kind="aggregate") for g in groups] + [dict(d, kind="paired_diff") for d in diffs]
    rows += [dict(e, kind="normalized_by_hard_switch") for e in (normalized or [])]
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys and k != "curves"]
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow({k: (json.dumps(v, sort_keys=True) if isinstance(v, dict) else v) for k, v in r.items()
                    if k != "curves"})
    return buf.getvalue()


def map_entries(diffs: list[dict], col: str, metric: str) -> list[dict]:
    """The paired-difference rows that are cells of a map's ``metric`` grid (``col``: a swept number,
    or ``method``)."""
    return [d for d in diffs if f"{metric}_diff" in d and (col == "method" or col in d["hparams"])]


def map_cells(diffs: list[dict], rows: tuple, col: str, metric: str):
    """(row labels, column values, {(row, col): (diff, lo, hi, q)}) of the paired differences (``q``:
    the cell's Benjamini-Hochberg q-value over the map, NaN where none was computed); ``col`` is a
    swept number (e.g. T) or ``method`` (a column per method beside the hard switch)."""
    cells, row_labels, cols = {}, [], []
    for d in map_entries(diffs, col, metric):
        label = ", ".join(f"{d[k]:g}" if isinstance(d.get(k), float) else str(d.get(k)) for k in rows)
        c = d["method"] if col == "method" else d["hparams"][col]
        cells[(label, c)] = (d[f"{metric}_diff"], d[f"{metric}_diff_lo"], d[f"{metric}_diff_hi"],
                             d.get(f"{metric}_diff_q", float("nan")))
        if label not in row_labels:
            row_labels.append(label)
        if c not in cols:
            cols.append(c)
    by_value = lambda s: [(0, float(x)) if _num(x) else (1, x) for x in s.split(", ")]  # noqa: E731  numbers as numbers
    return sorted(row_labels, key=by_value), sorted(cols), cells


def _num(x: str) -> bool:
    try:
        float(x)
        return True
    except ValueError:
        return False


def col_label(c) -> str:
    return c if isinstance(c, str) else f"{c:g}"


def map_title(col: str) -> str:
    return "each method minus hard switch" if col == "method" else "smoothing minus hard switch"


Q_LEVEL = 0.05  # a map cell is resolved where its Benjamini-Hochberg q-value is below this


def resolved(v) -> bool:
    """A map cell (diff, lo, hi, q) is resolved where its BH q-value is < :data:`Q_LEVEL`."""
    return v[3] == v[3] and v[3] < Q_LEVEL


def map_markdown(diffs: list[dict], rows: tuple, col: str, metrics: tuple, pct: bool) -> str:
    """Per metric, a grid of paired differences vs the hard switch: one row per ``rows`` value (e.g.
    shift, severity), one column per value of the number ``col`` (e.g. T); ``*`` marks a cell whose
    Benjamini-Hochberg q-value (over every cell of every grid of the map) is below 0.05, in whichever
    direction; a count of resolved cells per direction follows each grid."""
    out = []
    size = sum(1 for m in metrics for d in map_entries(diffs, col, m) if d.get(f"{m}_diff_q") == d.get(f"{m}_diff_q"))
    for m in metrics:
        labels, cols, cells = map_cells(diffs, rows, col, m)
        if not cells:
            continue
        f = (lambda x: f"{100 * x:+.1f}") if pct else (lambda x: f"{x:+.3g}")
        out.append(f"\n**Map: {m.replace('_', ' ')}, {map_title(col)}** (paired mean"
                   f"{', percentage points' if pct else ''}; * = Benjamini-Hochberg q < {Q_LEVEL:g} over the "
                   f"map's {size} comparisons, from exact sign-flip p-values):\n")
        heads = cols if col == "method" else [f"{col}={col_label(c)}" for c in cols]
        out.append("| " + " / ".join(rows) + " | " + " | ".join(heads) + " |")
        out.append("|---|" + "---|" * len(cols))
        for label in labels:
            row = []
            for c in cols:
                v = cells.get((label, c))
                row.append("" if v is None else f(v[0]) + ("*" if resolved(v) else ""))
            out.append(f"| {label} | " + " | ".join(row) + " |")
        up = sum(1 for v in cells.values() if resolved(v) and v[0] > 0)
        down = sum(1 for v in cells.values() if resolved(v) and v[0] < 0)
        out.append(f"\nResolved (q < {Q_LEVEL:g}): {up} of {len(cells)} cells above 0, {down} below 0.")
    return "\n".join(out) + ("\n" if out else "")
