"""The metrics registry (lossmooth/results/metrics.py): every summary the runner computes has an entry,
directions follow each entry's sense in every kind, and a table's labels come from its runs' own curve
names: a loss-kind setting whose curves are MSEs is never labelled with the LM's SFT loss or perplexity."""
import numpy as np
import pytest

from lossmooth.results import aggregate as agg
from lossmooth.results import metrics as M
from lossmooth.results import summaries as S
from lossmooth.results import tables


class _Curves:
    def __init__(self, kind, target, source=None, success=None, source_perplexity=False):
        self.kind, self.target, self.source, self.success = kind, target, source, success
        self.source_perplexity = source_perplexity


STEPS = np.arange(0, 60, 10)


def _summary(curves, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    a = np.linspace(2.0, 1.0, len(STEPS)) + shift + 0.01 * rng.standard_normal(len(STEPS))
    b = np.array([0.5, 0.9, 0.8, 0.7, 0.65, 0.6]) + 0.01 * rng.standard_normal(len(STEPS))
    metrics = {curves.target: a}
    if curves.source:
        metrics[curves.source] = b
    return S.summarize_curves(curves, STEPS, metrics, gap_window=20)


def _rows(curves, setting="regress", n=4):
    recorded = {"target": curves.target, "source": curves.source,
                **({"source_perplexity": True} if curves.source_perplexity else {})}
    return [{"setting": setting, "dataset": "d", "model": "m", "shift": "s", "severity": None, "method": method,
             "hparams": {"lr": 1e-3}, "pair_key": "k", "seed": seed, "diverged_step": -1, "run_dir": "r",
             "curves": recorded, "summary": _summary(curves, seed, 0.1 * (method != "hard_switch"))}
            for seed in range(n) for method in ("hard_switch", "loss_smoothing")]


def test_every_summary_the_runner_computes_has_an_entry():
    for curves in (_Curves("acc", "target_acc", "source_acc"), _Curves("return", "target_return", "source_return"),
                   _Curves("score", "target_score", None, "target_success"),
                   _Curves("loss", "target_loss", "replay_ppl", source_perplexity=True),
                   _Curves("loss", "mse", "source_mse")):
        metrics = {curves.target: np.linspace(1.0, 2.0, len(STEPS))}
        if curves.source:
            metrics[curves.source] = np.linspace(2.0, 1.0, len(STEPS))
        if curves.success:
            metrics[curves.success] = np.linspace(0.0, 1.0, len(STEPS))
        names = set(S.summarize_curves(curves, STEPS, metrics, gap_window=20))
        names |= set(S.dense_summaries(curves, metrics))
        missing = [n for n in names if M.lookup(n) is None]
        assert not missing, (curves.kind, missing)
        for n in names:  # an entry says which kinds have it
            assert curves.kind in M.lookup(n).kinds, (n, curves.kind)
    seq = S.sequence_summaries([np.array([0.9, 0.5, 0.6]), np.array([0.1, 0.8, 0.7]), np.array([0.1, 0.2, 0.9])],
                               [0, 1, 2])
    assert all(M.is_summary_name(n) for n in seq)
    assert not M.is_summary_name("acuracy") and not M.is_summary_name("final_")
    # each entry names the function that computes it
    assert all(callable(getattr(S, m.compute, None)) for m in M.REGISTRY if m.compute != "judge")
    assert {m.sense for m in M.REGISTRY} <= set(M.SENSES) and all(set(m.kinds) <= set(M.KINDS) for m in M.REGISTRY)


def test_directions_follow_each_summary_sense_in_every_kind():
    # a value of a curve: better in the curve's direction (min_acc is a worst perplexity in the LM)
    assert M.higher_is_better("min_acc", "acc") and M.higher_is_better("min_acc", "score")
    assert not M.higher_is_better("min_acc", "loss") and not M.higher_is_better("final_mse", "loss")
    # a harm: lower is better everywhere; a gain: higher is better everywhere
    for kind in M.KINDS:
        assert not M.higher_is_better("windowed_forgetting", kind) and not M.higher_is_better("source_drop", kind)
        assert M.higher_is_better("windowed_plasticity", kind) and M.higher_is_better("target_gain", kind)
    assert M.higher_is_better("judge_win_rate", "loss")  # a win rate, whatever the curves
    assert not M.higher_is_better("seq_forgetting_task1", "acc") and M.higher_is_better("seq_min_acc_task0", "acc")


def test_the_kind_is_read_from_the_summaries_names_whatever_the_curves_are_called():
    assert M.kind_of([_summary(_Curves("loss", "mse", "source_mse"), 0)]) == "loss"
    assert M.kind_of([_summary(_Curves("score", "success", None), 0)]) == "score"
    assert M.kind_of([_summary(_Curves("acc", "target_acc", "source_acc"), 0)]) == "acc"
    assert M.kind_of([{"final_target_loss_mean": 1.0, "min_acc_diff_p_holm": 0.1}]) == "loss"


def test_a_loss_setting_of_mses_is_labelled_with_its_own_curves():
    curves = _Curves("loss", "mse", "source_mse")
    groups, diffs, normalized = agg.tables(_rows(curves), reps=50)
    md = tables.markdown(groups, diffs, "mean", normalized)
    for lm_word in ("SFT", "perplexity", "ppl", "replay", "nats", "log"):
        assert lm_word not in md, lm_word
    assert "final mse" in md and "source mse after (forgetting)" in md
    assert "worst source mse after the switch" in md and "1/2 final mse + 1/2 worst source mse" in md
    assert "lower is better" in md
    # WC-ACC of two MSEs: no log taken
    s = _rows(curves)[0]["summary"]
    assert s["wc_acc"] == pytest.approx(0.5 * s["final_mse"] + 0.5 * s["min_acc"])
    # the curves' names label the table; they are not a column of its CSV
    assert "curves" not in tables.csv_text(groups, diffs, normalized).splitlines()[0].split(",")


def test_a_perplexity_of_another_name_is_labelled_in_nats_and_the_lm_keeps_its_wording():
    own = tables.markdown(*agg.tables(_rows(_Curves("loss", "chat_loss", "web_ppl", source_perplexity=True)),
                                      reps=50)[:2])
    assert "1/2 final chat loss + 1/2 log(worst web ppl), nats" in own and "SFT" not in own
    lm = tables.markdown(*agg.tables(_rows(_Curves("loss", "target_loss", "replay_ppl", source_perplexity=True),
                                           setting="lm"), reps=50)[:2])
    assert "min-ACC analogue (worst replay ppl)" in lm and "Held-out target SFT loss" in lm
    # runs made before the perplexity flag was recorded: the LM's replay curve is one
    assert M.source_perplexity({"target": "target_loss", "source": "replay_ppl"}, "lm")
    assert not M.source_perplexity({"target": "target_loss", "source": "source_loss"}, "toy")
