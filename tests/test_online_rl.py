"""The online RL setting: the shifted brax tasks, and a tiny run end to end through the CLI (bad input:
tests/test_bad_input.py)."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lossmooth import cli
from lossmooth.results import store
from lossmooth.rl import envs


def _rollout(env, params, steps=30):
    @jax.jit
    def go(key):
        obs, state = env.reset(key, params)

        def step(c, k):
            obs, state, ret = c
            obs, state, r, d, _ = env.step(k, state, 0.5 * jnp.ones(env.action_space(params).shape), params)
            return (obs, state, ret + r), obs

        (_, _, ret), obs = jax.lax.scan(step, (obs, state, 0.0), jax.random.split(key, steps))
        return ret, obs

    return go(jax.random.PRNGKey(0))


@pytest.mark.slow  # about 2.5 min on 2 cores: a brax program per shifted task
def test_task_shifts_change_the_task_and_severity_zero_does_not():
    src, p = envs.make_env("hopper", "positional", 1000)
    ret, obs = _rollout(src, p)
    same, _ = _rollout(*envs.make_env("hopper", "positional", 1000, envs.TaskShift("mass", 0.0, {"max_scale": 2.0})))
    np.testing.assert_allclose(same, ret, rtol=1e-6)
    heavy, hobs = _rollout(*envs.make_env("hopper", "positional", 1000, envs.TaskShift("mass", 1.0, {"max_scale": 2.0})))
    assert not np.allclose(hobs, obs, atol=1e-4)  # dynamics differ
    back, bobs = _rollout(*envs.make_env("hopper", "positional", 1000, envs.TaskShift("backwards", 1.0, {})))
    np.testing.assert_allclose(bobs, obs, rtol=1e-6)  # same dynamics, different reward
    assert not np.isclose(back, ret)
    perm, pobs = _rollout(*envs.make_env("hopper", "positional", 1000,
                                         envs.TaskShift("obs_permutation", 1.0, {"seed": 0})))
    np.testing.assert_allclose(np.sort(pobs, -1), np.sort(obs, -1), rtol=1e-6)  # entries moved, not changed
    assert not np.allclose(pobs, obs) and np.isclose(perm, ret)


TINY_RL = ["task=pendulum", "budget=cpu", "algo=[ppo]", "num_seeds=2", "setting.source_steps=1024", "setting.adapt_steps=1024",
           "setting.eval_every=256", "setting.eval_episodes=2",
           "task.episode_length=50", "+budget.ppo.num_envs=8", "+budget.ppo.num_steps=16",
           "+budget.ppo.num_epochs=2", "+budget.ppo.num_minibatches=4", "setting.smoothing_T=8", "setting.gap_window=512",
           "method=[hard_switch,loss_smoothing,scratch]"]


def test_a_tiny_online_rl_run_lands_complete_and_tabulates(tmp_path, capsys, cache_dir):
    results = tmp_path / "results"
    rc = cli.main(["run", f"results_dir={results}", "logger=jsonl", "progress=false",
                   f"cache_dir={cache_dir}", "setting=online_rl"] + TINY_RL)
    assert rc == 0
    out = capsys.readouterr().out
    assert "Paired difference vs hard switch" in out and "| online_rl | pendulum | ppo |" in out
    assert "**Final target return normalized" not in out  # pendulum's returns are <= 0: no ratio to the
    assert "No final target return normalized by the hard switch" in out  # hard switch, and the table says so
    (run_dir,) = [p for p, _, _ in store.complete_runs(str(results))]
    meta = json.load(open(os.path.join(run_dir, "meta.json")))
    assert meta["stand_in"] is True and "setting.smoothing_T" in meta["assumed"]
    assert meta["data"]["rejax_presets"]["ppo"]["learning_rate"] > 0  # read from rejax's file
    runs = json.load(open(os.path.join(run_dir, "runs.json")))
    assert sorted({r["method"] for r in runs}) == ["hard_switch", "loss_smoothing", "scratch"]
    by = {(r["method"], r["seed"]): r for r in runs}
    for s in (0, 1):  # both switching methods start from the same source agent
        assert by[("hard_switch", s)]["source_return_at_switch"] == pytest.approx(
            by[("loss_smoothing", s)]["source_return_at_switch"])
    metrics = store.read_metrics(run_dir)
    lam = [m["lam"] for m in metrics if m.get("method") == "loss_smoothing" and m["phase"] == "adapt"]
    assert min(lam) == 0.0 and max(lam) == 1.0  # the ramp ran from source to target
    assert all(m["lam"] == 1.0 for m in metrics if m.get("method") == "hard_switch" and m["phase"] == "adapt")
    png = tmp_path / "c.png"
    assert cli.main(["plot", "--results-dir", str(results), "--out", str(png)]) == 0


def test_pendulum_shifts_scale_the_dynamics_named_and_nothing_else():
    """gymnax Pendulum: thdot' = thdot + (3 g / (2 l) sin th + 3 u / (m l^2)) dt; the mass shift scales
    m, the gravity shift g, each by 1 + s (max_scale - 1), whatever params the caller passes."""
    from gymnax.environments.classic_control.pendulum import EnvState

    src, p = envs.make_env("pendulum", None, 200)
    assert p.max_steps_in_episode == 200 and src.default_params.m == 1.0
    state = EnvState(theta=jnp.asarray(0.7), theta_dot=jnp.asarray(-1.2), last_u=jnp.asarray(0.0), time=0)
    u, key = jnp.asarray([1.5]), jax.random.PRNGKey(1)

    def thdot(env, m=1.0, g=10.0):
        _, s, r, _, _ = env.step_env(key, state, u, p)
        want = -1.2 + (3 * g / 2 * np.sin(0.7) + 3.0 / m * 1.5) * 0.05
        np.testing.assert_allclose(float(s.theta_dot), want, rtol=1e-5)
        return float(r)

    r0 = thdot(src)
    heavy, _ = envs.make_env("pendulum", None, 200, envs.TaskShift("mass", 0.5, {"max_scale": 2.0}))
    assert thdot(heavy, m=1.5) == r0  # the reward of a step depends on the state and action only
    thdot(envs.make_env("pendulum", None, 200, envs.TaskShift("gravity", 1.0, {"max_scale": 1.5}))[0], g=15.0)
    obs, _ = src.reset_env(key, p)
    perm, _ = envs.make_env("pendulum", None, 200, envs.TaskShift("obs_permutation", 1.0, {"seed": 0}))
    pobs, _ = perm.reset_env(key, p)  # the same state, its three entries cycled
    np.testing.assert_allclose(np.sort(pobs), np.sort(obs))
    assert not np.allclose(pobs, obs)
    assert sorted(perm.perm.tolist()) == [0, 1, 2] and (perm.perm != np.arange(3)).all()
    with pytest.raises(Exception, match="shift.name: task 'pendulum' has no friction"):
        envs.parse_shift({"name": "friction", "severity": 1.0, "max_scale": 0.25}, "pendulum")
