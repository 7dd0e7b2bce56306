"""The metrics registry: every summary a run can have, as a named entry with the function that computes
it, the curves it reads, its direction and its labels.

A run's curves (its setting's :class:`~lossmooth.settings.contract.Curves`) are a target curve a_i and,
where there are two tasks, a source curve b_i, evaluated at the switch (i = 0) and after it. Their
``kind`` says which way is better: ``acc``, ``return`` and ``score`` higher, ``loss`` lower. Every
summary is one of three senses (:data:`SENSES`), which give its direction in every kind:

- ``value``: a value of a curve (final, worst, mean, the switch's): better in the curve's own direction,
  so higher is better unless the kind is ``loss``;
- ``harm``: an amount of lost performance (forgetting, a drop, a rise of a loss, regret), measured so
  that larger is more harm: lower is better in every kind;
- ``gain``: an amount of gained performance (a rise, a fall of a loss, a win rate): higher is better
  in every kind.

So ``min_acc``, the worst source value after the switch, is an accuracy, a return, a score or a
perplexity alike (a ``value``: higher is better but for losses), while ``windowed_forgetting`` is lower
is better everywhere. The formulas are in :mod:`lossmooth.results.summaries`.

Column names stay as the runs and committed tables have them (``min_acc`` also where it is a worst
perplexity). Labels come from the curves' own names: ``{t}`` and ``{s}`` in a label are the target and
source curve's names (``source_mse`` -> "source mse"). Each kind's standard curves (:data:`STANDARD`:
named as the project's settings name them) keep the wording the committed tables have
(:attr:`Metric.labels`); any other curves, e.g. a ``loss`` setting whose curves are MSEs, get
:attr:`Metric.label` filled in with their names, so nothing calls an MSE a perplexity.
"""
from __future__ import annotations

import dataclasses
import re

SENSES = ("value", "harm", "gain")
KINDS = ("acc", "return", "score", "loss")
HIGHER_KINDS = ("acc", "return", "score")  # the kinds whose curves are better higher (loss: lower)
QUANTITY = {"acc": "accuracy", "return": "return", "score": "score", "loss": "loss"}  # what each kind measures
# the suffixes aggregation adds to a summary's name (lossmooth.results.aggregate): longest first
SUFFIXES = ("_mean_lo", "_mean_hi", "_iqm_lo", "_iqm_hi", "_diff_lo", "_diff_hi", "_diff_p_holm", "_diff_p",
            "_diff_q", "_mean", "_iqm", "_diff")


@dataclasses.dataclass(frozen=True)
class CurveNames:
    """What a table knows of its runs' curves: the kind, the target and source curve names (``source``
    None: one task, the target curve plays both parts) and whether the source curve is a perplexity."""

    kind: str
    target: str
    source: str | None = None
    source_perplexity: bool = False

    @property
    def standard(self) -> bool:
        """Whether these are the kind's standard curves (:data:`STANDARD`), whose labels are the
        committed tables' wording."""
        return STANDARD.get(self.kind) == self

    @property
    def higher(self) -> bool:
        """Whether a higher value of these curves is better."""
        return curve_higher(self.kind)

    def words(self) -> dict:
        """The words a label template is filled with: ``t`` and ``s`` the curves' names, ``harm`` the
        word for a loss of performance (``drop``; ``rise`` where lower is better), ``gain`` its opposite,
        ``q`` the kind (a sequence's task curves are named ``task<j>_<kind>``)."""
        t = self.target.replace("_", " ")
        s = (self.source or self.target).replace("_", " ")
        return {"t": t, "s": s, "q": self.kind, "harm": "drop" if self.higher else "rise",
                "gain": "rise" if self.higher else "fall",
                "worst_s": f"log(worst {s}), nats" if self.source_perplexity else f"worst {s}"}


# each kind's standard curves: the project's settings name their curves so (supervised and vision,
# online RL, offline-to-online, LM fine-tuning)
STANDARD = {"acc": CurveNames("acc", "target_acc", "source_acc"),
            "return": CurveNames("return", "target_return", "source_return"),
            "score": CurveNames("score", "target_score"),
            "loss": CurveNames("loss", "target_loss", "replay_ppl", source_perplexity=True)}


