"""Sequences of shifts (config ``sequence``): k successive switches, each run going on from its own
model, the source objective replaying the previous task (or all earlier ones), every task evaluated
throughout, and the k-task metrics of the continual-learning literature."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lossmooth.results import report
from lossmooth.results.summaries import higher_is_better, sequence_summaries
from lossmooth.settings.supervised.data import SequenceData
from tests.conftest import TINY, compose

SEQ = TINY + ["sequence=three", "sequence.shifts=[{name:blur,severity:1.0},{name:label_permutation,severity:1.0}]",
              "method=[hard_switch,loss_smoothing]"]


def test_sequence_summaries_by_hand():
    # three tasks, two switches of two evaluations each: evaluations 0..4, task 0 ends at 0, task 1 at 2
    a0 = [0.9, 0.5, 0.6, 0.3, 0.4]
    a1 = [0.1, 0.7, 0.8, 0.2, 0.6]
    a2 = [0.0, 0.1, 0.1, 0.5, 0.9]
    s = sequence_summaries([a0, a1, a2], [0, 2, 4])
    assert s["seq_final_acc_task0"] == 0.4 and s["seq_final_acc_task2"] == 0.9
    assert s["seq_avg_final_acc"] == pytest.approx((0.4 + 0.6 + 0.9) / 3)
    assert s["seq_min_acc_task0"] == 0.3            # min over evaluations 1..4
    assert s["seq_min_acc_task1"] == 0.2            # min over evaluations 3..4, not the 0.1 before it was trained
    assert s["seq_min_acc"] == pytest.approx(0.25)
    assert s["seq_forgetting_task0"] == pytest.approx(0.5)   # 0.9 at its end, 0.4 at the end
    assert s["seq_forgetting_task1"] == pytest.approx(0.2)   # 0.8 -> 0.6
    assert s["seq_forgetting"] == pytest.approx(0.35)
    assert s["seq_wc_acc"] == pytest.approx(0.9 / 3 + 2 / 3 * 0.25)
    assert "seq_forgetting_task2" not in s and "seq_min_acc_task2" not in s  # the last task is never earlier
    assert not higher_is_better("seq_forgetting") and not higher_is_better("seq_forgetting_task1")
    assert higher_is_better("seq_min_acc") and higher_is_better("seq_wc_acc")


def _marked(replay_all: bool) -> SequenceData:
    """Three tasks whose every pixel and label is the task's number (train pools of tasks 1, 2;
    replay pools of tasks 0, 1)."""
    def pool(tasks, n=50):
        return (jnp.stack([jnp.full((n, 2, 2, 1), t, jnp.uint8) for t in tasks]),
                jnp.stack([jnp.full((n,), t, jnp.int32) for t in tasks]))
    tx, ty = pool([1, 2])
    rx, ry = pool([0, 1], 30)
    ex, ey = pool([0, 1, 2], 4)
    return SequenceData(source_x=tx[0] * 0, source_y=ty[0] * 0, task_x=tx, task_y=ty, replay_x=rx, replay_y=ry,
                        test_x=ex, test_y=ey, test_w=jnp.full(ey.shape, 0.25), switch=jnp.zeros((), jnp.int32),
                        replay_all=replay_all)


@pytest.mark.parametrize("replay_all", [False, True])
def test_each_switch_draws_its_target_and_replays_the_earlier_tasks(replay_all):
    data = _marked(replay_all)
    key = jax.random.key(0)
    for s in (0, 1):
        d = data.at(s)
        _, yt = jax.jit(lambda d, k: d.target_sample(k, 64))(d, key)
        assert set(np.asarray(yt).tolist()) == {s + 1}  # switch s trains task s + 1
        xs, ys = jax.jit(lambda d, k: d.replay_sample(k, 256))(d, key)
        drawn = set(np.asarray(ys).tolist())
        np.testing.assert_array_equal(np.asarray(xs)[:, 0, 0, 0] * 255, np.asarray(ys))  # images match labels
        if replay_all:  # tasks 0..s, each drawn
            assert drawn == set(range(s + 1))
        else:  # task s only
            assert drawn == {s}


@pytest.fixture(scope="module")
def sequence_run(tmp_path_factory):
    """A tiny two-switch run (hard switch and smoothing, two seeds) through the shared runner."""
    from lossmooth import settings
    from lossmooth.results import store
    from lossmooth.runner.execute import execute

    cfg = compose(SEQ)
    cfg["results_dir"] = str(tmp_path_factory.mktemp("seq-results"))
    cfg["cache_dir"] = None
    path = execute(settings.get("supervised"), cfg, {}, progress=False)
    _, rows, _ = store.read_run(path)
    return path, rows, store.read_metrics(path)


def test_every_switch_goes_on_from_the_same_runs_model(sequence_run):
    _, rows, metrics = sequence_run
    per_switch = [r for r in rows if isinstance(r.get("switch"), int)]
    whole = [r for r in rows if r.get("switch") == "all"]
    assert sorted({r["switch"] for r in per_switch}) == [1, 2] and len(per_switch) == 2 * 2 * 2
    assert len(whole) == 4 and all(r["shift"] == "blur > label_permutation" for r in whole)
    assert {r["shift"] for r in per_switch if r["switch"] == 2} == {"label_permutation"}
    assert len({r["pair_key"] for r in rows}) == 3  # each switch and the whole sequence pair on their own
    by_index = {}
    for m in metrics:
        if m["phase"] == "adapt":
            by_index.setdefault(m["run_index"], []).append(m)
    for w in whole:
        first, second = (sorted(by_index[i], key=lambda m: m["step"]) for i in w["sequence"]["switch_runs"])
        # the second switch starts from the model the first one ended with: every task's evaluation
        # at its start is the first switch's last
        for j in range(3):
            assert second[0][f"task{j}_acc"] == first[-1][f"task{j}_acc"]
        # source and target are the switch's two tasks among every task's evaluation
        for m in first:
            assert (m["source_acc"], m["target_acc"]) == (m["task0_acc"], m["task1_acc"])
        for m in second:
            assert (m["source_acc"], m["target_acc"]) == (m["task1_acc"], m["task2_acc"])
        assert second[0]["step"] == 0 and second[0]["switch"] == 2
        # the whole-sequence summaries are those of every task's curve through both switches
        curves = [[m[f"task{j}_acc"] for m in first] + [m[f"task{j}_acc"] for m in second[1:]] for j in range(3)]
        want = sequence_summaries(curves, [0, len(first) - 1, len(curves[0]) - 1])
        assert w["summary"] == pytest.approx(want)
    # the ramp starts again at every switch
    lams = {(m["switch"], m["step"]): m["lam"] for m in metrics if m["phase"] == "adapt" and m["method"] == "loss_smoothing"}
    assert lams[(1, 0)] == 0.0 and lams[(2, 0)] == 0.0 and lams[(2, 20)] == 1.0


def test_a_sequence_tabulates_and_plots(sequence_run, tmp_path):
    from lossmooth.results import aggregate as agg

    path, _, _ = sequence_run
    rows = agg.collect(os.path.dirname(os.path.dirname(path)), run_dirs={path})
    groups, diffs, normalized = agg.tables(rows, reps=50)
    assert {g.get("switch") for g in groups} == {1, 2, "all"}
    text = report.markdown(groups, diffs, normalized=normalized)
    assert "| #1 blur(1) | hard_switch |" in text and "| #2 label_permutation(1) | loss_smoothing |" in text
    assert "**Whole sequence** (blur > label_permutation)" in text and "WC-ACC (k tasks)" in text
    whole = [d for d in diffs if d.get("switch") == "all"]
    assert len(whole) == 1 and whole[0]["n_pairs"] == 2 and "seq_forgetting_diff" in whole[0]
    csv = report.csv_text(groups, diffs)
    assert "seq_forgetting_task0_mean" in csv.splitlines()[0]
    png = tmp_path / "seq.png"
    report.plot_curves(rows, str(png))
    assert png.stat().st_size > 10_000


def test_one_switch_configs_keep_their_run_keys():
    """The neutral ``sequence`` node leaves every one-switch config's identity as it was."""
    from lossmooth.results import store

    cfg = compose(TINY)
    assert cfg["sequence"] == {"shifts": [], "replay": "previous"}
    assert "sequence" not in store.numbers_config(cfg)
    assert "sequence" in store.numbers_config(compose(SEQ))
