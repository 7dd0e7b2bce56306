"""TD3+BC (the offline source objective) on the shared SmoothedTD3: loss values by hand, cloning."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lossmooth.offline import datasets as D
from lossmooth.rl.probes import ProbeEnv
from lossmooth.rl.td3 import SmoothedTD3

CFG = dict(num_envs=2, num_epochs=1, buffer_size=64, fill_buffer=8, batch_size=8, learning_rate=1e-3,
           policy_delay=2, polyak=0.995, gamma=0.99, target_noise=0.2, target_noise_clip=0.5,
           actor_kwargs={"activation": "relu", "hidden_layer_sizes": [32, 32]},
           critic_kwargs={"activation": "relu", "hidden_layer_sizes": [32, 32]})


def probe_dataset(n=256, seed=0):
    """Observations s ~ U(-1, 1), behaviour actions a = 0.5 s, reward s, one-step episodes."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    return D.transitions(s, 0.5 * s, s[:, 0], s, np.ones(n, bool), np.zeros(n, bool), name="probe")


@pytest.fixture(scope="module")
def agent():
    env = ProbeEnv("observation")
    algo = SmoothedTD3.create(env=env, env_params=env.default_params, **CFG).replace(
        source_bc_alpha=jnp.asarray(2.5))
    ts = algo.init_state(jax.random.PRNGKey(0)).replace(source_buffer=D.as_replay_buffer(probe_dataset()))
    return algo, ts


def test_network_sizes_come_from_the_config(agent):
    algo, ts = agent
    kernels = [x.shape for x in jax.tree.leaves(ts.actor_ts.params) if x.ndim == 2]
    assert kernels == [(1, 32), (32, 32), (32, 1)]
    assert algo.critic.hidden_layer_sizes == (32, 32)


def test_td3bc_losses_equal_hand_computed_values(agent):
    algo, ts = agent
    batch = algo.source_batch(ts, jax.random.PRNGKey(1))
    key = jax.random.PRNGKey(2)
    # critic: y = r + gamma (1 - d) min_j Q'_j(s', clip(pi'(s') + clip(0.2 eps, -0.5, 0.5), -1, 1))
    eps = np.asarray(jax.random.normal(key, (8, 1)))
    a_next = np.clip(np.asarray(algo.actor.apply(ts.actor_target_params, batch.next_obs))
                     + np.clip(0.2 * eps, -0.5, 0.5), -1, 1)
    q_next = np.asarray(algo.vmap_critic(ts.critic_target_params, batch.next_obs, jnp.asarray(a_next)))
    y = np.asarray(batch.reward) + 0.99 * (1 - np.asarray(batch.done)) * q_next.min(0)
    q = np.asarray(algo.vmap_critic(ts.critic_ts.params, batch.obs, batch.action))
    want_c = sum(0.5 * np.mean((q[i] - y) ** 2) for i in range(2))
    np.testing.assert_allclose(float(algo.critic_loss(ts.critic_ts.params, ts, batch, key)), want_c, rtol=1e-5)
    # actor: -alpha / mean|Q_1(s, pi(s))| * mean_{i,b} Q_i(s, pi(s)) + mean (pi(s) - a)^2
    pi = np.asarray(algo.actor.apply(ts.actor_ts.params, batch.obs))
    qpi = np.asarray(algo.vmap_critic(ts.critic_ts.params, batch.obs, jnp.asarray(pi)))
    want_a = -2.5 / np.abs(qpi[0]).mean() * qpi.mean() + np.mean((pi - np.asarray(batch.action)) ** 2)
    got = float(algo.actor_loss(ts.actor_ts.params, ts, batch, algo.source_bc_alpha))
    np.testing.assert_allclose(got, want_a, rtol=1e-5)
    # alpha = 0 is TD3's actor loss
    np.testing.assert_allclose(float(algo.actor_loss(ts.actor_ts.params, ts, batch, 0.0)), -qpi.mean(), rtol=1e-5)