@dataclasses.dataclass(frozen=True)
class Metric:
    """One summary: ``name`` its column (``{target}``/``{source}``: the curve's name goes there), what it
    ``reads`` (``target``, ``source``, ``both`` curves; ``sequence``: every task's; ``success``: the
    success-rate curve; ``judge``: the judged replies), the ``kinds`` of runs that have it, its ``sense``
    (:data:`SENSES`), ``meaning`` (neutral: true of every kind), ``label`` (a template filled in with
    :meth:`CurveNames.words`), ``labels`` (kind -> the label of that kind's standard curves, where it
    differs), ``family`` (``curve``: every run of its kinds has it; ``field``, ``dense``, ``sequence``,
    ``judge``, ``goal``: runs have it where they were made with it) and ``compute``, the function in
    :mod:`lossmooth.results.summaries` that computes it (``judge``: the LM setting's judge, which
    compares replies, not curves)."""

    name: str
    reads: str
    kinds: tuple
    sense: str
    meaning: str
    label: str
    labels: dict = dataclasses.field(default_factory=dict)
    family: str = "curve"
    compute: str = "summarize_curves"

    def higher_is_better(self, kind: str) -> bool:
        """The direction of this summary in runs of ``kind``."""
        return {"value": curve_higher(kind), "harm": False, "gain": True}[self.sense]

    def column(self, curves: CurveNames) -> str:
        """This summary's column name for runs with ``curves``."""
        return self.name.format(target=curves.target, source=curves.source or curves.target)

    def title(self, curves: CurveNames) -> str:
        """This summary's label for runs with ``curves`` (module docstring)."""
        if curves.standard and curves.kind in self.labels:
            return self.labels[curves.kind]
        return self.label.format(**curves.words())


