"""Inference over seeds (lossmooth.results.inference): the procedures against their definitions, their
calibration at our seed counts (a small version of benchmarks/calibration.py), multiplicity control,
the source-curve stability gap, and the bad input around them."""
import itertools
import os
import sys

import numpy as np
import pytest
from scipy import stats

from lossmooth.errors import ConfigError
from lossmooth.results import aggregate as agg
from lossmooth.results import inference as inf
from lossmooth.results import tables
from lossmooth.results import summaries as S

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def test_the_t_interval_is_students():
    x = np.array([1.0, 2.5, -0.5, 3.0, 0.7])
    m, lo, hi = inf.t_interval(x)
    want = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert m[0] == pytest.approx(x.mean()) and (lo[0], hi[0]) == pytest.approx(want)
    # cells of different n in one call (NaN = a seed the cell lacks)
    cells = np.array([[1.0, 2.0], [2.0, np.nan], [4.0, 3.0]])
    m, lo, hi = inf.t_interval(cells)
    assert m[1] == 2.5 and (lo[1], hi[1]) == pytest.approx(stats.t.interval(0.95, 1, 2.5, stats.sem([2.0, 3.0])))


def test_the_sign_flip_p_value_counts_every_sign_pattern():
    rng = np.random.default_rng(3)
    for n in (3, 5, 8):
        d = rng.normal(0.4, 1.0, n)
        sums = [abs(np.dot(s, d)) for s in itertools.product((-1, 1), repeat=n)]
        want = np.mean(np.array(sums) >= abs(d.sum()) * (1 - 1e-9))
        assert inf.sign_flip_p(d)[0] == pytest.approx(want)
    assert inf.sign_flip_p(np.ones(8))[0] == pytest.approx(2 / 256)  # the smallest p at n = 8
    assert inf.sign_flip_p(np.ones(4))[0] == pytest.approx(0.125)    # nothing resolves at 4 pairs
    assert inf.sign_flip_p(np.zeros(6))[0] == 1.0
    assert np.isnan(inf.sign_flip_p(np.ones(2))[0])                 # fewer than 3 pairs: no test
    # beyond 16 pairs: Monte Carlo, seeded, the identity counted
    p = inf.sign_flip_p(np.ones(20))[0]
    assert p == inf.sign_flip_p(np.ones(20))[0] and p <= 2 / (inf.MONTE_CARLO + 1)


