"""Per-run summaries of the curves around the switch.

With evaluations at adaptation steps s_0 = 0 (the switch), s_1, ..., s_n, target performance a_i and
source performance b_i (accuracy in the supervised settings, ``unit="acc"``; deterministic-policy
return in the RL settings, ``unit="return"``, which replaces ``acc`` in the names below):

- ``final_target_acc``  = a_n
- ``source_acc_after``  = b_n                        (source ability left after adaptation)
- ``forgetting``        = b_0 - b_n                  (source accuracy lost by adapting)
- ``worst_target_acc``  = min { a_i : 0 < s_i <= W } (W = gap window: just after the switch)
- ``stability_gap``     = max(0, b_0 - min { b_i : 0 < s_i <= W })  (the *source* curve's transient drop
  below its value at the switch within the gap window: the stability gap of De Lange, van de Ven and
  Tuytelaars, ICLR 2023, measured at the evaluations the run makes; ``dense_stability_gap`` below is
  the same at every update)
- ``target_dip``        = max(0, a_0 - worst_target_acc)  (the *target* curve's drop below its value at
  the switch just after it: a different quantity, zero where the target starts at chance)
- ``auc_target``        = trapezoid area under a(s) over [0, s_n], divided by s_n (a mean accuracy)

Offline-to-online RL (``unit="score"``: D4RL-normalized score of the deterministic policy; there is
one task, so no source curve): ``final_target_score`` = a_n, ``best_target_score`` = max_{i>0} a_i,
``worst_target_score``, ``target_dip`` and ``stability_gap`` as above with b = a (the earlier task is the
offline one, a_0 the offline agent's score: both are the drop below it after the switch), ``auc_target``.

LM fine-tuning (``unit="loss"``; lower is better for every curve): with the held-out target SFT loss
a_i and the held-out replay perplexity b_i,
``final_target_loss`` = a_n, ``replay_ppl_after`` = b_n, ``forgetting`` = b_n - b_0 (perplexity gained
on replay text), ``worst_target_loss`` = max { a_i : 0 < s_i <= W }, ``stability_gap`` =
max(0, max { b_i : 0 < s_i <= W } - b_0) (the replay perplexity's transient rise above its value at
the switch), ``target_dip`` = max(0, worst_target_loss - a_0) (a rise of the target loss above its
value at the switch), and ``auc_target_loss``, the mean target loss over the adaptation (trapezoid
area / s_n).

The continual-learning field's metrics around a switch (De Lange, van de Ven and Tuytelaars, ICLR 2023,
"Continual evaluation for lifelong learning: identifying the stability gap"; LCA: Chaudhry et al., ICLR
2019, "Efficient lifelong learning with A-GEM"), for one switch, from the same evaluations, with ``w``
evaluations per window and ``beta`` evaluations for the learning curve area (config ``summaries.window``
and ``summaries.lca_beta``, both assumed):

- ``min_acc``   (min-ACC) = min { b_i : i > 0 }: the worst source performance after the switch;
- ``wc_acc``    (WC-ACC)  = 1/2 a_n + 1/2 min_acc: final target and worst source ability together;
- ``windowed_forgetting``  (WF^w) = max { b_i - b_j : 0 <= i < j <= n, j - i < w } (and >= 0): the largest
  drop of the source curve within w consecutive evaluations, the switch's included;
- ``windowed_plasticity``  (WP^w) = max { a_j - a_i : 0 <= i < j <= n, j - i < w } (and >= 0): the largest
  rise of the target curve within w consecutive evaluations;
- ``lca``       (LCA^beta) = mean(a_1, ..., a_beta): how fast the target is learnt just after the switch;

and the values the defaults' criteria (README: "What the defaults measure") are stated in:

- ``source_at_switch`` = b_0 and ``target_at_switch`` = a_0: the source model's (agent's) performance on
  each objective at the switch;
- ``source_drop`` = b_0 - min_acc: how far the source performance falls below its value at the switch
  at its worst (negative where it never falls below it);
- ``target_gain`` = a_n - a_0: what the adaptation adds on the target.

With dense evaluation (config ``dense_eval``: an evaluation after each of the first W updates, on
the whole evaluation sets or their first ``size`` examples), from those curves a'_0, ..., a'_W and
b'_0, ..., b'_W (update k after the switch):

- ``dense_min_acc`` = min { b'_k : 0 < k <= W } and ``dense_source_drop`` = b'_0 - dense_min_acc;
- ``dense_min_step``: the first k where b'_k = dense_min_acc (when the source curve bottoms out);
- ``dense_stability_gap`` = max(0, dense_source_drop): the stability gap at every update;
- ``dense_worst_target`` = min { a'_k : 0 < k <= W } and ``dense_target_dip`` = max(0, a'_0 - dense_worst_target);
- ``dense_windowed_forgetting`` = WF^w of b' (w counted in updates).

A minimum over many evaluations of a subset is biased low by the subset's sampling noise (more so the
smaller ``size``); both methods' runs are evaluated on the same subset, so paired differences keep
the bias out only as far as it is the same for both.

Directions are the metrics registry's (:mod:`lossmooth.results.metrics`): a value of a curve (``min_acc``,
``wc_acc``, ``lca``) is better in the curve's own direction, a harm (``windowed_forgetting``) lower and a
gain (``windowed_plasticity``) higher, in every kind. With one task and no source
curve (``score``: offline-to-online, the online task is the offline one) the target curve plays both parts:
``min_acc`` is the worst score after the switch and ``windowed_forgetting`` its largest fall. Where lower
is better (``loss``: the LM, the source curve a replay perplexity) every "min" is a max and every "drop"
a rise: ``min_acc`` = max { b_i : i > 0 } (the worst replay perplexity, lower is better),
``wc_acc`` = 1/2 a_n + 1/2 log(min_acc) where the source curve is a perplexity (final target loss and
worst replay loss in nats, lower is better; ``Curves.source_perplexity``), else 1/2 a_n + 1/2 min_acc
(two losses of one kind, e.g. MSEs: no log is taken of a loss that is not a log-likelihood), ``windowed_forgetting`` the largest rise of the perplexity (lower is better),
``windowed_plasticity`` the largest fall of the target loss (higher is better), ``lca`` the mean target
loss of the first beta evaluations (lower is better), ``source_drop`` = min_acc - b_0 (the perplexity's
worst rise) and ``target_gain`` = a_0 - a_n (the target loss's fall): both stay "larger = more drop /
more gain".
"""
from __future__ import annotations

