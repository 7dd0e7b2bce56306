"""Our TD3+BC update against the PyTorch reference (benchmarks/td3bc_torch.py, CORL's td3_bc.py
algorithm): shared weights, the same batches and target noise; under the reference's options
(``critic_squared_error="full"``, ``actor_critic="first"``, no gradient clipping) gradients and
updated parameters equal the reference's to float rounding."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (the dev extra has it): no reference to compare")

from benchmarks.td3bc_torch import TorchTD3BC  # noqa: E402
from lossmooth.offline import datasets as D  # noqa: E402
from lossmooth.rl.host_loop import SpacesEnv  # noqa: E402
from lossmooth.rl.td3 import SmoothedTD3  # noqa: E402

OBS, ACT, HIDDEN, BATCH = 5, 2, 16, 8
RTOL, ATOL = 1e-5, 1e-6


def dataset(n=64, seed=0):
    rng = np.random.default_rng(seed)
    o = rng.normal(size=(n, OBS)).astype(np.float32) * 3 + 1
    nxt = (o + 0.1 * rng.normal(size=(n, OBS))).astype(np.float32)
    a = rng.uniform(-1, 1, (n, ACT)).astype(np.float32)
    term = np.zeros(n, bool)
    term[::7] = True
    timeout = np.zeros(n, bool)
    timeout[-1] = True
    term[-1] = False
    return D.transitions(o, a, rng.normal(size=n).astype(np.float32), nxt, term, timeout, name="tiny")


@functools.lru_cache(maxsize=None)
def ours(squared_error="full"):
    """Our agent as the offline-to-online setting builds it, with the reference's options."""
    env = SpacesEnv(OBS, -np.ones(ACT, np.float32), np.ones(ACT, np.float32), 1000)
    kw = {"hidden_layer_sizes": [HIDDEN, HIDDEN], "activation": "relu"}
    algo = SmoothedTD3.create(env=env, env_params=env.default_params, batch_size=BATCH, policy_delay=2,
                              learning_rate=3e-4, max_grad_norm=1e6, polyak=1.0 - 0.005, target_update_freq=1,
                              gamma=0.99, target_noise=0.2, target_noise_clip=0.5, normalize_observations=True,
                              freeze_obs_rms=True, buffer_size=BATCH, actor_kwargs=kw, critic_kwargs=kw,
                              network_init="torch", actor_critic="first", critic_squared_error=squared_error
                              ).replace(source_bc_alpha=jnp.asarray(2.5))
    data = dataset()
    mean, std = data.state_stats()
    ts = jax.jit(algo.init_state)(jax.random.PRNGKey(3)).replace(source_buffer=D.as_replay_buffer(data))
    var = jnp.asarray(std.astype(np.float64) ** 2 - 1e-8, jnp.float32)  # as the setting sets it
    return algo, ts.replace(obs_rms_state=ts.obs_rms_state.replace(mean=jnp.asarray(mean), var=var))


def reference(ts):
    ref = TorchTD3BC(OBS, ACT, hidden=HIDDEN, batch_size=BATCH)
    ref.load_flax(ts.actor_ts.params, ts.critic_ts.params, ts.actor_target_params, ts.critic_target_params)
    return ref


def as_torch(batch, noise):
    t = lambda x: torch.as_tensor(np.array(x, np.float32))  # noqa: E731
    return (t(batch.obs), t(batch.action), t(batch.reward)[:, None], t(batch.next_obs),
            t(batch.done)[:, None]), t(noise)


def draws(algo, ts):
    """The batch and target-policy noise (before clipping) of ``offline_iteration``'s critic updates
    from ``ts``, in order (its key schedule)."""
    def all_draws(ts):
        out, rng = [], ts.rng
        for _ in range(algo.policy_delay):
            rng, k_batch, k_noise = jax.random.split(rng, 3)
            out.append((algo.source_batch(ts, k_batch),
                        algo.target_noise * jax.random.normal(k_noise, (BATCH, ACT))))
        return out

    return jax.jit(all_draws)(ts)


def close(ours_tree, ref_tree, what):
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ours_tree), jax.tree.leaves(ref_tree)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL,
                                   err_msg=f"{what} {jax.tree_util.keystr(path)}")