_ALL = KINDS
_TWO = ("acc", "return", "loss")  # kinds whose settings have a source curve
_UP = HIGHER_KINDS
REGISTRY = (
    Metric("final_{target}", "target", _ALL, "value", "target value at the end of the adaptation", "final {t}",
           {"score": "final score"}),
    Metric("{source}_after", "source", _TWO, "value", "source value at the end of the adaptation (what is left)",
           "{s} after (forgetting)", {"loss": "replay perplexity after (forgetting)"}),
    Metric("forgetting", "source", _TWO, "harm", "source value at the switch minus at the end (a loss's rise)",
           "forgetting ({s} {harm})"),
    Metric("best_{target}", "target", ("score",), "value", "best target value after the switch", "best {t}",
           {"score": "best score"}),
    Metric("worst_{target}", "target", _ALL, "value", "worst target value within the gap window after the switch",
           "worst {t} after switch", {"score": "worst score after switch"}),
    Metric("stability_gap", "source", _ALL, "harm",
           "the source curve's transient drop below its value at the switch within the gap window (a rise, "
           "where lower is better; the target curve's where there is no source curve)",
           "stability gap ({s} {harm} after switch)",
           {"acc": "stability gap (source drop after switch)",
            "return": "stability gap (source return drop after switch)",
            "loss": "stability gap (replay ppl rise after switch)",
            "score": "stability gap (score drop after switch)"}),
    Metric("target_dip", "target", _ALL, "harm",
           "the target curve's drop below its value at the switch within the gap window (a rise, where lower "
           "is better)", "target dip ({t} {harm} after switch)",
           {"acc": "target dip after switch", "return": "target dip after switch",
            "loss": "target dip (target loss rise after switch)"}),
    Metric("auc_target", "target", _UP, "value", "mean target value over the adaptation (trapezoid area / length)",
           "area under {t} curve (mean {t})",
           {"return": "area under target curve (mean return)", "score": "area under score curve (mean score)"}),
    Metric("auc_{target}", "target", ("loss",), "value",
           "mean target value over the adaptation (trapezoid area / length)", "area under {t} curve (mean {t})"),
    Metric("regret", "success", ("score",), "harm", "1 - the mean success rate over the evaluations after the switch",
           "regret (1 - mean online success rate)", family="goal"),
    Metric("min_acc", "source", _ALL, "value",
           "worst source value after the switch (min-ACC)",
           "worst {s} after the switch",
           {"acc": "min-ACC (worst source acc)", "return": "min-ACC (worst source return)",
            "loss": "min-ACC analogue (worst replay ppl)", "score": "min-ACC (worst score after switch)"},
           "field", "field_metrics"),
    Metric("wc_acc", "both", _ALL, "value",
           "1/2 final target value + 1/2 worst source value after the switch (WC-ACC)", "1/2 final {t} + 1/2 {worst_s}",
           {"acc": "WC-ACC", "return": "WC-ACC (returns)", "loss": "WC-ACC analogue (nats)",
            "score": "WC-ACC (scores)"},
           "field", "field_metrics"),
    Metric("windowed_forgetting", "source", _ALL, "harm",
           "largest loss of source performance within w consecutive evaluations (WF^w)",
           "WF^w ({s} {harm})", {"acc": "WF^w (source drop)", "return": "WF^w (source drop)",
                                 "loss": "WF^w (replay ppl rise)", "score": "WF^w (score drop)"},
           "field", "field_metrics"),
    Metric("windowed_plasticity", "target", _ALL, "gain",
           "largest gain of target performance within w consecutive evaluations (WP^w)",
           "WP^w ({t} {gain})", {"acc": "WP^w (target rise)", "return": "WP^w (target rise)",
                                 "loss": "WP^w (target loss fall)", "score": "WP^w (score rise)"},
           "field", "field_metrics"),
    Metric("lca", "target", _ALL, "value",
           "mean target value of the first beta evaluations after the switch (LCA^beta)",
           "LCA^beta ({t})", {"acc": "LCA^beta (target)", "return": "LCA^beta (target)",
                              "loss": "LCA^beta (target loss)", "score": "LCA^beta (score)"},
           "field", "field_metrics"),
    Metric("source_at_switch", "source", _ALL, "value", "source value at the switch", "{s} at the switch",
           family="field", compute="field_metrics"),
    Metric("target_at_switch", "target", _ALL, "value", "target value at the switch", "{t} at the switch",
           family="field", compute="field_metrics"),
    Metric("source_drop", "source", _ALL, "harm",
           "source value at the switch minus the worst after it (a rise, where lower is better; negative where "
           "it never gets worse)", "{s} {harm} at its worst", family="field", compute="field_metrics"),
    Metric("target_gain", "target", _ALL, "gain",
           "what the adaptation adds on the target (a fall, where lower is better)",
           "{t} {gain} over the adaptation", family="field", compute="field_metrics"),
    Metric("dense_min_acc", "source", _ALL, "value", "worst source value over the first W updates after the switch",
           "worst {s}, every update (dense)", {"acc": "min-ACC, every update (dense)"}, "dense", "dense_summaries"),
    Metric("dense_source_drop", "source", _ALL, "harm",
           "source value at the switch minus its worst over the first W updates", "{s} {harm}, every update (dense)",
           {"acc": "source drop, every update (dense)"}, "dense", "dense_summaries"),
    Metric("dense_stability_gap", "source", _ALL, "harm", "the dense source drop where it is positive",
           "stability gap, every update (dense)", {"acc": "stability gap, every update (dense)"}, "dense",
           "dense_summaries"),
    # the update at which the source curve is at its worst: no direction of its own; it keeps the
    # curve's, as the Findings have always read it
    Metric("dense_min_step", "source", _ALL, "value", "first update after the switch at which the source curve is "
           "at its worst", "update of the worst {s} (dense)", family="dense", compute="dense_summaries"),
    Metric("dense_worst_target", "target", _ALL, "value", "worst target value over the first W updates",
           "worst {t}, every update (dense)", family="dense", compute="dense_summaries"),
    Metric("dense_target_dip", "target", _ALL, "harm", "the target curve's drop below its value at the switch over "
           "the first W updates", "target dip ({t} {harm}), every update (dense)",
           {"acc": "target dip, every update (dense)"}, "dense", "dense_summaries"),
    Metric("dense_windowed_forgetting", "source", _ALL, "harm", "WF^w of the source curve, w counted in updates",
           "WF^w ({s} {harm}), every update (dense)", family="dense", compute="dense_summaries"),
    Metric("seq_avg_final_acc", "sequence", _UP, "value", "mean value over all tasks at the end of the sequence",
           "avg final {q} (all tasks)", family="sequence", compute="sequence_summaries"),
    Metric("seq_min_acc", "sequence", _UP, "value", "for each earlier task its worst value after its training ended, "
           "averaged", "min-ACC (k tasks)", family="sequence", compute="sequence_summaries"),
    Metric("seq_wc_acc", "sequence", _UP, "value", "1/(k+1) final value on the last task + k/(k+1) seq min-ACC",
           "WC-ACC (k tasks)", family="sequence", compute="sequence_summaries"),
    Metric("seq_forgetting", "sequence", _UP, "harm", "a task's value at the end of its training minus at the end, "
           "averaged over earlier tasks", "forgetting (mean over earlier tasks)", family="sequence",
           compute="sequence_summaries"),
    Metric("seq_final_acc", "sequence", _UP, "value", "a task's value at the end of the sequence",
           "final {q}, task", family="sequence", compute="sequence_summaries"),
    Metric("judge_win_rate", "judge", ("loss",), "gain", "share of pairwise wins (ties half) against the reference "
           "run's replies", "judge win rate vs reference", family="judge", compute="judge"),
)
BY_NAME = {m.name: m for m in REGISTRY}
_TASK = re.compile(r"_task\d+$")  # a sequence's per-task column: seq_min_acc_task2