import numpy as np

from lossmooth.results.metrics import curve_higher, names

FIELD_METRICS = names("field")  # what field_metrics returns
WINDOW, LCA_BETA = 10, 10  # the defaults of conf/config.yaml's summaries.window and summaries.lca_beta


def _largest_change(x: np.ndarray, window: int) -> float:
    """max { x_j - x_i : i < j, j - i < window } and 0: the largest rise within ``window`` consecutive values."""
    best = 0.0
    for lag in range(1, min(window, len(x))):
        best = max(best, float(np.max(x[lag:] - x[:-lag])))
    return best


def field_metrics(kind: str, a: np.ndarray, b: np.ndarray | None, window: int = WINDOW,
                  lca_beta: int = LCA_BETA, source_perplexity: bool = False) -> dict:
    """min-ACC, WC-ACC, WF^w, WP^w and LCA^beta of one run (module docstring) from its target curve ``a``
    and source curve ``b`` (None: one task, ``a`` plays both parts), both evaluated at the switch first;
    ``source_perplexity``: ``b`` is a perplexity (kind ``loss``), so WC-ACC takes its log (nats)."""
    a = np.asarray(a, np.float64)
    b = a if b is None else np.asarray(b, np.float64)
    sign = 1.0 if curve_higher(kind) else -1.0  # lower is better: every min a max, every drop a rise
    after = b[1:] if len(b) > 1 else b
    worst = float(sign * np.min(sign * after))
    return {"min_acc": worst,
            "wc_acc": 0.5 * float(a[-1]) + 0.5 * (float(np.log(worst)) if source_perplexity else worst),
            "windowed_forgetting": _largest_change(-sign * b, window),
            "windowed_plasticity": _largest_change(sign * a, window),
            "lca": float(np.mean(a[1:1 + lca_beta] if len(a) > 1 else a)),
            "source_at_switch": float(b[0]), "target_at_switch": float(a[0]),
            "source_drop": sign * (float(b[0]) - worst), "target_gain": sign * (float(a[-1]) - float(a[0]))}


