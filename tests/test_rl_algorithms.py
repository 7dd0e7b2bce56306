"""The smoothed TD3 / PPO on rejax, checked on probe environments with known values."""
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rejax import PPO, TD3

from lossmooth.core import engine
from lossmooth.core.objective import Method
from lossmooth.core.schedules import Schedule
from lossmooth.rl.ppo import SmoothedPPO
from lossmooth.rl.probes import ProbeEnv
from lossmooth.rl.td3 import SmoothedTD3
from lossmooth.rl.agents import updates_after

TD3_CFG = dict(num_envs=4, num_epochs=2, buffer_size=256, fill_buffer=16, batch_size=16,
               learning_rate=3e-3, policy_delay=2, polyak=0.9, gamma=0.9, exploration_noise=0.3)
PPO_CFG = dict(num_envs=4, num_steps=8, num_epochs=2, num_minibatches=2, learning_rate=3e-3, gamma=0.9)


def method(kind, **kw):
    return Method(schedule=Schedule.make(kind, **kw))


def run(algo, ts, n):
    """n training iterations, compiled once per (algo structure, n)."""
    return _run(ts, algo, n)


@jax.jit
def _scan_one(ts, algo):
    return algo.train_iteration(ts)


def _run(ts, algo, n):
    for _ in range(n):
        ts = _scan_one(ts, algo)
    return ts


def same_update(a, b):
    """Equal parameters up to float reassociation (XLA fuses the two programs differently)."""
    for x, y in zip(jax.tree.leaves((a.critic_ts.params, a.actor_ts.params)),
                    jax.tree.leaves((b.critic_ts.params, b.actor_ts.params))):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7)


def carry(plain_ts, smoothed_ts, **extra):
    """The smoothed state holding exactly the plain state's values (plus its own extra fields)."""
    fields = {k: getattr(plain_ts, k) for k in plain_ts.__dataclass_fields__}
    return smoothed_ts.replace(**fields, **extra)


@pytest.fixture(scope="module")
def td3_source():
    """Plain rejax TD3 trained on the constant-reward probe (its buffer is the source data)."""
    env = ProbeEnv("constant")
    plain = TD3.create(env=env, env_params=env.default_params, **TD3_CFG)
    ts = run(plain, plain.init_state(jax.random.PRNGKey(0)), 60)
    return plain, ts


def smoothed_td3(env_kind="observation", m=None, **kw):
    env = ProbeEnv(env_kind)
    return SmoothedTD3.create(env=env, env_params=env.default_params, source_env=ProbeEnv("constant"),
                              **TD3_CFG).replace(method=m or method("hard"), **kw)


def q_values(algo, ts, obs=((1.0,), (-1.0,))):
    obs = jnp.array(obs)
    act = algo.actor.apply(ts.actor_ts.params, obs)
    return np.asarray(algo.vmap_critic(ts.critic_ts.params, obs, act))  # [critics, 2]


def test_td3_hard_schedule_is_exactly_rejax():
    env = ProbeEnv("observation")
    plain = TD3.create(env=env, env_params=env.default_params, **TD3_CFG)
    sm = smoothed_td3(uniform_warmup=jnp.asarray(True))
    ts0 = plain.init_state(jax.random.PRNGKey(3))
    a = run(plain, ts0, 12)
    b = run(sm, carry(ts0, sm.init_state(jax.random.PRNGKey(3))), 12)
    same_update(a, b)  # same random streams, same losses: the same training up to float rounding
    rounds = 12 * TD3_CFG["policy_delay"]  # critic rounds; each collects num_envs steps first
    trained = sum(1 for r in range(rounds) if r * TD3_CFG["num_envs"] > TD3_CFG["fill_buffer"])
    assert int(b.updates) == trained * TD3_CFG["num_epochs"]
    assert updates_after(SimpleNamespace(name="td3", adapt=sm), 12) == int(b.updates)  # the host's count


