"""TD3 with the smoothed objective, on rejax's TD3 (one implementation for online RL and for
offline-to-online RL).

Per critic update t (counted from the switch) with lam = lam(t) from the method's schedule, a target
batch b_T from the online replay buffer and an independent source batch b_S from ``source_buffer``
(the source task's replay buffer in online RL, the offline dataset in offline-to-online RL):

    L_critic = lam * C(phi; b_T) + (1 - lam) * C(phi; b_S)
    C(phi; b) = sum_i mean_b 1/2 (Q_phi_i(s, a) - y)^2   (without the 1/2 where critic_squared_error="full"),
        y = r + gamma (1 - d) min_j Q_phi'_j(s', clip(pi'(s') + clip(sigma eps, -c, c), low, high))

and every ``policy_delay`` critic rounds, on the same batches,

    L_actor = lam * A(theta; b_T, alpha=target_bc_alpha) + (1 - lam) * A(theta; b_S, alpha=source_bc_alpha)
    A(theta; b, alpha) = -w mean_{i,b} Q_phi_i(s, pi_theta(s)) + [alpha > 0] beta_t mean_b ||pi_theta(s) - a||^2
        w = alpha / mean_b |Q_phi_1(s, pi_theta(s))|  (TD3+BC, held constant) if alpha > 0 else 1
        beta_t = max(0, 1 - t / bc_decay_updates) if bc_decay_updates > 0 else 1

(``target_bc_alpha`` is 0 (plain TD3 on b_T) unless the static ``target_bc`` is set: the BC-decay
control, where both halves carry TD3+BC's actor loss and the BC weight beta_t decays linearly to 0,
as SPOT's and ReBRAC's fine-tuning decay theirs.)

The actor's Q term is ``mean_b Q_phi_1(s, pi_theta(s))`` with ``actor_critic="first"`` (TD3's and
TD3+BC's reference implementations: the first critic only) or ``mean_{i,b} Q_phi_i`` with ``"mean"``
(rejax's TD3, the default here); TD3+BC's lambda uses the first critic either way, as in Fujimoto &
Gu's reference. ``network_init="torch"`` initializes every linear layer as PyTorch's ``nn.Linear``
does (the reference implementations' networks): weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
instead of rejax's (flax's) lecun-normal weights and zero biases (``"rejax"``, the default). The critic
loss is half the squared error (optax's ``l2_loss``, rejax's; ``critic_squared_error="half"``, the default)
or the whole of it (``"full"``: the reference implementations' ``F.mse_loss``); Adam is invariant to the
loss's scale except through its epsilon, so the two take slightly different steps. The source branch (its batch, forward and backward pass) sits behind
``lax.cond(source_needed(lam))``: once every run in the vmapped batch has lam = 1 it is never
sampled nor computed, and the hard switch (lam = 1 from the start) never touches it. With the
static ``with_source=False`` the branch is not in the program at all (what the host runs once it
knows every run is past its ramp).

Before the critic starts learning (``global_step <= fill_buffer``) actions come from the current
policy with exploration noise, or uniformly at random where ``uniform_warmup`` (training from
scratch, as rejax does). With ``uniform_warmup`` and a hard schedule every update is exactly
rejax's (same random streams), which a test checks.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct
from rejax import TD3
from rejax.algos.algorithm import register_init
from rejax.buffers import ReplayBuffer

from lossmooth.core.objective import Method, smoothed_loss, source_needed
from lossmooth.core.schedules import Schedule


def hard_method() -> Method:
    return Method(schedule=Schedule.make("hard"))


def torch_linear_init(params, key):
    """``params`` (flax Dense layers, possibly with leading axes such as rejax's stacked critics) with
    every kernel and bias drawn again from U(-b, b), b = 1/sqrt(fan_in): PyTorch's ``nn.Linear``
    default (kaiming-uniform with a = sqrt(5) for the weights gives the same bound)."""
    def redraw(tree, key):
        if isinstance(tree, dict) and "kernel" in tree:
            k_w, k_b = jax.random.split(key)
            w = tree["kernel"]
            bound = 1.0 / jnp.sqrt(w.shape[-2])
            out = dict(tree, kernel=jax.random.uniform(k_w, w.shape, w.dtype, -bound, bound))
            if "bias" in tree:
                out["bias"] = jax.random.uniform(k_b, tree["bias"].shape, tree["bias"].dtype, -bound, bound)
            return out
        if isinstance(tree, dict):
            return {name: redraw(sub, jax.random.fold_in(key, i)) for i, (name, sub) in enumerate(sorted(tree.items()))}
        return tree

    return type(params)(redraw(dict(params), key)) if not isinstance(params, dict) else redraw(params, key)


class SmoothedTD3(TD3):
    method: Method = struct.field(pytree_node=True, default_factory=hard_method)
    uniform_warmup: jnp.ndarray | bool = struct.field(pytree_node=True, default=True)
    source_bc_alpha: jnp.ndarray | float = struct.field(pytree_node=True, default=0.0)
    target_bc_alpha: jnp.ndarray | float = struct.field(pytree_node=True, default=0.0)
    bc_decay_updates: jnp.ndarray | float = struct.field(pytree_node=True, default=0.0)
    # static: the target half's actor loss may carry a BC term (else it is statically plain TD3)
    target_bc: bool = struct.field(pytree_node=False, default=False)
    source_env: object = struct.field(pytree_node=False, default=None)  # for evaluation only
    # static: False compiles a program without the source branch at all (the host switches to it
    # once every run is past its ramp; the numbers are the same as the cond's skipped branch)
    with_source: bool = struct.field(pytree_node=False, default=True)
    # static: keep the observation normalizer as set (TD3+BC normalizes states with the dataset's
    # mean and std, fixed), instead of rejax's running update from every collected observation
    freeze_obs_rms: bool = struct.field(pytree_node=False, default=False)
    # static: which critics the actor's Q term averages ("mean": rejax's; "first": TD3's and TD3+BC's
    # reference implementations) and how linear layers start ("rejax", or "torch": nn.Linear's default)
    actor_critic: str = struct.field(pytree_node=False, default="mean")
    network_init: str = struct.field(pytree_node=False, default="rejax")
    # static: the critic's squared error, "half" ((q - y)^2 / 2: optax's l2_loss, rejax's) or "full"
    # ((q - y)^2: F.mse_loss, TD3's and TD3+BC's reference implementations)
    critic_squared_error: str = struct.field(pytree_node=False, default="half")

    @classmethod
    def create_agent(cls, config, env, env_params):
        """rejax's TD3 networks, with ``hidden_layer_sizes`` settable in ``actor_kwargs`` /
        ``critic_kwargs`` (rejax fixes 64-64; TD3+BC's reference networks are 256-256)."""
        sizes = {}
        for net in ("actor", "critic"):
            kw = dict(config.pop(f"{net}_kwargs", None) or {})
            if "hidden_layer_sizes" in kw:
                sizes[net] = tuple(int(h) for h in kw.pop("hidden_layer_sizes"))
            config[f"{net}_kwargs"] = kw
        agent = super().create_agent(config, env, env_params)
        return {k: (m.clone(hidden_layer_sizes=sizes[k]) if k in sizes else m) for k, m in agent.items()}

    @register_init
    def initialize_network_params(self, rng):
        """rejax's networks, optimizer states and target copies; with ``network_init="torch"`` every
        linear layer's weights and biases drawn again from U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        out = super().initialize_network_params(rng)
        if self.network_init == "rejax":
            return out
        k_actor, k_critic = jax.random.split(jax.random.fold_in(rng, 0x7D3))
        actor = torch_linear_init(out["actor_ts"].params, k_actor)
        critic = torch_linear_init(out["critic_ts"].params, k_critic)
        return {"actor_ts": out["actor_ts"].replace(params=actor), "actor_target_params": actor,
                "critic_ts": out["critic_ts"].replace(params=critic), "critic_target_params": critic}

    @register_init
    def initialize_smoothing_state(self, rng):
        buf = ReplayBuffer.empty(self.buffer_size, self.obs_space, self.action_space)
        return {"source_buffer": buf, "updates": jnp.zeros((), jnp.int32)}

    def update_obs_rms(self, rms_state, obs, batched=True):
        return rms_state if self.freeze_obs_rms else super().update_obs_rms(rms_state, obs, batched)

    # -- pure losses --------------------------------------------------------------------------

    def critic_loss(self, critic_params, ts, batch, noise_key):
        action = self.actor.apply(ts.actor_target_params, batch.next_obs)
        noise = jnp.clip(self.target_noise * jax.random.normal(noise_key, action.shape),
                         -self.target_noise_clip, self.target_noise_clip)
        action = jnp.clip(action + noise, self.action_space.low, self.action_space.high)
        q_target = jnp.min(self.vmap_critic(ts.critic_target_params, batch.next_obs, action), axis=0)
        target = batch.reward + (1 - batch.done) * self.gamma * q_target
        q1, q2 = self.vmap_critic(critic_params, batch.obs, batch.action)
        if self.critic_squared_error == "full":
            return jnp.mean(jnp.square(q1 - target)) + jnp.mean(jnp.square(q2 - target))
        return optax.l2_loss(q1, target).mean() + optax.l2_loss(q2, target).mean()

    def actor_loss(self, actor_params, ts, batch, bc_alpha, bc_weight=1.0):
        action = self.actor.apply(actor_params, batch.obs)
        if self.actor_critic == "first":  # the second critic's forward and backward would be thrown away
            q = self.critic.apply(jax.tree.map(lambda p: p[0], ts.critic_ts.params), batch.obs, action)[None]
        else:
            q = self.vmap_critic(ts.critic_ts.params, batch.obs, action)
        q_term = q[0].mean() if self.actor_critic == "first" else q.mean()
        if isinstance(bc_alpha, (int, float)) and bc_alpha == 0:  # statically plain TD3 (the target loss)
            return -q_term
        bc = bc_alpha > 0
        w = jnp.where(bc, bc_alpha / (jnp.abs(jax.lax.stop_gradient(q[0])).mean() + 1e-8), 1.0)
        bc_term = jnp.where(bc, bc_weight * jnp.mean(jnp.square(action - batch.action)), 0.0)
        return -w * q_term + bc_term

    def bc_weight(self, updates):
        """beta_t: 1 - t / bc_decay_updates clipped at 0 (1 throughout where bc_decay_updates = 0)."""
        T = jnp.asarray(self.bc_decay_updates, jnp.float32)
        return jnp.where(T > 0, jnp.clip(1.0 - updates / jnp.maximum(T, 1.0), 0.0, 1.0), 1.0)

    # -- batches --------------------------------------------------------------------------------

    def _normalize(self, ts, batch):
        if self.normalize_observations:
            batch = batch._replace(obs=self.normalize_obs(ts.obs_rms_state, batch.obs),
                                   next_obs=self.normalize_obs(ts.obs_rms_state, batch.next_obs))
        if self.normalize_rewards:
            batch = batch._replace(reward=self.normalize_rew(ts.rew_rms_state, batch.reward))
        return batch

    def source_batch(self, ts, key):
        """The source batch for ``key`` (drawn only inside the source branch): ``batch_size``
        transitions drawn uniformly with replacement (as TD3+BC samples its dataset; rejax's own
        sampler permutes the whole buffer, which costs O(N) per batch on a 1M-transition dataset)."""
        buf = ts.source_buffer
        idx = jax.random.randint(key, (self.batch_size,), 0, jnp.maximum(buf.num_entries, 1))
        return self._normalize(ts, jax.tree.map(lambda x: x[idx], buf.data))

    # -- offline TD3+BC --------------------------------------------------------------------------

    def offline_iteration(self, ts):
        """One TD3+BC round on the dataset in ``source_buffer`` (no environment step): ``policy_delay``
        critic updates, each on its own batch, then an actor update with weight ``source_bc_alpha`` on
        the last batch and a Polyak step of both targets, theta' <- polyak theta' + (1 - polyak) theta
        (Fujimoto & Gu's reference: the actor and targets move every ``policy_delay`` critic updates)."""

        def critic_step(ts, _):
            rng, k_batch, k_noise = jax.random.split(ts.rng, 3)
            batch = self.source_batch(ts, k_batch)
            g = jax.grad(self.critic_loss)(ts.critic_ts.params, ts, batch, k_noise)
            return ts.replace(rng=rng, critic_ts=ts.critic_ts.apply_gradients(grads=g)), batch

        ts, batches = jax.lax.scan(critic_step, ts, None, self.policy_delay)
        batch = jax.tree.map(lambda x: x[-1], batches)
        g = jax.grad(self.actor_loss)(ts.actor_ts.params, ts, batch, self.source_bc_alpha)
        ts = ts.replace(actor_ts=ts.actor_ts.apply_gradients(grads=g))
        move = lambda p, tp: jax.tree.map(lambda a, b: self.polyak * b + (1 - self.polyak) * a, p, tp)  # noqa: E731
        return ts.replace(critic_target_params=move(ts.critic_ts.params, ts.critic_target_params),
                          actor_target_params=move(ts.actor_ts.params, ts.actor_target_params))

    def lam(self, updates):
        return self.method.schedule(updates)

    # -- training -------------------------------------------------------------------------------

    def train_iteration(self, ts, transitions=None):
        """``policy_delay`` critic rounds (each: ``num_envs`` environment steps into the replay buffer,
        then ``num_epochs`` critic updates), then the actor updates and the target step. With
        ``transitions`` (a Minibatch [policy_delay, num_envs, ...]) the rounds' steps were taken on the
        host (gymnasium environments) instead of in the JAX environment."""
        old_global_step = ts.global_step
        ph = self._placeholder(ts)
        if transitions is None:
            body = lambda _, c: self.train_critic(c[0])  # noqa: E731
        else:
            body = lambda i, c: self.train_critic(c[0], jax.tree.map(lambda x: x[i], transitions))  # noqa: E731
        ts, minibatch = jax.lax.fori_loop(0, self.policy_delay, body, (ts, ph))
        return self.train_policy(ts, minibatch, old_global_step)

    # -- host-stepped environments ------------------------------------------------------------------

    def host_act(self, ts, obs):
        """Exploration actions for ``obs`` [num_envs, obs_dim] of host-stepped environments, drawn as
        rejax's collection draws them: uniform over the action box before training starts where
        ``uniform_warmup``, else clip(pi(s) + N(0, exploration_noise^2), low, high)."""
        rng, k_uniform, k_noise = jax.random.split(ts.rng, 3)
        low, high = self.action_space.low, self.action_space.high
        uniform = jnp.logical_and(self.uniform_warmup, ts.global_step <= self.fill_buffer)
        random_action = jax.random.uniform(k_uniform, (obs.shape[0], *self.action_space.shape),
                                           minval=low, maxval=high)
        o = self.normalize_obs(ts.obs_rms_state, obs) if self.normalize_observations else obs
        a = self.actor.apply(ts.actor_ts.params, o)
        a = jnp.clip(a + self.exploration_noise * jax.random.normal(k_noise, a.shape), low, high)
        return ts.replace(rng=rng), jnp.where(uniform, random_action, a)

    def absorb(self, ts, transitions):
        """What rejax's collection does to the state besides stepping: the observation (and reward)
        statistics see the new transitions and ``global_step`` counts them."""
        if self.normalize_observations:
            ts = ts.replace(obs_rms_state=self.update_obs_rms(ts.obs_rms_state, transitions.next_obs))
        if self.normalize_rewards:
            ts = ts.replace(rew_rms_state=self.update_rew_rms(ts.rew_rms_state, transitions.reward,
                                                              transitions.done))
        return ts.replace(global_step=ts.global_step + self.num_envs)

    def _placeholder(self, ts):
        mb = jax.eval_shape(lambda: ts.replay_buffer.sample(self.batch_size, jax.random.PRNGKey(0)))
        mb = jax.tree.map(lambda s: jnp.zeros((self.num_epochs, *s.shape), s.dtype), mb)
        return (mb, jnp.zeros((self.num_epochs,), jnp.float32),
                jnp.zeros((self.num_epochs, *jax.random.PRNGKey(0).shape), jnp.uint32))

    def train_critic(self, ts, transitions=None):
        start_training = ts.global_step > self.fill_buffer
        if transitions is None:
            uniform = jnp.logical_and(self.uniform_warmup, jnp.logical_not(start_training))
            ts, transitions = self.collect_transitions(ts, uniform=uniform)
        else:
            ts = self.absorb(ts, transitions)
        ts = ts.replace(replay_buffer=ts.replay_buffer.extend(transitions))

        def update_iteration(ts, unused):
            rng, rng_sample = jax.random.split(ts.rng)
            ts = ts.replace(rng=rng)
            minibatch = self._normalize(ts, ts.replay_buffer.sample(self.batch_size, rng_sample))
            source_key = jax.random.fold_in(rng_sample, 1)  # leaves rejax's random stream as it is
            lam = self.lam(ts.updates)
            run_source = source_needed(lam)

            def target_loss(p):
                return self.critic_loss(p, ts, minibatch, ts.rng)

            def source_loss(p):
                return self.critic_loss(p, ts, self.source_batch(ts, source_key), jax.random.fold_in(ts.rng, 1))

            src = source_loss if self.with_source else None
            grads, _ = jax.grad(lambda p: smoothed_loss(p, lam, run_source, target_loss, src),
                                has_aux=True)(ts.critic_ts.params)
            ts = ts.replace(critic_ts=ts.critic_ts.apply_gradients(grads=grads), updates=ts.updates + 1)
            return ts, (minibatch, lam, source_key)

        return jax.lax.cond(start_training,
                            lambda ts: jax.lax.scan(update_iteration, ts, None, self.num_epochs),
                            lambda ts: (ts, self._placeholder(ts)), ts)

    def train_policy(self, ts, minibatches, old_global_step):
        def update(ts, item):
            minibatch, lam, source_key = item
            run_source = source_needed(lam)

            beta = self.bc_weight(ts.updates)
            target_alpha = self.target_bc_alpha if self.target_bc else 0.0

            def target_loss(p):
                return self.actor_loss(p, ts, minibatch, target_alpha, beta)

            def source_loss(p):  # the critic's source batch of this round (same key)
                return self.actor_loss(p, ts, self.source_batch(ts, source_key), self.source_bc_alpha, beta)

            src = source_loss if self.with_source else None
            grads, _ = jax.grad(lambda p: smoothed_loss(p, lam, run_source, target_loss, src),
                                has_aux=True)(ts.actor_ts.params)
            return ts.replace(actor_ts=ts.actor_ts.apply_gradients(grads=grads)), None

        start_training = ts.global_step > self.fill_buffer
        ts = jax.lax.cond(start_training, lambda ts: jax.lax.scan(update, ts, minibatches)[0],
                          lambda ts: ts, ts)
        return ts.replace(
            critic_target_params=self.maybe_update_target_params(
                ts.critic_ts.params, ts.critic_target_params, ts.global_step, old_global_step),
            actor_target_params=self.maybe_update_target_params(
                ts.actor_ts.params, ts.actor_target_params, ts.global_step, old_global_step))

    def deterministic_act(self, ts):
        return self.make_act(ts)