def sequence_summaries(curves: list, ends: list) -> dict:
    """The k-task metrics of one run through a sequence of k switches (tasks 0..k; De Lange et al. 2023).

    ``curves[j]``: A_j, task j's accuracy at every evaluation of the whole sequence (evaluation 0 at
    the first switch, each evaluation once); ``ends[j]``: e_j, the evaluation at which task j's
    training ended (e_0 = 0, the first switch; e_j the end of switch j; e_k the last evaluation, n).

    - ``seq_final_acc_task<j>`` = A_j(n); ``seq_avg_final_acc`` = mean_j A_j(n) (average accuracy
      over all k + 1 tasks at the end; higher is better);
    - ``seq_min_acc_task<j>`` = min { A_j(t) : e_j < t <= n } for each earlier task j < k, and
      ``seq_min_acc`` their mean (min-ACC with k tasks; higher is better);
    - ``seq_wc_acc`` = 1/(k+1) A_k(n) + (1 - 1/(k+1)) seq_min_acc (WC-ACC at the end of the sequence:
      k + 1 tasks seen; higher is better);
    - ``seq_forgetting_task<j>`` = A_j(e_j) - A_j(n) for j < k (what task j lost from the end of its
      training to the end; lower is better) and ``seq_forgetting`` their mean.
    """
    curves = [np.asarray(c, np.float64) for c in curves]
    k = len(curves) - 1
    final = [float(c[-1]) for c in curves]
    out = {"seq_avg_final_acc": float(np.mean(final))}
    mins, lost = [], []
    for j in range(k):
        after = curves[j][ends[j] + 1:]
        mins.append(float(after.min()) if len(after) else final[j])
        lost.append(float(curves[j][ends[j]]) - final[j])
    out["seq_min_acc"] = float(np.mean(mins))
    out["seq_wc_acc"] = final[k] / (k + 1) + (1.0 - 1.0 / (k + 1)) * out["seq_min_acc"]
    out["seq_forgetting"] = float(np.mean(lost))
    for j in range(k + 1):
        out[f"seq_final_acc_task{j}"] = final[j]
    for j in range(k):
        out[f"seq_min_acc_task{j}"] = mins[j]
        out[f"seq_forgetting_task{j}"] = lost[j]
    return out


def dense_summaries(curves, metrics: dict, window: int = WINDOW) -> dict:
    """The dense evaluation's summaries (module docstring) from its curves ``metrics`` (name -> values
    at updates 0, 1, ..., W), named as the setting's :class:`~lossmooth.settings.contract.Curves`."""
    a = np.asarray(metrics[curves.target], np.float64)
    b = a if curves.source is None else np.asarray(metrics[curves.source], np.float64)
    sign = 1.0 if curve_higher(curves.kind) else -1.0
    f = field_metrics(curves.kind, a, b, window)
    worst_target = float(sign * np.min(sign * a[1:]))
    return {"dense_min_acc": f["min_acc"], "dense_source_drop": f["source_drop"],
            "dense_stability_gap": max(0.0, f["source_drop"]),
            "dense_min_step": int(1 + np.argmin(sign * b[1:])), "dense_worst_target": worst_target,
            "dense_target_dip": max(0.0, sign * (float(a[0]) - worst_target)),
            "dense_windowed_forgetting": f["windowed_forgetting"]}


def _gap_window(steps: np.ndarray, gap_window: int) -> np.ndarray:
    """The evaluations just after the switch, ``0 < s_i <= W`` (or the first one, if it lies beyond W)."""
    window = (steps > 0) & (steps <= gap_window)
    if not window.any():
        window = steps == steps[steps > 0].min()
    return window


def _curve_mean(steps: np.ndarray, a: np.ndarray) -> float:
    """The trapezoid area under ``a(s)`` over ``[s_0, s_n]`` divided by its length (``a_n`` if it has none)."""
    span = steps[-1] - steps[0]
    area = np.sum((a[1:] + a[:-1]) * np.diff(steps)) / 2.0
    return float(area / span) if span > 0 else float(a[-1])


