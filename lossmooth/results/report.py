"""Tables (markdown, CSV) and learning-curve plots built from aggregated runs."""
from __future__ import annotations

import csv
import io
import json
import math

import numpy as np

from lossmooth.results import store, summaries
from lossmooth.results.aggregate import usable

TABLE_METRICS = {
    "acc": (("final_target_acc", "final target acc"),
            ("source_acc_after", "source acc after (forgetting)"),
            ("worst_target_acc", "worst target acc after switch"),
            ("stability_gap", "stability gap (source drop after switch)"),
            ("target_dip", "target dip after switch"),
            ("min_acc", "min-ACC (worst source acc)"),
            ("wc_acc", "WC-ACC"),
            ("windowed_forgetting", "WF^w (source drop)"),
            ("windowed_plasticity", "WP^w (target rise)"),
            ("lca", "LCA^beta (target)"),
            ("dense_min_acc", "min-ACC, every update (dense)"),
            ("dense_source_drop", "source drop, every update (dense)"),
            ("dense_stability_gap", "stability gap, every update (dense)"),
            ("dense_target_dip", "target dip, every update (dense)")),
    "return": (("final_target_return", "final target return"),
               ("source_return_after", "source return after (forgetting)"),
               ("worst_target_return", "worst target return after switch"),
               ("stability_gap", "stability gap (source return drop after switch)"),
               ("target_dip", "target dip after switch"),
               ("auc_target", "area under target curve (mean return)"),
               ("min_acc", "min-ACC (worst source return)"),
               ("wc_acc", "WC-ACC (returns)"),
               ("windowed_forgetting", "WF^w (source drop)"),
               ("windowed_plasticity", "WP^w (target rise)"),
               ("lca", "LCA^beta (target)")),
    "loss": (("final_target_loss", "final target loss"),
             ("replay_ppl_after", "replay perplexity after (forgetting)"),
             ("worst_target_loss", "worst target loss after switch"),
             ("stability_gap", "stability gap (replay ppl rise after switch)"),
             ("target_dip", "target dip (target loss rise after switch)"),
             ("min_acc", "min-ACC analogue (worst replay ppl)"),
             ("wc_acc", "WC-ACC analogue (nats)"),
             ("windowed_forgetting", "WF^w (replay ppl rise)"),
             ("windowed_plasticity", "WP^w (target loss fall)"),
             ("lca", "LCA^beta (target loss)"),
             ("judge_win_rate", "judge win rate vs reference")),
    "score": (("final_target_score", "final score"),
              ("best_target_score", "best score"),
              ("worst_target_score", "worst score after switch"),
              ("stability_gap", "stability gap (score drop after switch)"),
              ("auc_target", "area under score curve (mean score)"),
              ("min_acc", "min-ACC (worst score after switch)"),
              ("wc_acc", "WC-ACC (scores)"),
              ("windowed_forgetting", "WF^w (score drop)"),
              ("windowed_plasticity", "WP^w (score rise)"),
              ("lca", "LCA^beta (score)")),
}
# the field's metrics (lossmooth.results.summaries): what they mean in each kind, and their directions
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
FIELD = {m for m, _ in TABLE_METRICS["acc"][6:]}  # shown where the runs have them (runs made before did not)
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
CURVES = {"loss": ("target_loss", "replay_ppl"), "acc": ("target_acc", "source_acc"), "return": ("target_return", "source_return"),
          "score": ("target_score", "target_return")}


def table_metrics(unit: str, entries: list[dict]) -> tuple:
    """The columns of a table: its unit's metrics, a source curve recorded under another name (its
    ``<curve>_after`` summary; e.g. a setting from outside the project) in place of the unit's, and
    the judge's win rate only where runs were judged."""
    keys = {k for e in entries for k in e}
    if entries and all(e.get("judge_pipeline_check") for e in entries if any(k.startswith("judge_") and k != "judge_pipeline_check" for k in e)):
        keys = {k for k in keys if not k.startswith("judge_win_rate")}  # a pipeline check is not a result
    have = lambda m: any(k.startswith(f"{m}_") for k in keys)  # noqa: E731
    out = []
    for m, title in TABLE_METRICS[unit]:
        if m.endswith("_after") and not have(m):
            other = sorted({k.split("_after_")[0] + "_after" for k in keys if "_after_" in k})
            out += [(o, f"{o[:-len('_after')].replace('_', ' ')} after (forgetting)") for o in other]
        elif (m != "judge_win_rate" and m not in FIELD and not m.startswith("dense_")) or have(m):
            out.append((m, title))
    return tuple(out)