def test_holm_and_benjamini_hochberg_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    assert inf.holm(p)[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and np.isnan(inf.holm(p)[4])
    assert inf.benjamini_hochberg(p)[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert inf.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 2 x 0.8, capped at 1


def test_the_reported_procedures_stay_calibrated_and_the_bootstrap_they_replace_does_not():
    """A quick run of the calibration study: at 4 and 8 seeds under normal and one-outlier nulls the
    t-interval covers 95% and the sign-flip test rejects at most 5% (+ Monte Carlo error); the
    percentile bootstrap's type-I error is far above 5% there (so the check has teeth)."""
    from benchmarks import calibration

    res = calibration.study(trials=4000, reps=200, boot_trials=1000, ns=(4, 8), kinds=("normal", "mixture"))
    for (kind, n), r in res.items():
        assert r["cov_t"] >= 0.935, (kind, n, r)  # (conservative under the outlier: 97%)
        assert r["t"] <= 0.065 and r["signflip"] <= 0.06, (kind, n, r)
        assert r["bootstrap"] > 0.08, (kind, n, r)


def test_iqm_bootstrap_is_seeded_and_its_point_is_rliables():
    x = np.random.default_rng(0).normal(size=(12, 3))
    a, b = inf.bootstrap_interval(x, "iqm", 500, seed=0), inf.bootstrap_interval(x, "iqm", 500, seed=0)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    from rliable import metrics as rmetrics
    assert a[0] == pytest.approx([rmetrics.aggregate_iqm(x[:, k]) for k in range(3)])
    assert np.all(a[1] <= a[0]) and np.all(a[0] <= a[2])


def _rows(diffs_by_seed, metric="final_target_acc"):
    rows = []
    for seed, d in enumerate(diffs_by_seed):
        for method, v in (("hard_switch", 0.5), ("loss_smoothing", 0.5 + d)):
            rows.append({"setting": "supervised", "dataset": "d", "model": "m", "shift": "s", "severity": 1.0,
                         "method": method, "hparams": {"lr": 1e-3}, "pair_key": "k", "seed": seed,
                         "diverged_step": -1, "run_dir": "r", "summary": {metric: v, "min_acc": v}})
    return rows


def test_paired_rows_carry_p_values_and_the_primary_family_is_holm_adjusted():
    rows = _rows([0.02, 0.03, 0.01, 0.04, 0.02, 0.03, 0.05, 0.01])
    groups, diffs, _ = agg.tables(rows, reps=100)
    (d,) = diffs
    assert d["final_target_acc_diff_p"] == pytest.approx(2 / 256)
    fam = agg.adjust_family(diffs, ["final_target_acc", "min_acc"])
    assert fam["size"] == 2 and d["final_target_acc_diff_p_holm"] == pytest.approx(4 / 256)
    md = tables.markdown(groups, diffs, "mean", None, fam)
    assert "final target acc (primary)" in md and "p_Holm 0.016" in md and "Holm-adjusted over the primary family: 2" in md
    assert "95% Student-t CIs" in md


def test_fewer_than_three_pairs_resolve_nothing():
    groups, diffs, _ = agg.tables(_rows([0.02, 0.03]), reps=100)
    (d,) = diffs
    assert np.isnan(d["final_target_acc_diff_lo"]) and np.isnan(d["final_target_acc_diff_p"])
    assert "(n < 3: unresolved)" in tables.markdown(groups, diffs)


def test_the_stability_gap_is_the_source_curves_drop_and_the_target_dip_the_target_curves():
    class C:
        kind, target, source, success = "acc", "target_acc", "source_acc", None
    steps = np.array([0, 10, 20, 30, 40])
    s = S.summarize_curves(C, steps, {"target_acc": [0.1, 0.05, 0.5, 0.7, 0.8],
                                      "source_acc": [0.9, 0.6, 0.7, 0.85, 0.8]}, gap_window=20)
    assert s["stability_gap"] == pytest.approx(0.3)   # 0.9 - min(0.6, 0.7) within 20 steps
    assert s["target_dip"] == pytest.approx(0.05)     # 0.1 - 0.05

    class L:
        kind, target, source, success = "loss", "target_loss", "replay_ppl", None
        source_perplexity = True
    s = S.summarize_curves(L, steps, {"target_loss": [2.0, 1.9, 1.8, 1.7, 1.6],
                                      "replay_ppl": [10.0, 12.0, 11.0, 10.5, 10.2]}, gap_window=20)
    assert s["stability_gap"] == pytest.approx(2.0) and s["target_dip"] == 0.0
    assert s["wc_acc"] == pytest.approx(0.5 * 1.6 + 0.5 * np.log(12.0))


def test_a_plain_loss_is_not_taken_as_a_perplexity():
    """WC-ACC of two MSE curves: no log of a loss that is not a log-likelihood."""
    f = S.field_metrics("loss", np.array([2.0, 1.0]), np.array([0.5, 0.8]))
    assert f["wc_acc"] == pytest.approx(0.5 * 1.0 + 0.5 * 0.8)
    f = S.field_metrics("loss", np.array([2.0, 1.0]), np.array([5.0, 8.0]), source_perplexity=True)
    assert f["wc_acc"] == pytest.approx(0.5 * 1.0 + 0.5 * np.log(8.0))


def test_a_run_made_before_target_dip_is_renamed_and_gets_the_source_gap_from_its_curves():
    row = {"summary": {"stability_gap": 0.2, "dense_stability_gap": 0.1, "dense_source_drop": -0.05}}
    agg.renamed(row)
    assert row["summary"] == {"target_dip": 0.2, "dense_target_dip": 0.1, "dense_source_drop": -0.05,
                              "dense_stability_gap": 0.0}
    agg.renamed(row)  # idempotent
    assert row["summary"]["target_dip"] == 0.2


def test_an_analysis_plan_with_bad_metrics_is_refused_in_one_line():
    from lossmooth.reproduce import build, registry

    base = {"description": "d", "setting": "supervised", "runs": [[]]}
    with pytest.raises(ConfigError, match="unknown metric"):
        registry._entry("x", {**base, "analysis": {"primary": ["acuracy"]}}, "x.yaml")
    with pytest.raises(ConfigError, match="analysis must be"):
        registry._entry("x", {**base, "analysis": {"family": {"method": "a"}}}, "x.yaml")
    e = registry._entry("x", {**base, "analysis": {"primary": ["final_target_return"]}}, "x.yaml")
    _, diffs, _ = agg.tables(_rows([0.1, 0.2, 0.3]), reps=100)
    with pytest.raises(ConfigError, match="final_target_return is not a summary of its runs"):
        build.analysis(e, diffs)
    e = registry._entry("x", {**base, "analysis": {"primary": ["min_acc"], "family": {"method": "nope"}}}, "x.yaml")
    with pytest.raises(ConfigError, match="selects none of its paired rows"):
        build.analysis(e, diffs)


def test_every_committed_entry_declares_its_primary_family():
    from lossmooth.reproduce import registry

    for name, e in registry.load().items():
        assert e.primary, name


def test_the_meet_in_the_middle_count_is_the_enumeration():
    rng = np.random.default_rng(5)
    d = rng.normal(0.3, 1.0, (13, 40))
    d[:, 0], d[:, 1], d[:, 2] = 0.0, 1.0, np.round(d[:, 2])  # all zero, all equal, ties
    assert np.array_equal(inf._split_p(d), inf._enumerated_p(d))


def test_runs_on_a_diverged_source_are_counted_apart_and_left_out():
    rows = _rows([0.02, 0.03, 0.01, 0.04])
    for r in rows:
        if r["seed"] == 3:
            r["source_diverged"] = True
    groups, diffs, _ = agg.tables(rows, reps=100)
    assert all(g["n"] == 3 and g["n_source_diverged"] == 1 and g["n_diverged"] == 0 for g in groups)
    assert diffs[0]["n_pairs"] == 3
    assert "3 (+1 on a diverged source)" in tables.markdown(groups, diffs)