def test_critic_gradient_equals_the_references_with_shared_weights():
    algo, ts = ours()
    ref = reference(ts)
    batch = draws(algo, ts)[0][0]
    key = jax.random.PRNGKey(11)  # critic_loss draws its noise from this key; the reference is given it
    noise = algo.target_noise * jax.random.normal(key, (BATCH, ACT))
    loss_and_grad = jax.jit(jax.value_and_grad(algo.critic_loss))
    loss, g = loss_and_grad(ts.critic_ts.params, ts, batch, key)
    out = ref.train(*as_torch(batch, noise))
    ref_g = {"params": {f"Dense_{k}": {"kernel": np.stack([c[2 * k].weight.grad.numpy().T for c in pair]),
                                       "bias": np.stack([c[2 * k].bias.grad.numpy() for c in pair])}
                        for k in range(3)} for pair in [(ref.critic_1, ref.critic_2)]}
    np.testing.assert_allclose(float(loss), float(out["critic_loss"].detach()), rtol=RTOL)
    close(g, ref_g, "critic gradient")
    # our default (optax l2_loss) is exactly half the reference's loss, so half its gradient
    half, _ = ours("half")
    g_half = jax.jit(jax.grad(half.critic_loss))(ts.critic_ts.params, ts, batch, key)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(2 * np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-9),
                 g_half, g)
    # the critic after one Adam step
    close(jax.jit(lambda c: c.apply_gradients(grads=g))(ts.critic_ts).params, ref.critic_flax(), "critic after one step")


def iterations(squared_error, rounds=3):
    """``rounds`` TD3+BC rounds of ours and of the reference from shared weights on the same batches."""
    algo, ts = ours(squared_error)
    start = ts
    ref = reference(ts)
    step = jax.jit(algo.offline_iteration)
    for _ in range(rounds):
        for batch, noise in draws(algo, ts):
            ref.train(*as_torch(batch, noise))
        ts = step(ts)
    return start, ts, ref


def test_offline_iterations_equal_the_references_under_its_options():
    """Three TD3+BC rounds (6 critic updates, 3 actor updates and target steps) from shared weights:
    every network and target equals the reference's to float rounding."""
    start, ts, ref = iterations("full")
    close(ts.critic_ts.params, ref.critic_flax(), "critic")
    close(ts.actor_ts.params, ref.actor_flax(), "actor")
    close(ts.critic_target_params, ref.critic_flax(target=True), "critic target")
    close(ts.actor_target_params, ref.actor_flax(target=True), "actor target")
    # the parameters moved (by about the learning rate per Adam step), so equality is not vacuous
    moved = np.abs(np.asarray(ts.actor_ts.params["params"]["Dense_0"]["kernel"])
                   - np.asarray(start.actor_ts.params["params"]["Dense_0"]["kernel"])).max()
    assert moved > 1e-4


def test_the_default_half_loss_is_the_one_difference():
    """Our default critic loss (optax l2_loss, half the reference's) takes other Adam steps where a
    gradient is near Adam's epsilon: the same three rounds leave some critic weights beyond rounding."""
    _, ts, ref = iterations("half")
    with pytest.raises(AssertionError, match="critic"):
        close(ts.critic_ts.params, ref.critic_flax(), "critic")


def test_the_roofline_counts_each_sides_matmuls_and_the_ratio_no_program_passes():
    """One-wide layers by hand: the actor (1 -> 1 -> 1 -> 1) is 3 MACs a sample, a critic (2 -> 1 -> 1
    -> 1) 4; a critic update runs the target actor (3), both target critics (8) and both critics
    forward and backward (24); the actor update runs the actor forward and backward (9) and its Q
    critics forward and input-backward (8 each); two critic updates an iteration, 2 FLOPs a MAC."""
    from benchmarks.offline_speed import model_flops
    from benchmarks.td3bc_reference import roofline

    assert model_flops(1, 1, 1, 1, actor_critics=1) == 2 * (2 * 35 + 17)
    assert model_flops(1, 1, 1, 1, actor_critics=2) == 2 * (2 * 35 + 25)
    per_update = model_flops(17, 6, 256, 256, actor_critics=1) / 2
    line = roofline(ups_ours=200.0, ups_ref=100.0, peak=per_update * 500.0, obs=17, act=6, hidden=256, batch=256,
                    delay=2, actor_critic="first")
    assert "ours would be 5.00x" in line and "= 40% of this machine's" in line and "= 20%;" in line
    assert "3x the reference needs" in line and "= 60% of the peak" in line
