"""Dense evaluation after the switch (config ``dense_eval``), through the shared runner: the same
run's regular curves bit for bit, an evaluation after every one of the first W updates on the
dense sets, and the dense summaries computed from exactly those rows."""
import json
import os

import numpy as np
import pytest

from lossmooth.results import aggregate as agg
from lossmooth.results import store, tables
from lossmooth.results import summaries as S
from lossmooth.runner import run_config
from tests.conftest import TINY, compose


def _run(tmp_path, cache_dir, name, extra=()):
    cfg = compose(TINY + list(extra))
    cfg["results_dir"], cfg["cache_dir"] = str(tmp_path / name), cache_dir
    return run_config(cfg, {}, progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("dense")
    return _run(tmp, cache_dir, "plain"), _run(tmp, cache_dir, "dense", ["dense_eval.steps=10", "dense_eval.size=32"])


def test_dense_evaluation_leaves_the_regular_curves_bit_identical(runs):
    plain, dense = (store.read_metrics(d) for d in runs)
    key = lambda r: (r["phase"], r.get("run_index", r.get("seed")), r["step"])  # noqa: E731
    regular = {key(r): r for r in dense if r["phase"] != "adapt_dense"}
    assert len(regular) == len(plain)
    for r in plain:
        got = regular[key(r)]
        assert set(got) == set(r)
        for k, v in r.items():
            assert got[k] == v or (v != v and got[k] != got[k]), (key(r), k)


def test_dense_rows_cover_every_update_and_make_the_dense_summaries(runs):
    rows = [r for r in store.read_metrics(runs[1]) if r["phase"] == "adapt_dense"]
    runs_json = json.load(open(os.path.join(runs[1], "runs.json")))
    assert json.load(open(os.path.join(runs[1], "meta.json")))["data"]["dense_eval_size"] == 32
    for run in runs_json:
        mine = sorted((r for r in rows if r["run_index"] == run["run_index"]), key=lambda r: r["step"])
        assert [r["step"] for r in mine] == list(range(11))  # the switch, then updates 1..10
        b = np.array([r["source_acc"] for r in mine])
        a = np.array([r["target_acc"] for r in mine])
        s = run["summary"]
        assert s["dense_min_acc"] == pytest.approx(b[1:].min())
        assert s["dense_source_drop"] == pytest.approx(b[0] - b[1:].min())
        assert s["dense_min_step"] == 1 + int(np.argmin(b[1:]))
        assert s["dense_stability_gap"] == pytest.approx(max(0.0, b[0] - b[1:].min()))  # the source curve's
        assert s["dense_target_dip"] == pytest.approx(max(0.0, a[0] - a[1:].min()))
    table = tables.markdown(*agg.tables(agg.collect(os.path.dirname(os.path.dirname(runs[1]))), reps=100)[:2])
    assert "min-ACC, every update (dense)" in table and "Dense: from the evaluations" in table
    plain_table = tables.markdown(*agg.tables(agg.collect(os.path.dirname(os.path.dirname(runs[0]))), reps=100)[:2])
    assert "dense" not in plain_table.lower()


def test_a_neutral_dense_eval_is_the_same_config_as_none():
    cfg = compose(TINY)
    without = {k: v for k, v in cfg.items() if k != "dense_eval"}
    assert store.numbers_config(cfg) == store.numbers_config(without)
    on = compose(TINY + ["dense_eval.steps=10"])
    assert store.numbers_config(on) != store.numbers_config(cfg)


def test_dense_summaries_by_their_definitions():
    class C:
        kind, target, source = "acc", "t", "s"
    s = S.dense_summaries(C, {"t": [0.5, 0.4, 0.45, 0.6], "s": [0.9, 0.7, 0.6, 0.8]}, window=2)
    assert s["dense_min_acc"] == 0.6 and s["dense_min_step"] == 2
    assert s["dense_source_drop"] == pytest.approx(0.3) and s["dense_stability_gap"] == pytest.approx(0.3)
    assert s["dense_target_dip"] == pytest.approx(0.1)
    assert s["dense_windowed_forgetting"] == pytest.approx(0.2)  # w = 2: adjacent evaluations only

    class L:
        kind, target, source = "loss", "t", "s"
    s = S.dense_summaries(L, {"t": [2.0, 2.5, 1.5], "s": [10.0, 14.0, 12.0]}, window=3)
    assert s["dense_min_acc"] == 14.0 and s["dense_min_step"] == 1  # the worst (highest) perplexity
    assert s["dense_source_drop"] == pytest.approx(4.0) and s["dense_stability_gap"] == pytest.approx(4.0)
    assert s["dense_target_dip"] == pytest.approx(0.5)  # the target loss's rise


def test_the_dense_sets_keep_each_class_at_its_prior():
    """The first ``size`` examples of an evaluation set, reweighted: every class present keeps its
    share of the prior (renormalized over the classes present), spread over its examples there."""
    from lossmooth.settings.supervised.data import _subset_weights

    rng = np.random.default_rng(0)
    prior = np.array([0.5, 0.3, 0.15, 0.05])
    y = rng.integers(0, 4, 200)
    counts = np.bincount(y, minlength=4)
    w = (prior[y] / counts[y]).astype(np.float32)
    sub = _subset_weights(w, y, 40)
    present = np.unique(y[:40])
    assert sub.sum() == pytest.approx(1.0, abs=1e-6)
    for c in present:
        assert sub[y[:40] == c].sum() == pytest.approx(prior[c] / prior[present].sum(), abs=1e-6)
        assert np.ptp(sub[y[:40] == c]) < 1e-7  # equal weights within a class