unit_of = summaries.kind_of  # an entry's aggregated names start with its summaries' names


# schedules a method's name already implies (hard switch, constant mixes) or the paper's ramp: not shown
_IMPLIED_SCHEDULES = ("hard", "constant", "linear")


def _hp(h: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in h.items() if not (k == "schedule" and v in _IMPLIED_SCHEDULES))


def _numbers(entry: dict) -> str:
    """A table row's numbers, marked where the ramp outlasted the adaptation (lam never reached 1)."""
    return _hp(entry["hparams"]) + (" (ramp unfinished)" if entry.get("ramp_unfinished") else "")


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


SEQUENCE_COLUMNS = (("seq_avg_final_acc", "avg final {q} (all tasks)"), ("seq_min_acc", "min-ACC (k tasks)"),
                    ("seq_wc_acc", "WC-ACC (k tasks)"), ("seq_forgetting", "forgetting (mean over earlier tasks)"))
QUANTITY = {"acc": "accuracy", "return": "return", "score": "score", "loss": "loss"}


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
    titles = [t.format(q="acc" if pct else QUANTITY[unit]) for _, t in SEQUENCE_COLUMNS]
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
            _ci(g.get(f"{m}_{stat}"), g.get(f"{m}_{stat}_lo"), g.get(f"{m}_{stat}_hi"), pct) for m, _ in SEQUENCE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("\n" + sequence_note(unit))
    if diffs:
        lines.append("\n**Whole sequence, paired difference vs hard switch** ("
                     + ("percentage points" if pct else QUANTITY[unit]) + "):\n")
        head = lead + ["method", "numbers", "pairs"] + titles
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for d in sorted(diffs, key=key):
            cells = ([str(d.get("model"))] if by_line else []) + [d["method"], _numbers(d), str(d["n_pairs"])] + [
                diff_cell(d, m, pct) for m, _ in SEQUENCE_COLUMNS]
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
                                 unit_of([e for e in groups + diffs if e.get("switch") != "all"]))
        groups = [g for g in groups if g.get("switch") != "all"]
        diffs = [d for d in diffs if d.get("switch") != "all"]
        return markdown(groups, diffs, stat, normalized, family) + tail
    lines = []
    unit = unit_of(groups + diffs)
    metrics = table_metrics(unit, groups + diffs)
    if any(f"regret_{stat}" in g for g in groups):  # goal tasks (AntMaze, Adroit)
        metrics = metrics + (("regret", "regret (1 - mean online success rate)"),)
    pct = unit == "acc"
    stand_in = any(g.get("stand_in") for g in groups)
    if stand_in:
        lines.append("_Results on stand-in data or budgets (embedded default, not the paper's datasets "
                     "or training lengths)._\n")
    named = unit in ("acc", "loss")  # supervised and LM tables: data and model; RL tables: task and algo
    ctx = any(e.get("context") for e in groups + diffs)  # experiments that differ in a field no column shows
    head = ["setting", "data" if named else "task", "model" if named else "algo", "shift", "method",
            "numbers"] + (["context"] if ctx else []) + ["n"] + [t for _, t in metrics]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for g in sorted(groups, key=lambda g: (g["setting"], g["dataset"], str(g["model"]), str(g.get("switch")),
                                           g["shift"], g["method"] != "hard_switch", g["method"])):
        n = n_cell(g)
        cells = [g["setting"], g["dataset"], str(g["model"]), shift_label(g),
                 g["method"], _numbers(g)] + ([g.get("context", "")] if ctx else []) + [n]
        cells += [_ci(g.get(f"{m}_{stat}"), g.get(f"{m}_{stat}_lo"), g.get(f"{m}_{stat}_hi"), pct)
                  for m, _ in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("\n" + NOTES[unit].format(stat=stat, ci=CI_NOTE[stat]))
    if any(m == "judge_win_rate" for m, _ in metrics):
        lines.append("Judge win rate: share of pairwise wins (ties count half) against the reference run's replies "
                     "(hard switch, first seed), both presentation orders.")
    if any(e.get("judge_pipeline_check") for e in groups + diffs):
        lines.append("Judge: pipeline check only. The model under study, served on loopback, judged its own "
                     "fine-tuned copies; its verdicts (in the CSV and runs.json) check that generation, serving "
                     "and judging run end to end and are not a result (the paper's judge is a 70B model; set "
                     "judge=openai with such an endpoint for one).")
    if any(m in FIELD for m, _ in metrics):
        params = sorted({(g.get("window"), g.get("lca_beta")) for g in groups if g.get("window")})
        shown = "; ".join(f"w = {w}, beta = {b}" for w, b in params) or "w and beta as the runs' summaries set"
        lines.append(f"{FIELD_NOTE[unit]} Here {shown} evaluations.")
    if any(m.startswith("dense_") for m, _ in metrics):
        lines.append(DENSE_NOTE)
    if diffs:
        primary = tuple((family or {}).get("primary", ()))
        lines.append("\n**Paired difference vs hard switch** (same seed, same source model, same data order; "
                     f"mean [95% t CI], sign-flip p{', percentage points' if pct else ''}):\n")
        head = ["data" if named else "task", "model" if named else "algo", "shift", "method", "numbers"] + \
            (["context"] if ctx else []) + ["pairs"] + [t + (" (primary)" if m in primary else "") for m, t in metrics]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for d in sorted(diffs, key=lambda d: (d["dataset"], str(d["model"]), str(d.get("switch")), d["shift"],
                                              d["method"])):
            cells = [d["dataset"], str(d["model"]), shift_label(d), d["method"],
                     _numbers(d)] + ([d.get("context", "")] if ctx else []) + [str(d["n_pairs"])]
            cells += [diff_cell(d, m, pct) for m, _ in metrics]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("\n" + PAIRED_NOTE.format(adjusted=family_note(family)))
    if normalized:
        lines.append("\n**Final target return normalized by the hard switch** (score = return / mean "
                     "hard-switch return of the same task, algorithm and shift; pooled over all of them; "
                     "IQM with a 95% percentile bootstrap CI, descriptive; mean with a 95% Student-t CI):\n")
        lines.append("| method | numbers | scores | contexts | IQM | mean |")
        lines.append("|---|---|---|---|---|---|")
        for e in sorted(normalized, key=lambda e: (e["method"] != "hard_switch", e["method"])):
            skipped = f" ({e['n_skipped']} left out: hard-switch mean <= 0)" if e["n_skipped"] else ""
            lines.append(f"| {e['method']} | {_hp(e['hparams'])} | {e['n']}{skipped} | {e['contexts']} | "
                         f"{_ci(e['iqm'], e['iqm_lo'], e['iqm_hi'], False)} | "
                         f"{_ci(e['mean'], e['mean_lo'], e['mean_hi'], False)} |")
    elif normalized is not None and any(g.get("final_target_return_mean") is not None for g in groups):
        lines.append("\n_No final target return normalized by the hard switch: every hard-switch mean return "
                     "here is <= 0 (e.g. pendulum's costs), so return / hard-switch return has no meaning._")
    return "\n".join(lines) + "\n"


def csv_text(groups: list[dict], diffs: list[dict], normalized: list[dict] | None = None) -> str:
    """Every aggregated number, one row per group (and per paired-difference group)."""
    buf = io.StringIO()
    rows = [dict(g, kind="aggregate") for g in groups] + [dict(d, kind="paired_diff") for d in diffs]
    rows += [dict(e, kind="normalized_by_hard_switch") for e in (normalized or [])]
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow({k: (json.dumps(v, sort_keys=True) if isinstance(v, dict) else v) for k, v in r.items()})
    return buf.getvalue()


def _curves(rows: list[dict], metric: str, phase: str = "adapt") -> dict[str, dict[int, list[float]]]:
    """label -> step -> values over seeds, from the metrics.jsonl of each row's run directory (``phase``
    ``adapt_dense``: the dense evaluation after the switch)."""
    curves: dict[str, dict] = {}
    by_dir: dict[str, dict] = {}
    for r in rows:
        if usable(r):
            by_dir.setdefault(r["run_dir"], {})[r["run_index"]] = r
    for d, wanted in by_dir.items():
        try:
            rows = store.read_metrics(d)
        except store.CorruptRun as e:
            store.warn(f"skipping {d} in the plot: {e}")
            continue
        for m in rows:
            if m.get("phase") == phase and m["run_index"] in wanted:
                r = wanted[m["run_index"]]
                label = r["method"] + (f" ({_hp(r['hparams'])})" if _hp(r["hparams"]) else "")
                if r.get("setting") != "supervised" and r.get("model"):
                    label = f"{r['model']}: {label}"
                if metric in m:
                    curves.setdefault(label, {}).setdefault(m["step"], []).append(m[metric])
    return curves


def _band(ax, curve: dict, label: str) -> None:
    """A curve (x -> values over seeds): the mean, with a band from min to max."""
    xs = np.array(sorted(curve))
    vals = [np.asarray(curve[x]) for x in xs]
    ax.plot(xs, [v.mean() for v in vals], label=label)
    ax.fill_between(xs, [v.min() for v in vals], [v.max() for v in vals], alpha=0.2)


def _finish(fig, axes, rows: list[dict], title: str, out_png: str) -> None:
    """The legend, the title (marked where any run is on stand-in data) and the file."""
    axes[0, 0].legend(fontsize=7)
    stand_in = any(r.get("stand_in", True) for r in rows)
    fig.suptitle(title + (" [stand-in data]" if stand_in else ""))
    fig.tight_layout()
    _save(fig, out_png)


def _save(fig, out_png: str) -> None:
    import os

    import matplotlib.pyplot as plt

    ext = os.path.splitext(out_png)[1] or ".png"
    tmp = out_png + ".tmp" + ext  # the format follows the name (png, pdf, svg)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out_png)


def plot_sequence(rows: list[dict], out_png: str, title: str | None = None) -> None:
    """A sequence of switches: every task's accuracy (RL: return) over the whole sequence (a panel per
    task, the switches as dashed lines), per method (and algorithm or model, where a run has several)
    the mean over seeds, band = min..max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    switch_rows = [r for r in rows if isinstance(r.get("switch"), int) and usable(r)]
    unit = unit_of([r.get("summary", {}) for r in switch_rows])
    several = len({r.get("model") for r in switch_rows}) > 1
    tasks = max(len(r["sequence"]["tasks"]) for r in rows if r.get("sequence"))
    names = next(r["sequence"]["tasks"] for r in rows if r.get("sequence"))
    curves: dict[int, dict[str, dict[int, list]]] = {j: {} for j in range(tasks)}
    by_dir: dict[str, dict] = {}
    for r in switch_rows:
        by_dir.setdefault(r["run_dir"], {})[r["run_index"]] = r
    read = {}
    for d, wanted in by_dir.items():
        try:
            read[d] = [m for m in store.read_metrics(d) if m.get("phase") == "adapt" and m.get("run_index") in wanted]
        except store.CorruptRun as e:
            store.warn(f"skipping {d} in the plot: {e}")
    spans = {}  # every switch of a line (algorithm, model) has the same length; lines may differ (RL budgets)
    for d, metrics in read.items():
        for m in metrics:
            line = (d, by_dir[d][m["run_index"]].get("model"))
            spans[line] = max(spans.get(line, 0), m["step"])
    scaled = len(set(spans.values())) > 1  # then each switch spans 1 on the x axis
    length = 1 if scaled else max(spans.values(), default=0)
    for d, metrics in read.items():
        for m in metrics:
            r = by_dir[d][m["run_index"]]
            label = (f"{r.get('model')}/" if several else "") + r["method"] + (
                f" ({_hp(r['hparams'])})" if _hp(r["hparams"]) else "")
            span = spans[(d, r.get("model"))]
            x = (m["switch"] - 1) + m["step"] / max(span, 1) if scaled else (m["switch"] - 1) * span + m["step"]
            for j in range(tasks):
                if f"task{j}_{unit}" in m:
                    curves[j].setdefault(label, {}).setdefault(x, []).append(m[f"task{j}_{unit}"])
    cols = 2
    fig, axes = plt.subplots(-(-tasks // cols), cols, figsize=(11, 3.6 * -(-tasks // cols)), squeeze=False)
    for j, ax in enumerate(axes.ravel()):
        if j >= tasks:
            ax.axis("off")
            continue
        for label, c in sorted(curves[j].items()):
            _band(ax, c, label)
        for i in range(tasks - 1):
            ax.axvline(i * length, color="k", lw=0.8, ls="--")
        task = names[j] if j < len(names) else {}
        ax.set_title(f"task {j}: " + (f"{task.get('shift')}({task.get('severity'):g})" if j else "unshifted"), fontsize=9)
        ax.set_xlabel("switches since the first (each switch's steps scaled to 1)" if scaled else
                      ("update" if unit == "acc" else "target-task env step") + " since the first switch (dashed: switches)")
        ax.set_ylabel(QUANTITY[unit])
        ax.grid(alpha=0.3)
    _finish(fig, axes, rows, title or "every task through the sequence", out_png)


def plot_curves(rows: list[dict], out_png: str, title: str | None = None) -> None:
    """Target and source accuracy (return, RL) around the switch: mean over seeds, band = min..max;
    for a sequence of switches every task through it (:func:`plot_sequence`)."""
    if any(r.get("sequence") for r in rows):
        return plot_sequence(rows, out_png, title)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = unit_of([r.get("summary", {}) for r in rows])
    named = next((r["curves"] for r in rows if r.get("curves")), None)  # the setting's own curve names
    curves = (named["target"], named.get("source") or named["target"].replace("score", "return")) if named \
        else CURVES[unit]
    dense = {m: _curves(rows, m, "adapt_dense") for m in curves}
    panels = [("adapt", m, None) for m in curves]
    if any(dense.values()):  # the first updates after the switch on their own axis
        panels += [("adapt_dense", m, dense[m]) for m in curves]
    fig, axes = plt.subplots(len(panels) // 2, 2, figsize=(11, 4 * (len(panels) // 2)), squeeze=False)
    for ax, (phase, metric, got) in zip(axes.ravel(), panels):
        for label, c in sorted((got if got is not None else _curves(rows, metric)).items()):
            _band(ax, c, label)
        ax.axvline(0, color="k", lw=0.8, ls="--")
        ax.set_xlabel({"acc": "adaptation step (0 = switch)", "return": "target-task env steps (0 = switch)",
                       "score": "online env steps (0 = switch)", "loss": "updates (0 = switch)"}[unit]
                      + (", every update (dense evaluation)" if phase == "adapt_dense" else ""))
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
    _finish(fig, axes, rows, title or "learning curves around the switch", out_png)


def map_entries(diffs: list[dict], col: str, metric: str) -> list[dict]:
    """The paired-difference rows that are cells of a map's ``metric`` grid (``col``: a swept number,
    or ``method``)."""
    return [d for d in diffs if f"{metric}_diff" in d and (col == "method" or col in d["hparams"])]


def _map_cells(diffs: list[dict], rows: tuple, col: str, metric: str):
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


def _col_label(c) -> str:
    return c if isinstance(c, str) else f"{c:g}"


def _map_title(col: str) -> str:
    return "each method minus hard switch" if col == "method" else "smoothing minus hard switch"


Q_LEVEL = 0.05  # a map cell is resolved where its Benjamini-Hochberg q-value is below this


def _resolved(v) -> bool:
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
        labels, cols, cells = _map_cells(diffs, rows, col, m)
        if not cells:
            continue
        f = (lambda x: f"{100 * x:+.1f}") if pct else (lambda x: f"{x:+.3g}")
        out.append(f"\n**Map: {m.replace('_', ' ')}, {_map_title(col)}** (paired mean"
                   f"{', percentage points' if pct else ''}; * = Benjamini-Hochberg q < {Q_LEVEL:g} over the "
                   f"map's {size} comparisons, from exact sign-flip p-values):\n")
        heads = cols if col == "method" else [f"{col}={_col_label(c)}" for c in cols]
        out.append("| " + " / ".join(rows) + " | " + " | ".join(heads) + " |")
        out.append("|---|" + "---|" * len(cols))
        for label in labels:
            row = []
            for c in cols:
                v = cells.get((label, c))
                row.append("" if v is None else f(v[0]) + ("*" if _resolved(v) else ""))
            out.append(f"| {label} | " + " | ".join(row) + " |")
        up = sum(1 for v in cells.values() if _resolved(v) and v[0] > 0)
        down = sum(1 for v in cells.values() if _resolved(v) and v[0] < 0)
        out.append(f"\nResolved (q < {Q_LEVEL:g}): {up} of {len(cells)} cells above 0, {down} below 0.")
    return "\n".join(out) + ("\n" if out else "")


def plot_map(diffs: list[dict], out_png: str, rows: tuple, col: str, metrics: tuple, pct: bool,
             title: str | None = None, style: str = "heat") -> None:
    """Heatmaps of :func:`map_markdown`'s grids, one per metric, centred on 0 (blue: smoothing above the
    hard switch, red: below; for a lower-is-better metric read the sign accordingly); cells whose
    Benjamini-Hochberg q-value is below 0.05 are outlined and their numbers bold. ``style="lines"``: per metric, the paired
    difference with its 95% CI across the rows in order (e.g. pretraining budgets), a line per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    grids = [(m, *_map_cells(diffs, rows, col, m)) for m in metrics]
    grids = [g for g in grids if g[3]]
    if not grids:
        return
    scale = 100.0 if pct else 1.0
    if style == "lines":
        _plot_map_lines(grids, out_png, col, scale, pct, title)
        return
    fig, axes = plt.subplots(1, len(grids), figsize=(4.2 * len(grids) + 1, 0.45 * len(grids[0][1]) + 2), squeeze=False)
    for ax, (m, labels, cols, cells) in zip(axes[0], grids):
        z = np.full((len(labels), len(cols)), np.nan)
        for (label, c), v in cells.items():
            z[labels.index(label), cols.index(c)] = v[0] * scale
        lim = np.nanmax(np.abs(z)) or 1.0
        ax.imshow(z, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        for (label, c), v in cells.items():
            i, j = labels.index(label), cols.index(c)
            sig = _resolved(v)
            ax.text(j, i, f"{v[0] * scale:+.1f}" if pct else f"{v[0]:+.2g}", ha="center", va="center", fontsize=7,
                    fontweight="bold" if sig else "normal")
            if sig:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.5, ec="k"))
        ax.set_xticks(range(len(cols)), [_col_label(c) for c in cols], fontsize=7 if col == "method" else None)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel(col)
        ax.set_title(m.replace("_", " ") + (" (pp)" if pct else ""), fontsize=9)
    fig.suptitle((title or _map_title(col)) + f" (outlined: BH q < {Q_LEVEL:g})", fontsize=10)
    fig.tight_layout()
    _save(fig, out_png)