def test_offline_iterations_clone_the_behaviour_policy_and_learn_q(agent):
    """With a strong BC weight (small alpha) TD3+BC recovers the dataset's policy a = 0.5 s; the critic
    learns Q(s, a) = r = s (one-step episodes)."""
    algo, ts = agent
    algo = algo.replace(source_bc_alpha=jnp.asarray(0.05))
    step = jax.jit(lambda ts: jax.lax.scan(lambda t, _: (algo.offline_iteration(t), None), ts, None, 300)[0])
    out = step(ts)
    s = jnp.linspace(-1, 1, 5)[:, None]
    np.testing.assert_allclose(np.asarray(algo.actor.apply(out.actor_ts.params, s)), 0.5 * np.asarray(s), atol=0.1)
    q = np.asarray(algo.vmap_critic(out.critic_ts.params, s, 0.5 * s))
    np.testing.assert_allclose(q, np.broadcast_to(np.asarray(s)[:, 0], q.shape), atol=0.15)
    assert int(out.global_step) == 0  # no environment step offline
    # the targets moved by Polyak steps: between the initial and the learned parameters
    d0 = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.abs(a - b).sum(), ts.actor_target_params, out.actor_target_params))
    assert sum(float(x) for x in d0) > 0


def test_reference_options_first_critic_and_torch_init():
    """``actor_critic="first"``: the actor's Q term is Q_1's alone (TD3+BC's reference), BC term and
    lambda unchanged; ``network_init="torch"``: every layer's weights and biases are U(+-1/sqrt(fan_in))
    (nonzero biases, the bound reached, a uniform's spread), the two critics drawn independently, the
    targets equal to the online networks."""
    env = ProbeEnv("observation")
    algo = SmoothedTD3.create(env=env, env_params=env.default_params, actor_critic="first",
                              network_init="torch", **CFG).replace(source_bc_alpha=jnp.asarray(2.5))
    ts = algo.init_state(jax.random.PRNGKey(0)).replace(source_buffer=D.as_replay_buffer(probe_dataset()))
    batch = algo.source_batch(ts, jax.random.PRNGKey(1))
    pi = np.asarray(algo.actor.apply(ts.actor_ts.params, batch.obs))
    qpi = np.asarray(algo.vmap_critic(ts.critic_ts.params, batch.obs, jnp.asarray(pi)))
    assert not np.allclose(qpi[0], qpi[1])
    want = -2.5 / np.abs(qpi[0]).mean() * qpi[0].mean() + np.mean((pi - np.asarray(batch.action)) ** 2)
    np.testing.assert_allclose(float(algo.actor_loss(ts.actor_ts.params, ts, batch, algo.source_bc_alpha)), want,
                               rtol=1e-5)
    np.testing.assert_allclose(float(algo.actor_loss(ts.actor_ts.params, ts, batch, 0.0)), -qpi[0].mean(), rtol=1e-5)

    for params in (ts.actor_ts.params, ts.critic_ts.params):
        for layer in params["params"].values():
            w, b = np.asarray(layer["kernel"]), np.asarray(layer["bias"])
            bound = 1.0 / np.sqrt(w.shape[-2])
            assert np.abs(w).max() <= bound and np.abs(b).max() <= bound and np.abs(b).max() > 0
            if w.size >= 512:  # U(-b, b): std b / sqrt(3), and values near the bound
                assert abs(w.std() - bound / np.sqrt(3)) < 0.1 * bound and np.abs(w).max() > 0.95 * bound
    k = np.asarray(ts.critic_ts.params["params"]["Dense_1"]["kernel"])
    assert not np.allclose(k[0], k[1])
    for online, target in ((ts.actor_ts.params, ts.actor_target_params), (ts.critic_ts.params, ts.critic_target_params)):
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(online), jax.tree.leaves(target)))
    # rejax's default draws differently (lecun-normal weights, zero biases)
    plain = SmoothedTD3.create(env=env, env_params=env.default_params, **CFG).init_state(jax.random.PRNGKey(0))
    assert not np.any(np.asarray(plain.actor_ts.params["params"]["Dense_0"]["bias"]))
