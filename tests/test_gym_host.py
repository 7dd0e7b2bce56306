"""Offline-to-online RL on gymnasium environments stepped on the host: the environment wrapper, the
host transitions path of SmoothedTD3, the BC-decay control, regret, and a tiny run end to end on a
Minari dataset (written by the test, recording its environment) with Hopper-v5."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lossmooth import cli
from lossmooth.offline import datasets as D
from lossmooth.results import store
from lossmooth.results.summaries import summarize_scores
from lossmooth.rl.gym_envs import EnvSpec, HostEnvs, rollout_episodes

HOPPER = EnvSpec("Hopper-v5", {}, 50)


def test_host_envs_give_true_next_observations_and_termination_only_as_done():
    envs = HostEnvs(HOPPER, 3, seed=0)
    rng = np.random.default_rng(0)
    seen_end = seen_term = False
    for _ in range(120):  # random actions end hopper episodes early (termination) and at 50 (time limit)
        before = envs.obs.copy()
        tr = envs.step(rng.uniform(-1, 1, (3, 3)))
        np.testing.assert_array_equal(tr["obs"], before)
        for i in np.flatnonzero(tr["ended"]):
            seen_end = True
            # the stored next observation is the episode's last one, not the reset one the policy sees next
            assert not np.array_equal(tr["next_obs"][i], envs.obs[i])
        not_ended = ~tr["ended"]
        np.testing.assert_array_equal(tr["next_obs"][not_ended], envs.obs[not_ended])
        assert set(np.flatnonzero(tr["done"])) <= set(np.flatnonzero(tr["ended"]))
        seen_term |= bool(tr["done"].any())
    envs.close()
    assert seen_end and seen_term
    out = rollout_episodes(HOPPER, lambda o: np.zeros((len(o), 3)), 2, seed=1, max_steps=60)
    assert out["return"].shape == (2,) and out["success"] is None  # hopper has no success flag


def test_antmaze_observations_flatten_to_d4rl_layout():
    pytest.importorskip("gymnasium_robotics")
    spec = EnvSpec("AntMaze_UMaze-v5", {"include_cfrc_ext_in_observation": False}, 20)
    info = spec.probe()
    assert info["obs_dim"] == 27 + 2 and info["act_dim"] == 8  # ant state ++ desired goal, as Minari's AntMaze
    envs = HostEnvs(spec, 2, seed=0)
    tr = envs.step(np.zeros((2, 8)))
    envs.close()
    assert tr["obs"].shape == (2, 29) and tr["success"].dtype == bool


def test_regret_is_one_minus_online_success():
    s = summarize_scores(np.array([0, 10, 20]), np.array([50.0, 40.0, 60.0]), 10, success=[1.0, 0.5, 0.0])
    assert s["regret"] == pytest.approx(0.75)  # the switch's evaluation (1.0) is not online
    assert "regret" not in summarize_scores(np.array([0, 10]), np.array([1.0, 2.0]), 10)


# ----------------------------------------------------------------------------- SmoothedTD3 pieces


@pytest.fixture(scope="module")
def hopper_td3():
    from lossmooth.rl.host_loop import SpacesEnv
    from lossmooth.rl.td3 import SmoothedTD3

    p = HOPPER.probe()
    env = SpacesEnv(p["obs_dim"], p["low"], p["high"], p["max_episode_steps"])
    algo = SmoothedTD3.create(env=env, env_params=env.default_params, num_envs=2, batch_size=8,
                              buffer_size=64, fill_buffer=4, num_epochs=2, policy_delay=2,
                              actor_kwargs={"hidden_layer_sizes": [8]}, critic_kwargs={"hidden_layer_sizes": [8]})
    return algo, algo.init_state(jax.random.PRNGKey(0))


def test_host_transitions_enter_the_buffer_and_count(hopper_td3):
    from rejax.buffers import Minibatch

    algo, ts = hopper_td3
    rng = np.random.default_rng(1)
    trans = Minibatch(obs=jnp.asarray(rng.normal(size=(2, 2, 11)), jnp.float32),
                      action=jnp.asarray(rng.uniform(-1, 1, (2, 2, 3)), jnp.float32),
                      reward=jnp.asarray(rng.normal(size=(2, 2)), jnp.float32),
                      next_obs=jnp.asarray(rng.normal(size=(2, 2, 11)), jnp.float32),
                      done=jnp.zeros((2, 2), bool))
    ts2 = jax.jit(lambda t, tr: algo.train_iteration(t, tr))(ts, trans)
    assert int(ts2.global_step) == 4 and int(ts2.replay_buffer.num_entries) == 4
    np.testing.assert_allclose(ts2.replay_buffer.data.obs[:4], np.asarray(trans.obs).reshape(4, 11))
    np.testing.assert_allclose(ts2.replay_buffer.data.reward[:4], np.asarray(trans.reward).reshape(4))
    # fill_buffer = 4: the first round (step 0) and the second (step 2) do not train yet
    assert int(ts2.updates) == 0
    ts3 = jax.jit(lambda t, tr: algo.train_iteration(t, tr))(ts2, trans)
    # iteration 2: its first round starts at step 4 (not past fill_buffer), its second at 6 (trains)
    assert int(ts3.updates) == algo.num_epochs
    # exploration actions: uniform before training starts (where uniform_warmup), inside the box
    _, a = algo.host_act(ts, jnp.zeros((2, 11)))
    assert a.shape == (2, 3) and float(jnp.abs(a).max()) <= 1.0


def test_bc_decay_weight_and_loss(hopper_td3):
    algo, ts = hopper_td3
    a = algo.replace(bc_decay_updates=jnp.asarray(100.0))
    assert float(a.bc_weight(0)) == 1.0 and float(a.bc_weight(25)) == pytest.approx(0.75)
    assert float(a.bc_weight(100)) == 0.0 and float(a.bc_weight(1000)) == 0.0
    assert float(algo.bc_weight(10**6)) == 1.0  # no decay configured: the BC weight stays 1
    from rejax.buffers import Minibatch

    rng = np.random.default_rng(2)
    b = Minibatch(obs=jnp.asarray(rng.normal(size=(8, 11)), jnp.float32),
                  action=jnp.asarray(rng.uniform(-1, 1, (8, 3)), jnp.float32),
                  reward=jnp.zeros(8), next_obs=jnp.zeros((8, 11)), done=jnp.zeros(8))
    p = ts.actor_ts.params
    act = algo.actor.apply(p, b.obs)
    q = algo.vmap_critic(ts.critic_ts.params, b.obs, act)
    w = 2.5 / jnp.abs(q[0]).mean()
    bc = jnp.mean(jnp.square(act - b.action))
    full = float(algo.actor_loss(p, ts, b, jnp.asarray(2.5), 1.0))
    half = float(algo.actor_loss(p, ts, b, jnp.asarray(2.5), 0.5))
    none = float(algo.actor_loss(p, ts, b, jnp.asarray(2.5), 0.0))
    assert full == pytest.approx(float(-w * q.mean() + bc), rel=1e-5)
    assert half == pytest.approx(float(-w * q.mean() + 0.5 * bc), rel=1e-5)
    assert none == pytest.approx(float(-w * q.mean()), rel=1e-5)


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def hopper_minari(tmp_path_factory):
    """A small Hopper-v5 Minari dataset of random-policy episodes that records its environment."""
    root = str(tmp_path_factory.mktemp("minari"))
    envs = HostEnvs(HOPPER, 1, seed=3)
    rng = np.random.default_rng(3)
    episodes, obs, cur = [], [envs.obs[0]], {"actions": [], "rewards": [], "terminations": [], "truncations": []}
    while len(episodes) < 12:
        tr = envs.step(rng.uniform(-1, 1, (1, 3)))
        obs.append(tr["next_obs"][0])
        cur["actions"].append(tr["action"][0])
        cur["rewards"].append(tr["reward"][0])
        cur["terminations"].append(bool(tr["done"][0]))
        cur["truncations"].append(bool(tr["ended"][0] and not tr["done"][0]))
        if tr["ended"][0]:
            episodes.append({"observations": np.stack(obs), **{k: np.asarray(v) for k, v in cur.items()}})
            obs, cur = [envs.obs[0]], {k: [] for k in cur}
    envs.close()
    D.save_minari(episodes, "test/hopper-random-v0", root, ref_scores=(-20.0, 3000.0), env_id="Hopper-v5")
    return root


GYM_RUN = ["setting=offline_to_online", "logger=jsonl", "progress=false", "task=gymnasium", "task.id=null",
           "dataset=minari", "dataset.id=test/hopper-random-v0", "num_seeds=2", "setting.source_steps=32",
           "setting.source_eval_every=16", "setting.adapt_steps=64", "setting.eval_every=32", "td3.num_envs=2",
           "td3.num_epochs=2", "td3.fill_buffer=8", "td3.buffer_size=256", "td3.batch_size=16",
           "td3.hidden_layer_sizes=[16,16]", "setting.eval_episodes=2", "setting.smoothing_T=16", "setting.gap_window=32",
           "task.max_episode_steps=40", "method=[hard_switch,loss_smoothing,bc_decay]"]


def test_minari_dataset_records_its_environment(hopper_minari):
    t = D.load_minari("test/hopper-random-v0", hopper_minari)
    assert t.info["env_id"] == "Hopper-v5" and t.obs_dim == 11


@pytest.mark.slow  # about 3 min on 2 cores (a gymnasium run end to end)
def test_a_tiny_gymnasium_run_lands_complete(hopper_minari, tmp_path, capsys, cache_dir):
    results = tmp_path / "results"
    rc = cli.main(["run", f"results_dir={results}", f"cache_dir={cache_dir}", f"dataset.root={hopper_minari}"]
                  + GYM_RUN)
    assert rc == 0, capsys.readouterr().err
    (run_dir,) = [p for p, _, _ in store.complete_runs(str(results))]
    meta = json.load(open(os.path.join(run_dir, "meta.json")))
    assert "gymnasium Hopper-v5" in meta["data"]["environment"] and meta["stand_in"] is False
    runs = json.load(open(os.path.join(run_dir, "runs.json")))
    assert sorted({r["method"] for r in runs}) == ["bc_decay", "hard_switch", "loss_smoothing"]
    by = {(r["method"], r["seed"]): r for r in runs}
    for s in (0, 1):  # every method starts from the same offline agent of its seed
        assert by[("hard_switch", s)]["offline_score"] == pytest.approx(by[("bc_decay", s)]["offline_score"])
    assert by[("bc_decay", 0)]["hparams"]["bc_decay_updates"] == 16
    metrics = store.read_metrics(run_dir)
    adapt = [m for m in metrics if m["phase"] == "adapt"]
    assert max(m["step"] for m in adapt) == 64
    assert all(np.isfinite(m["target_score"]) for m in adapt)
    assert not any("target_success" in m for m in metrics)  # hopper has no success flag: no regret either
    assert all("regret" not in r["summary"] for r in runs)


# ----------------------------------------------------------------------------- batch invariance


def test_host_programs_give_a_run_the_same_bytes_whatever_runs_share_its_batch():
    """The host loop's compiled programs (acting, the training iteration, the evaluation policy) run in
    blocks of the engine's lanes: run k's outputs alone, beside other runs and at another place in a
    batch of two blocks are byte-identical (a plain vmap over 3 and over 24 runs rounds differently)."""
    from rejax.buffers import Minibatch

    from lossmooth.core import engine
    from lossmooth.rl.host_loop import HostRunner, SpacesEnv
    from lossmooth.rl.td3 import SmoothedTD3

    p = HOPPER.probe()
    env = SpacesEnv(p["obs_dim"], p["low"], p["high"], p["max_episode_steps"])
    algo = SmoothedTD3.create(env=env, env_params=env.default_params, num_envs=2, batch_size=64,
                              buffer_size=256, fill_buffer=0, num_epochs=2, policy_delay=2,
                              actor_kwargs={"hidden_layer_sizes": [64, 64]},
                              critic_kwargs={"hidden_layer_sizes": [64, 64]})
    runner = HostRunner(HOPPER, 2, 50)
    n = 24
    states = jax.vmap(algo.init_state)(jax.random.split(jax.random.PRNGKey(0), n))
    hp = engine.stack_runs([algo] * n)
    rng = np.random.default_rng(0)
    trans = Minibatch(obs=jnp.asarray(rng.normal(size=(n, 2, 2, 11)), jnp.float32),
                      action=jnp.asarray(rng.uniform(-1, 1, (n, 2, 2, 3)), jnp.float32),
                      reward=jnp.asarray(rng.normal(size=(n, 2, 2)), jnp.float32),
                      next_obs=jnp.asarray(rng.normal(size=(n, 2, 2, 11)), jnp.float32),
                      done=jnp.zeros((n, 2, 2), bool))
    iterate = runner.iteration(True)

    def one_run(order, k):
        """Run ``k``'s trained state and actions in the batch of the runs ``order``."""
        pick = lambda t: jax.tree.map(lambda x: x[np.asarray(order)], t)  # noqa: E731
        ts = iterate((pick(states), pick(trans)), pick(hp), None)
        ts, act = runner._act((ts, pick(trans.obs[:, 0])), pick(hp), None)
        i = order.index(k)
        return [np.asarray(x[i]).tobytes() for x in jax.tree.leaves((ts, act))]

    alone = one_run([5], 5)
    assert one_run([3, 4, 5], 5) == alone
    assert one_run(list(range(n)), 5) == alone
    assert one_run(list(range(8, n)) + list(range(8)), 5) == alone  # the same run in the third block