def test_td3_source_free_program_continues_the_ramped_run_exactly(td3_source):
    """Past the ramp the program compiled without the source branch gives the cond program's numbers
    (what the host switches to), and never reads the source data."""
    plain, src = td3_source
    sm = smoothed_td3(m=method("linear", T=8.0), uniform_warmup=jnp.asarray(False))
    ts = carry(src, sm.init_state(jax.random.PRNGKey(11)), source_buffer=src.replay_buffer)
    ts = ts.replace(replay_buffer=sm.init_state(jax.random.PRNGKey(11)).replay_buffer, global_step=0)
    past = run(sm, ts, 8)
    assert int(past.updates) >= 8 and updates_after(SimpleNamespace(name="td3", adapt=sm), 8) == int(past.updates)
    free = sm.replace(with_source=False)
    same_update(run(sm, past, 4), run(free, past, 4))
    poisoned = past.replace(source_buffer=_nan_buffer(src.replay_buffer))
    out = run(free, poisoned, 4)
    assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(out.critic_ts.params))


def test_td3_lam0_update_is_the_source_update(td3_source):
    plain, src = td3_source
    sm = smoothed_td3(m=method("constant", value=0.0), uniform_warmup=jnp.asarray(False))
    sm = sm.replace(num_epochs=1)
    # a target buffer with data, past the fill, the source buffer = the source task's replay buffer
    tgt = run(sm, carry(src, sm.init_state(jax.random.PRNGKey(1))), 8)
    ts = tgt.replace(source_buffer=src.replay_buffer)
    got, _ = jax.jit(lambda ts: sm.train_critic(ts))(ts)

    # the update by hand: same collection and keys, TD3's critic loss on the source batch only
    ts1, tr = sm.collect_transitions(ts, uniform=False)
    ts1 = ts1.replace(replay_buffer=ts1.replay_buffer.extend(tr))
    rng, rng_sample = jax.random.split(ts1.rng)
    ts2 = ts1.replace(rng=rng)
    batch = sm.source_batch(ts2, jax.random.fold_in(rng_sample, 1))
    g = jax.grad(sm.critic_loss)(ts2.critic_ts.params, ts2, batch, jax.random.fold_in(ts2.rng, 1))
    want = ts2.critic_ts.apply_gradients(grads=g).params
    for x, y in zip(jax.tree.leaves(got.critic_ts.params), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
    # and it is not the target update
    gt = jax.grad(sm.critic_loss)(ts2.critic_ts.params, ts2,
                                  sm._normalize(ts2, ts2.replay_buffer.sample(sm.batch_size, rng_sample)), ts2.rng)
    other = ts2.critic_ts.apply_gradients(grads=gt).params
    assert not all(np.allclose(x, y) for x, y in zip(jax.tree.leaves(got.critic_ts.params), jax.tree.leaves(other)))


def _nan_buffer(buf):
    return buf.replace(data=jax.tree.map(lambda x: jnp.full_like(x, jnp.nan) if x.dtype.kind == "f" else x,
                                         buf.data), full=True)


def test_td3_source_buffer_untouched_at_lam1_and_used_on_a_ramp(td3_source):
    plain, src = td3_source
    poisoned = _nan_buffer(src.replay_buffer)
    for kind, kw, expect_finite in (("hard", {}, True), ("linear", {"T": 1000.0}, False)):
        sm = smoothed_td3(m=method(kind, **kw), uniform_warmup=jnp.asarray(False))
        ts = carry(src, sm.init_state(jax.random.PRNGKey(2)), source_buffer=poisoned)
        ts = ts.replace(replay_buffer=sm.init_state(jax.random.PRNGKey(2)).replay_buffer, global_step=0)
        out = run(sm, ts, 10)
        finite = all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(out.critic_ts.params))
        assert finite == expect_finite, kind  # the ramp reads the NaN source data: the probe sees it


def test_td3_values_on_probes_hard_and_smoothed(td3_source):
    plain, src = td3_source
    np.testing.assert_allclose(q_values(plain, src, ((0.0,),)), 1.0, atol=0.15)  # constant reward: Q = 1
    for m in (method("hard"), method("linear", T=64.0)):
        sm = smoothed_td3(m=m, uniform_warmup=jnp.asarray(False))
        ts = carry(src, sm.init_state(jax.random.PRNGKey(4)), source_buffer=src.replay_buffer)
        ts = ts.replace(replay_buffer=sm.init_state(jax.random.PRNGKey(4)).replay_buffer, global_step=0)
        out = run(sm, ts, 150)
        np.testing.assert_allclose(q_values(sm, out), [[1.0, -1.0]] * 2, atol=0.2)  # Q(s, a) = s


