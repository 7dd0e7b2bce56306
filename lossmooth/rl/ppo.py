"""PPO with the smoothed objective, on rejax's PPO.

Each iteration collects ``num_steps`` x ``num_envs`` transitions of the target task with the current
policy and, while some run still needs the source loss (lam < 1 at the iteration's first update),
as many transitions of the source task in parallel source environments with the same policy. Both
get their own GAE advantages and are split into minibatches; minibatch update t (counted from the
switch) with lam = lam(t) minimizes, for the actor and then the critic,

    L = lam * L_PPO(theta; b_T) + (1 - lam) * L_PPO(theta; b_S)

    actor:  L_PPO = -mean min(rho A, clip(rho, 1 - eps, 1 + eps) A) - c_ent H[pi],
            rho = pi(a|s) / pi_old(a|s), A normalized per minibatch
    critic: L_PPO = c_vf 1/2 mean max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)

(rejax's PPO losses). Source collection and the source branch sit behind ``lax.cond`` on
``source_needed``: once every run has lam = 1 neither happens; with the static ``with_source=False``
neither is in the program. The observation normalizer sees the
observations the agent trains on (target, and source while it is collected); ``global_step``
counts target-task steps only.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from rejax import PPO
from rejax.algos.algorithm import register_init
from rejax.algos.ppo import AdvantageMinibatch

from lossmooth.core.objective import Method, own_branch, smoothed_loss, source_needed
from lossmooth.rl.td3 import hard_method


class SmoothedPPO(PPO):
    method: Method = struct.field(pytree_node=True, default_factory=hard_method)
    source_env: object = struct.field(pytree_node=False, default=None)
    # static: False compiles a program without source collection or the source branch (see SmoothedTD3)
    with_source: bool = struct.field(pytree_node=False, default=True)

    @register_init
    def initialize_smoothing_state(self, rng):
        env = self.source_env if self.source_env is not None else self.env
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(rng, self.num_envs), self.env_params)
        return {"source_env_state": env_state, "source_last_obs": obs,
                "source_last_done": jnp.zeros(self.num_envs, dtype=bool),
                "updates": jnp.zeros((), jnp.int32)}

    # -- pure losses (rejax's PPO losses as functions of params and a minibatch) ---------------

    def actor_loss(self, params, batch):
        log_prob, entropy = self.actor.apply(params, batch.trajectories.obs,
                                             batch.trajectories.action, method="log_prob_entropy")
        entropy = entropy.mean()
        ratio = jnp.exp(log_prob - batch.trajectories.log_prob)
        advantages = (batch.advantages - batch.advantages.mean()) / (batch.advantages.std() + 1e-8)
        clipped_ratio = jnp.clip(ratio, 1 - self.clip_eps, 1 + self.clip_eps)
        pi_loss = -jnp.minimum(ratio * advantages, clipped_ratio * advantages).mean()
        return pi_loss - self.ent_coef * entropy

    def critic_loss(self, params, batch):
        value = self.critic.apply(params, batch.trajectories.obs)
        value_pred_clipped = batch.trajectories.value + (value - batch.trajectories.value).clip(
            -self.clip_eps, self.clip_eps)
        value_losses = jnp.square(value - batch.targets)
        value_losses_clipped = jnp.square(value_pred_clipped - batch.targets)
        return self.vf_coef * 0.5 * jnp.maximum(value_losses, value_losses_clipped).mean()

    def lam(self, updates):
        return self.method.schedule(updates)

    # -- rollouts -------------------------------------------------------------------------------

    def _rollout(self, ts):
        """Target-task trajectories with GAE (rejax's collection)."""
        ts, traj = self.collect_trajectories(ts)
        last_val = self.critic.apply(ts.critic_ts.params, ts.last_obs)
        last_val = jnp.where(ts.last_done, 0, last_val)
        adv, targets = self.calculate_gae(traj, last_val)
        return ts, AdvantageMinibatch(traj, adv, targets)

    def _source_rollout(self, ts):
        """Source-task trajectories: rejax's collection run on the source environments' state."""
        src = self.replace(env=self.source_env)
        swapped = ts.replace(env_state=ts.source_env_state, last_obs=ts.source_last_obs,
                             last_done=ts.source_last_done)
        swapped, batch = src._rollout(swapped)
        ts = ts.replace(rng=swapped.rng, obs_rms_state=swapped.obs_rms_state,
                        rew_rms_state=swapped.rew_rms_state,
                        source_env_state=swapped.env_state, source_last_obs=swapped.last_obs,
                        source_last_done=swapped.last_done)
        return ts, batch

    def train_iteration(self, ts):
        ts, batch_t = self._rollout(ts)
        batch_s = None
        if self.with_source:
            lam = self.lam(ts.updates)
            placeholder = jax.tree.map(jnp.zeros_like, batch_t)
            rolled, batch_s = jax.lax.cond(source_needed(lam), self._source_rollout, lambda ts: (ts, placeholder), ts)
            ts = own_branch(lam < 1.0, rolled, ts)  # a run past its ramp keeps its state as if no run rolled out

        def update_epoch(ts, unused):
            rng, minibatch_rng = jax.random.split(ts.rng)
            ts = ts.replace(rng=rng)
            mbs = (self.shuffle_and_split(batch_t, minibatch_rng),)
            if batch_s is not None:
                mbs += (self.shuffle_and_split(batch_s, jax.random.fold_in(minibatch_rng, 1)),)
            ts, _ = jax.lax.scan(lambda ts, mb: (self.update(ts, *mb), None), ts, mbs)
            return ts, None

        ts, _ = jax.lax.scan(update_epoch, ts, None, self.num_epochs)
        return ts

    def update(self, ts, batch, source_batch=None):
        lam = self.lam(ts.updates)
        run_source = source_needed(lam)

        def smoothed_grad(loss_fn, params):
            src = None if source_batch is None else (lambda p: loss_fn(p, source_batch))
            return jax.grad(lambda p: smoothed_loss(p, lam, run_source, lambda q: loss_fn(q, batch), src),
                            has_aux=True)(params)[0]

        ts = ts.replace(actor_ts=ts.actor_ts.apply_gradients(grads=smoothed_grad(self.actor_loss, ts.actor_ts.params)))
        ts = ts.replace(critic_ts=ts.critic_ts.apply_gradients(grads=smoothed_grad(self.critic_loss, ts.critic_ts.params)))
        return ts.replace(updates=ts.updates + 1)

    def deterministic_act(self, ts):
        """The policy's mean action (clipped to the action range), for evaluation."""

        def act(obs, rng):
            if self.normalize_observations:
                obs = self.normalize_obs(ts.obs_rms_state, obs)
            mean = self.actor.apply(ts.actor_ts.params, jnp.expand_dims(obs, 0),
                                    method=lambda m, o: m._action_dist(o).mean())
            low, high = self.action_space.low, self.action_space.high
            return jnp.clip(jnp.squeeze(mean, 0), low, high)

        return act
