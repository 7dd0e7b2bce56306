"""The field's metrics around a switch (lossmooth.results.summaries.field_metrics) against their
definitions: min-ACC, WC-ACC, WF^w, WP^w, LCA^beta, and their directions for losses."""
import numpy as np
import pytest

from lossmooth.results import summaries as S
from lossmooth.results.metrics import higher_is_better


def brute(a, b, window, beta, lower_is_better=False):
    """The definitions written as plainly as possible (double loops)."""
    s = -1.0 if lower_is_better else 1.0
    n = len(a)
    wf = max([0.0] + [s * (b[i] - b[j]) for i in range(n) for j in range(i + 1, n) if j - i < window])
    wp = max([0.0] + [s * (a[j] - a[i]) for i in range(n) for j in range(i + 1, n) if j - i < window])
    worst = max(b[1:]) if lower_is_better else min(b[1:])
    return {"min_acc": worst, "wc_acc": 0.5 * a[-1] + 0.5 * (np.log(worst) if lower_is_better else worst),
            "windowed_forgetting": wf, "windowed_plasticity": wp, "lca": float(np.mean(a[1:1 + beta])),
            "source_at_switch": b[0], "target_at_switch": a[0],
            "source_drop": s * (b[0] - worst), "target_gain": s * (a[-1] - a[0])}


@pytest.mark.parametrize("kind", ["acc", "return", "loss"])
@pytest.mark.parametrize("window,beta", [(2, 1), (3, 4), (10, 10), (50, 50)])
def test_field_metrics_match_their_definitions(kind, window, beta):
    rng = np.random.default_rng(window * 7 + beta)
    a, b = rng.uniform(0.5, 3.0, 17), rng.uniform(0.5, 3.0, 17)
    got = S.field_metrics(kind, a, b, window, beta, source_perplexity=kind == "loss")  # b: a perplexity
    want = brute(list(a), list(b), window, beta, lower_is_better=kind == "loss")
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-12), k


def test_a_source_dip_after_the_switch_is_what_min_acc_and_wf_see():
    """The switch's own evaluation never counts as 'after the switch' for min-ACC, but a drop from it
    counts for WF^w; a slow drop spread wider than the window is seen only in part."""
    b = np.array([0.2, 0.9, 0.8, 0.85, 0.9])  # the source low at the switch, then good
    m = S.field_metrics("acc", np.linspace(0, 1, 5), b, window=2)
    assert m["min_acc"] == pytest.approx(0.8) and m["windowed_forgetting"] == pytest.approx(0.1)
    slow = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.9])
    assert S.field_metrics("acc", np.ones(6), slow, window=2)["windowed_forgetting"] == pytest.approx(0.1)
    assert S.field_metrics("acc", np.ones(6), slow, window=5)["windowed_forgetting"] == pytest.approx(0.4)
    # a curve that only improves has no windowed forgetting; one that only falls has no plasticity
    up = np.linspace(0.1, 0.9, 9)
    m = S.field_metrics("acc", up[::-1], up, window=10)
    assert m["windowed_forgetting"] == 0.0 and m["windowed_plasticity"] == 0.0


def test_one_task_uses_the_target_curve_for_both_parts():
    """Offline-to-online (no source curve): min-ACC is the worst score after the switch, and the same
    numbers come out as with the target passed as the source."""
    score = np.array([50.0, 20.0, 35.0, 70.0, 65.0])
    m = S.field_metrics("score", score, None, window=3, lca_beta=2)
    assert m == S.field_metrics("score", score, score, window=3, lca_beta=2)
    assert m["min_acc"] == 20.0 and m["wc_acc"] == 0.5 * 65.0 + 0.5 * 20.0
    assert m["windowed_forgetting"] == 30.0 and m["windowed_plasticity"] == 50.0 and m["lca"] == 27.5


def test_directions():
    assert not higher_is_better("windowed_forgetting", "acc")
    assert higher_is_better("min_acc", "return") and not higher_is_better("min_acc", "loss")
    assert higher_is_better("windowed_plasticity", "loss") and not higher_is_better("lca", "loss")


def test_summaries_carry_the_field_metrics_in_every_kind():
    steps = np.arange(0, 60, 5)
    curve = np.linspace(1.0, 2.0, len(steps))
    for out in (S.summarize(steps, curve, curve[::-1], 10), S.summarize_scores(steps, curve, 10),
                S.summarize_lm(steps, curve[::-1], curve, 10)):
        assert set(S.FIELD_METRICS) <= set(out)


def test_returns_normalized_by_the_hard_switch_leave_out_contexts_it_cannot_divide_by():
    """score = return / mean hard-switch return of the same context; a context whose hard-switch mean
    is <= 0 (pendulum's costs) has no such ratio and is counted as left out, not divided."""
    from lossmooth.results.aggregate import normalized_by_baseline

    def run(method, key, value):
        return {"method": method, "pair_key": key, "hparams": {}, "diverged_step": -1,
                "summary": {"final_target_return": value}}

    rows = [run("hard_switch", "hopper", v) for v in (1000.0, 1200.0)] + \
           [run("loss_smoothing", "hopper", v) for v in (1100.0, 1320.0)] + \
           [run("hard_switch", "pendulum", v) for v in (-300.0, -500.0)] + \
           [run("loss_smoothing", "pendulum", v) for v in (-200.0, -400.0)]
    out = {e["method"]: e for e in normalized_by_baseline(rows, reps=200)}
    assert out["hard_switch"]["n"] == 2 and out["hard_switch"]["n_skipped"] == 2
    assert out["loss_smoothing"]["mean"] == pytest.approx((1100 + 1320) / 1100 / 2)
    assert out["loss_smoothing"]["n_skipped"] == 2
    assert normalized_by_baseline(rows[4:], reps=200) == []  # nothing left to pool