def test_vmapped_runs_equal_runs_one_by_one(td3_source):
    plain, src = td3_source
    base_algo = smoothed_td3(uniform_warmup=jnp.asarray(False))  # runs share the static structure
    algos = [base_algo.replace(method=method("linear", T=t)) for t in (0.0, 40.0)]
    base = algos[0].init_state(jax.random.PRNGKey(10))  # rejax makes a new state class per init
    states = [carry(src, base, source_buffer=src.replay_buffer).replace(rng=jax.random.PRNGKey(10 + i))
              for i in range(2)]
    chunk = engine.make_chunk(lambda ts, a, d: (a.train_iteration(ts), {"lam": a.lam(ts.updates)}),
                              lambda ts, a, d: {}, 3, 2)
    both, m = chunk(engine.stack_runs(states), engine.stack_runs(algos), None)
    for i in range(2):
        alone, m1 = chunk(engine.stack_runs([states[i]]), engine.stack_runs([algos[i]]), None)
        for x, y in zip(jax.tree.leaves(alone.critic_ts.params), jax.tree.leaves(both.critic_ts.params)):
            np.testing.assert_allclose(np.asarray(x)[0], np.asarray(y)[i], rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(m1["lam"][0], m["lam"][i])


# ----------------------------------------------------------------------------- PPO


def smoothed_ppo(target="observation", source="constant", m=None):
    env = ProbeEnv(target)
    return SmoothedPPO.create(env=env, env_params=env.default_params, source_env=ProbeEnv(source),
                              **PPO_CFG).replace(method=m or method("hard"))


def v_values(algo, ts, obs=((1.0,), (-1.0,))):
    return np.asarray(algo.critic.apply(ts.critic_ts.params, jnp.array(obs)))


def test_ppo_hard_schedule_is_exactly_rejax():
    env = ProbeEnv("observation")
    plain = PPO.create(env=env, env_params=env.default_params, **PPO_CFG)
    sm = smoothed_ppo()
    ts0 = plain.init_state(jax.random.PRNGKey(5))
    a = run(plain, ts0, 5)
    b = run(sm, carry(ts0, sm.init_state(jax.random.PRNGKey(5))), 5)
    same_update(a, b)


def test_ppo_source_envs_untouched_at_lam1_and_used_on_a_ramp():
    for kind, kw, expect_finite in (("hard", {}, True), ("linear", {"T": 1000.0}, False)):
        sm = smoothed_ppo(source="nan", m=method(kind, **kw))
        out = run(sm, sm.init_state(jax.random.PRNGKey(6)), 3)
        finite = all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(out.critic_ts.params))
        assert finite == expect_finite, kind


def test_ppo_values_on_probes_hard_and_smoothed():
    env = ProbeEnv("constant")
    plain = PPO.create(env=env, env_params=env.default_params, **PPO_CFG)
    src = run(plain, plain.init_state(jax.random.PRNGKey(7)), 60)
    np.testing.assert_allclose(v_values(plain, src, ((0.0,),)), 1.0, atol=0.15)  # constant reward: V = 1
    for m in (method("hard"), method("linear", T=32.0)):
        sm = smoothed_ppo(m=m)
        ts = carry(src, sm.init_state(jax.random.PRNGKey(8)))
        out = run(sm, ts, 80)
        np.testing.assert_allclose(v_values(sm, out), [1.0, -1.0], atol=0.2)  # V(s) = s
        assert int(out.updates) == 80 * PPO_CFG["num_epochs"] * PPO_CFG["num_minibatches"]
        assert updates_after(SimpleNamespace(name="ppo", adapt=sm), 80) == int(out.updates)


def test_ppo_source_free_program_continues_the_ramped_run_exactly():
    sm = smoothed_ppo(m=method("linear", T=8.0))
    past = run(sm, sm.init_state(jax.random.PRNGKey(12)), 2)  # 8 updates: the ramp is over
    free = sm.replace(with_source=False)
    same_update(run(sm, past, 3), run(free, past, 3))
    nan_src = smoothed_ppo(source="nan", m=method("linear", T=8.0)).replace(with_source=False)
    out = run(nan_src, past, 3)  # the source environments are not stepped at all
    assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(out.critic_ts.params))