def summary_name(key: str) -> str:
    """The summary a table column or aggregated key names (``min_acc_diff_p_holm`` -> ``min_acc``)."""
    for suffix in SUFFIXES:
        if key.endswith(suffix):
            return key[:-len(suffix)]
    return key


def lookup(name: str) -> Metric | None:
    """The registry entry of the summary ``name`` (a column name as runs have it: ``final_mse``,
    ``source_mse_after``, ``seq_min_acc_task1``), or None where no entry describes it."""
    name = _TASK.sub("", name)
    if name in BY_NAME:
        return BY_NAME[name]
    for prefix, template in (("final_", "final_{target}"), ("worst_", "worst_{target}"), ("best_", "best_{target}"),
                             ("auc_", "auc_{target}")):
        if name.startswith(prefix) and len(name) > len(prefix):
            return BY_NAME[template]
    if name.endswith("_after") and len(name) > len("_after"):
        return BY_NAME["{source}_after"]
    return None


def is_summary_name(name: str) -> bool:
    """Whether ``name`` is a summary a run can have (an entry of :data:`REGISTRY`, its curve names filled in)."""
    return lookup(name) is not None


def higher_is_better(name: str, kind: str = "acc") -> bool:
    """The direction of the summary ``name`` in runs whose curves are of ``kind`` (module docstring); a
    name the registry does not hold is read as a value of the curves."""
    m = lookup(name)
    return m.higher_is_better(kind) if m is not None else curve_higher(kind)


def curve_higher(kind: str) -> bool:
    """Whether a higher value of a curve of ``kind`` is better."""
    return kind in HIGHER_KINDS


def names(family: str, kind: str = "acc") -> tuple:
    """The column names of the registry's ``family`` (e.g. ``field``) for ``kind``'s standard curves."""
    return tuple(m.column(STANDARD[kind]) for m in REGISTRY if m.family == family and kind in m.kinds)


def names_of(rows: list[dict]) -> set:
    """The summary names in ``rows``: runs (their ``summary``), summaries, aggregated entries or table rows
    (suffixes dropped)."""
    keys = set()
    for r in rows:
        keys.update(r["summary"] if isinstance(r.get("summary"), dict) else r)
    return {summary_name(k) for k in keys}


def kind_of(rows: list[dict]) -> str:
    """The kind of the runs behind ``rows`` (their summaries, aggregated entries or CSV rows), read from
    the summaries' names: a kind's standard target curve (``final_target_score``, ``..._return``,
    ``..._loss``); else ``loss`` where a target curve's mean is named after it (``final_<t>`` with
    ``auc_<t>``: only lower-is-better runs name it so), ``score`` where it has ``best_<t>`` (one task);
    else ``acc``."""
    return _kind(names_of(rows))


def _kind(names: set) -> str:
    for kind in ("score", "return", "loss"):
        if any(n.startswith(f"final_target_{kind}") for n in names):
            return kind
    finals = [n[len("final_"):] for n in names if n.startswith("final_")]
    if any(f"auc_{t}" in names for t in finals):
        return "loss"
    if any(f"best_{t}" in names for t in finals):
        return "score"
    return "acc"


def source_perplexity(curves: dict | None, setting: str | None = None) -> bool:
    """Whether a run's source curve is a perplexity, from its recorded curve names (runs.json's
    ``curves``); runs made before the flag was recorded: the LM's replay curve."""
    names = curves or {}
    return bool(names.get("source_perplexity", setting == "lm" and names.get("source") == "replay_ppl"))


def curves_of(rows: list[dict]) -> CurveNames:
    """The curves of the runs behind ``rows`` (runs or aggregated entries of one setting): their
    recorded names (``curves``) where rows carry them, else read from the summaries' names (the kind's
    standard curves, a source curve ``<s>_after`` where one is named otherwise)."""
    names = names_of(rows)
    kind = _kind(names)
    recorded = next((r for r in rows if r.get("curves")), None)
    if recorded is not None:
        c = recorded["curves"]
        return CurveNames(kind, c["target"], c.get("source"), source_perplexity(c, recorded.get("setting")))
    std = STANDARD[kind]
    source = std.source
    if source is not None and f"{source}_after" not in names:
        after = sorted(n[:-len("_after")] for n in names if n.endswith("_after"))
        source = after[0] if after else source
    return dataclasses.replace(std, source=source) if source != std.source else std