def _plot_map_lines(grids: list, out_png: str, col: str, scale: float, pct: bool, title: str | None) -> None:
    """The ``lines`` figure of :func:`plot_map`: x = the map's rows in order, y = the paired difference."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(grids), figsize=(3.6 * len(grids) + 1, 3.4), squeeze=False)
    for ax, (m, labels, cols, cells) in zip(axes[0], grids):
        for k, c in enumerate(cols):
            xs = [i + (k - (len(cols) - 1) / 2) * 0.06 for i, label in enumerate(labels) if (label, c) in cells]
            vals = [cells[(label, c)] for label in labels if (label, c) in cells]
            y = np.asarray([v[0] for v in vals]) * scale
            err = np.abs(np.asarray([[v[1] for v in vals], [v[2] for v in vals]]) * scale - y)
            ax.errorbar(xs, y, yerr=err, marker="o", ms=3, lw=1, capsize=2,
                        label=c if col == "method" else f"{col}={_col_label(c)}")
        ax.axhline(0, color="grey", lw=0.6)
        short = [label.split("@", 1)[-1] for label in labels]
        ax.set_xticks(range(len(labels)), short, fontsize=6, rotation=20, ha="right")
        ax.set_title(m.replace("_", " ") + (" (pp)" if pct else ""), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(_map_title(col))
    axes[0][0].legend(fontsize=7)
    fig.suptitle((title or _map_title(col)) + " (paired mean, 95% t CI)", fontsize=10)
    fig.tight_layout()
    _save(fig, out_png)