def summarize_curves(curves, steps: np.ndarray, metrics: dict, gap_window: int, window: int = WINDOW,
                     lca_beta: int = LCA_BETA) -> dict:
    """Summaries of one run from its evaluations ``metrics`` (name -> values at ``steps``, ``steps[0]``
    the switch), as the setting's :class:`~lossmooth.settings.contract.Curves` names them.

    With ``a`` the target curve and ``b`` the source curve: ``final_<a>``, ``<b>_after``, ``forgetting``
    (the source curve's loss of performance), ``worst_<a>`` (just after the switch), ``stability_gap``
    and the curve mean (``auc_target``; ``auc_<a>`` where lower is better); without a source curve
    ``best_<a>`` instead, and ``regret`` where a success curve exists. Kinds ``acc``, ``return`` and
    ``score`` are higher-is-better, ``loss`` lower-is-better; then the field's metrics
    (:func:`field_metrics`; see the module docstring)."""
    steps = np.asarray(steps, np.float64)
    a = np.asarray(metrics[curves.target], np.float64)
    higher = curve_higher(curves.kind)
    just_after = a[_gap_window(steps, gap_window)]
    worst = float(just_after.min() if higher else just_after.max())
    out = {f"final_{curves.target}": float(a[-1])}
    if curves.source is not None:
        b = np.asarray(metrics[curves.source], np.float64)
        out[f"{curves.source}_after"] = float(b[-1])
        out["forgetting"] = float(b[0] - b[-1]) if higher else float(b[-1] - b[0])
    else:
        out[f"best_{curves.target}"] = float(a[1:].max() if higher else a[1:].min())
    out[f"worst_{curves.target}"] = worst
    out["stability_gap"] = stability_gap(steps, a if curves.source is None else metrics[curves.source],
                                         gap_window, higher)
    out["target_dip"] = float(max(0.0, a[0] - worst) if higher else max(0.0, worst - a[0]))
    out["auc_target" if higher else f"auc_{curves.target}"] = _curve_mean(steps, a)
    if curves.success is not None and curves.success in metrics:
        out["regret"] = float(1.0 - np.mean(np.asarray(metrics[curves.success], np.float64)[1:]))
    out.update(field_metrics(curves.kind, a, None if curves.source is None else metrics[curves.source],
                             window, lca_beta, getattr(curves, "source_perplexity", False)))
    return out


def stability_gap(steps, b, gap_window: int, higher: bool = True) -> float:
    """The source curve ``b``'s transient drop below its value at the switch (``steps[0]``) within the
    gap window ``0 < s_i <= W`` (a rise, where lower is better): max(0, b_0 - min b_i)."""
    b = np.asarray(b, np.float64)
    just_after = b[_gap_window(np.asarray(steps, np.float64), gap_window)]
    return float(max(0.0, b[0] - just_after.min()) if higher else max(0.0, just_after.max() - b[0]))


def summarize(steps: np.ndarray, target_acc: np.ndarray, source_acc: np.ndarray,
              gap_window: int, unit: str = "acc") -> dict:
    """Summaries of one run's target and source curves (``unit``: acc or return)."""
    return summarize_curves(_Curves(unit, f"target_{unit}", f"source_{unit}"), steps,
                            {f"target_{unit}": target_acc, f"source_{unit}": source_acc}, gap_window)


def summarize_scores(steps: np.ndarray, score: np.ndarray, gap_window: int, success=None) -> dict:
    """Summaries of one offline-to-online run's normalized-score curve; with ``success`` (the
    evaluations' success rates, goal tasks: AntMaze, Adroit) also the regret, 1 - the mean success
    rate over the online evaluations (those after the switch)."""
    metrics = {"target_score": score}
    if success is not None:
        metrics["target_success"] = success
    return summarize_curves(_Curves("score", "target_score", None, "target_success"), steps, metrics, gap_window)


def summarize_lm(steps: np.ndarray, target_loss: np.ndarray, replay_ppl: np.ndarray, gap_window: int) -> dict:
    """Summaries of one LM fine-tuning run's curves (see the module docstring)."""
    return summarize_curves(_Curves("loss", "target_loss", "replay_ppl", source_perplexity=True), steps,
                            {"target_loss": target_loss, "replay_ppl": replay_ppl}, gap_window)


class _Curves:
    """The fields of :class:`lossmooth.settings.contract.Curves` this module reads (the results layer
    does not import the settings)."""

    def __init__(self, kind: str, target: str, source: str | None = None, success: str | None = None,
                 source_perplexity: bool = False):
        self.kind, self.target, self.source, self.success = kind, target, source, success
        self.source_perplexity = source_perplexity
