"""Sequences of shifts (config ``sequence``): k successive switches, each run going on from its own
model, the source objective replaying the previous task (or all earlier ones), every task evaluated
throughout, and the k-task metrics of the continual-learning literature."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lossmooth.results import plots, tables
from lossmooth.results.metrics import higher_is_better
from lossmooth.results.summaries import sequence_summaries
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
    text = tables.markdown(groups, diffs, normalized=normalized)
    assert "| #1 blur(1) | hard_switch |" in text and "| #2 label_permutation(1) | loss_smoothing |" in text
    assert "**Whole sequence** (blur > label_permutation)" in text and "WC-ACC (k tasks)" in text
    whole = [d for d in diffs if d.get("switch") == "all"]
    assert len(whole) == 1 and whole[0]["n_pairs"] == 2 and "seq_forgetting_diff" in whole[0]
    csv = tables.csv_text(groups, diffs)
    assert "seq_forgetting_task0_mean" in csv.splitlines()[0]
    png = tmp_path / "seq.png"
    plots.plot_curves(rows, str(png))
    assert png.stat().st_size > 10_000


def test_one_switch_configs_keep_their_run_keys():
    """The neutral ``sequence`` node leaves every one-switch config's identity as it was."""
    from lossmooth.results import store

    cfg = compose(TINY)
    assert cfg["sequence"] == {"shifts": [], "replay": "previous"}
    assert "sequence" not in store.numbers_config(cfg)
    assert "sequence" in store.numbers_config(compose(SEQ))


# -- online RL: a switch's source is the previous switch's task (TD3: its replay buffer; PPO: its environments)

RL_SEQ = ["setting=online_rl", "task=pendulum", "budget=cpu", "num_seeds=2", "setting.eval_episodes=2",
          "task.episode_length=20", "+budget.ppo.num_envs=4", "+budget.ppo.num_steps=8", "+budget.ppo.num_minibatches=4",
          "budget.td3.buffer_size=512", "budget.td3.num_envs=2", "sequence=pendulum_three",
          "method=[hard_switch,scratch]"]


@pytest.mark.parametrize("algo", ["td3", "ppo"])
def test_an_rl_switch_goes_on_from_its_runs_own_agent_with_the_last_task_as_source(algo):
    from lossmooth.core.runs import expand_runs
    from lossmooth.rl import agents as A
    from lossmooth.settings.online_rl.config import parse
    from lossmooth.settings.contract import Context, PhaseResult
    from lossmooth.settings.online_rl.objective import build_agents
    from lossmooth.settings.online_rl.setting import Loaded, OnlineRL

    spec = parse(compose(RL_SEQ + [f"algo=[{algo}]"]))
    assert [s.name for s in spec.sequence] == ["obs_permutation", "gravity", "obs_permutation"]
    ag = build_agents(spec, algo, 4)
    assert len(ag.task_envs) == 4 and ag.eval_tasks == ("task0", "task1", "task2", "task3")
    two = A.at_switch(ag, 2)

    def shift_of(env):  # rejax wraps (and copies) the environments it is given
        while not hasattr(env, "shift"):
            env = env.env
        return env.shift

    assert shift_of(two.adapt.env) == spec.sequence[1] and shift_of(two.adapt.source_env) == spec.sequence[0]
    assert (two.source_env, two.target_env, two.switch) == (ag.task_envs[1], ag.task_envs[2], 2)
    runs = expand_runs(spec.methods, spec.sweep, spec.num_seeds, spec.seed, inits=spec.inits)
    # the runs' states at the end of switch 1: made distinct from any fresh state
    prev = jax.vmap(ag.switch_algos[0].init_state)(jax.random.split(jax.random.PRNGKey(3), len(runs)))
    bump = lambda t: jax.tree.map(lambda x: x + 1 if jnp.issubdtype(x.dtype, jnp.floating) else x, t)  # noqa: E731
    mark = ({"replay_buffer": bump(prev.replay_buffer).replace(index=prev.replay_buffer.index + 5)} if algo == "td3"
            else {"env_state": bump(prev.env_state)})
    prev = prev.replace(actor_ts=prev.actor_ts.replace(params=bump(prev.actor_ts.params)),
                        updates=prev.updates + 7, global_step=prev.global_step + 99, **mark)
    # the contract's switch index 1 is the sequence's second switch
    ctx = Context(spec=spec, loaded=Loaded(agents={algo: ag}, info={}), runs=runs)
    phase = OnlineRL().adapt_phase(ctx, algo, runs, PhaseResult(prev, {}, np.zeros(1), np.zeros(len(runs))), switch=1)
    state, hp = phase.state, phase.hp
    same = lambda a, b: all(bool(jnp.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))  # noqa: E731
    assert same(state.actor_ts.params, prev.actor_ts.params)  # every run, scratch too, goes on from its own agent
    assert int(state.updates.max()) == 0 and int(state.global_step.max()) == 0  # the ramp and the task start again
    if algo == "td3":  # the last task's replay buffer is the source data; the new task's buffer starts empty
        assert same(state.source_buffer, prev.replay_buffer)
        assert int(prev.replay_buffer.num_entries.min()) == 5 and int(state.replay_buffer.num_entries.max()) == 0
        assert not bool(jnp.any(hp.uniform_warmup))  # no run explores uniformly at a later switch
    else:  # the last task's environments go on as the source environments
        assert same(state.source_env_state, prev.env_state)
    ev = phase.evaluate(state, hp, None)
    assert set(ev) == {"task0_return", "task1_return", "task2_return", "task3_return", "source_return", "target_return"}
    np.testing.assert_array_equal(ev["source_return"], ev["task1_return"])
    np.testing.assert_array_equal(ev["target_return"], ev["task2_return"])


def test_an_rl_sequence_table_keeps_returns_as_they_are_and_algorithms_apart():
    def entry(model, method, v, **kw):
        return {"shift": "obs_permutation > gravity", "model": model, "method": method, "hparams": {}, "switch": "all",
                **{f"seq_{m}_{kw.get('stat', 'mean')}": v for m in ("avg_final_acc", "min_acc", "wc_acc", "forgetting")},
                **{k: x for k, x in kw.items() if k != "stat"}}
    groups = [entry("td3", "hard_switch", -250.0, n=8, n_diverged=0), entry("ppo", "hard_switch", -300.0, n=8, n_diverged=0)]
    diffs = [entry("td3", "loss_smoothing", 12.5, n_pairs=8, stat="diff")]
    text = tables.sequence_markdown(groups, diffs, unit="return")
    assert "| algo | method |" in text and "| td3 | hard_switch |  | 8 | -250 |" in text
    assert "| ppo | hard_switch |" in text and "| td3 | loss_smoothing |  | 8 | 12.5 |" in text
    assert "avg final return (all tasks)" in text and "paired difference vs hard switch** (return)" in text
    assert "percentage points" not in text and "accuracy" not in text
    acc = tables.sequence_markdown([entry("cnn", "hard_switch", 0.5, n=8, n_diverged=0)], [], unit="acc")
    assert "| model |" not in acc and "| hard_switch |  | 8 | 50.0 |" in acc  # one model: no column; accuracies in %
