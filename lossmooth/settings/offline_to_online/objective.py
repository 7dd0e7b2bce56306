"""The offline-to-online objectives: TD3+BC -> TD3 (the paper's protocol).

With ``b_off`` a batch of the offline dataset D and ``b_on`` an independent batch of the online replay
buffer (filled by the agent on the task), for the critic and, every ``policy_delay`` critic updates,
the actor:

    L_S(theta) = L_TD3+BC(theta; b_off)   TD3's critic loss; actor: -lambda Q(s, pi(s)) + (pi(s) - a)^2
                                          with lambda = alpha / mean |Q| (Fujimoto & Gu 2021)
    L_T(theta) = L_TD3(theta; b_on)       TD3's critic and actor losses

    L_t = lam_t L_T + (1 - lam_t) L_S     t: gradient updates after the switch

The offline phase minimizes ``L_S`` alone (TD3+BC). Controls: the hard switch (lam = 1: online losses
only, from the offline agent; D is never read), online TD3 from scratch (a fresh agent, lam = 1),
50/50 batch mixing (lam = 0.5 with TD3's losses on both batches: ``source_bc: false``) and BC-weight
decay (``bc_decay_updates``: TD3+BC's actor loss on both halves, its BC weight decaying to 0). States
are normalized with D's mean and standard deviation, frozen for both phases. D is held once and shared
by every run (the engine's unbatched ``data``).
"""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from lossmooth.core import engine
from lossmooth.errors import ConfigError
from lossmooth.offline import datasets as D
from lossmooth.rl import envs
from lossmooth.rl.agents import Agents, make_eval_fn, seed_keys, with_eval, with_shared_source
from lossmooth.rl.gym_envs import EnvSpec, resolve_id
from lossmooth.rl.host_loop import HostRunner, SpacesEnv
from lossmooth.rl.td3 import SmoothedTD3
from lossmooth.settings.offline_to_online.config import Spec


def method_fields(spec: Spec) -> dict:
    """Per method, the per-run numbers of its source objective (``algo_fields``, vmappable fields of the
    agent: TD3+BC's weight on the offline batch, 0 for batch mixing, and the BC-decay control's
    weights) and the hyperparameters that name them (``hparams``): the spec's ``method_fields``."""
    out = {}
    for name in spec.methods:
        bc = spec.source_bc.get(name, True)
        decay = spec.bc_decay.get(name, 0)
        fields = {"source_bc_alpha": jnp.asarray(spec.bc_alpha if bc else 0.0, jnp.float32),
                  # the BC-decay control: TD3+BC's actor loss on the online half too
                  "target_bc_alpha": jnp.asarray(spec.bc_alpha if decay else 0.0, jnp.float32),
                  "bc_decay_updates": jnp.asarray(decay, jnp.float32)}
        out[name] = {"algo_fields": fields, "hparams": {**({} if bc else {"source_loss": "td3"}),
                                                        **({"bc_decay_updates": decay} if decay else {})}}
    return out


def env_spec(spec: Spec, data: D.Transitions) -> EnvSpec:
    """The gymnasium environment of a ``task.kind=gymnasium`` run: ``task.id`` (our short names map to
    MuJoCo v5), else the one the Minari dataset records, with its kwargs."""
    if spec.task:
        return EnvSpec(resolve_id(spec.task), spec.env_kwargs, spec.max_episode_steps)
    env_id = data.info.get("env_id")
    if not env_id:
        raise ConfigError(f"task.id: dataset '{data.name}' records no environment; set task.id (e.g. Hopper-v5)")
    return EnvSpec(env_id, {**data.info.get("env_kwargs", {}), **spec.env_kwargs},
                   spec.max_episode_steps or data.info.get("max_episode_steps"))


def env_name(spec: Spec, data: D.Transitions) -> str:
    if spec.env_kind == "brax":
        return f"brax {spec.task} ({spec.backend})"
    e = env_spec(spec, data)
    return f"gymnasium {e.env_id}" + (f" {e.kwargs}" if e.kwargs else "")


def build_agents(spec: Spec, data: D.Transitions, eval_runs: int) -> Agents:
    """The TD3 agent (one object for both phases: TD3+BC offline, smoothed TD3 online) on the task:
    brax with the whole loop compiled, or gymnasium stepped on the host (:mod:`lossmooth.rl.host_loop`)."""
    host = None
    if spec.env_kind == "brax":
        env, params = envs.make_env(spec.task, spec.backend, spec.episode_length)
    else:
        es = env_spec(spec, data)
        probe = es.probe()
        env = SpacesEnv(probe["obs_dim"], probe["low"], probe["high"], probe["max_episode_steps"])
        params = env.default_params
        host = HostRunner(es, spec.eval_episodes, probe["max_episode_steps"])
    obs_dim = int(np.prod(env.observation_space(params).shape))
    act_dim = int(np.prod(env.action_space(params).shape))
    D.check_matches(data, obs_dim, act_dim, env_name(spec, data))
    target_bc = any(float(f["algo_fields"]["target_bc_alpha"]) > 0 for f in method_fields(spec).values())
    with warnings.catch_warnings():  # rejax deep-copies its config; brax envs are shallow-copied
        warnings.filterwarnings("ignore", message=".*deepcopy.*", category=RuntimeWarning)
        algo = SmoothedTD3.create(env=env, env_params=params, source_env=env, freeze_obs_rms=True,
                                  target_bc=target_bc, **spec.algos["td3"]).replace(
            source_bc_alpha=jnp.asarray(spec.bc_alpha))
    spi = algo.num_envs * algo.policy_delay
    agents = Agents("td3", algo, algo, env, env, params, spi, spec.eval_episodes, eval_runs,
                    eval_tasks=("target",), source_data="source_buffer", host=host)
    if host is None:
        agents.eval_prog = engine.make_eval(make_eval_fn(agents, agents.eval_tasks))
    return agents


def dataset_buffer(data: D.Transitions):
    """D as a replay buffer (raw observations; batches are normalized with the frozen statistics)."""
    return D.as_replay_buffer(data)


def placeholder_buffer(data: D.Transitions):
    """A one-transition stand-in kept in each run's state where D itself is shared (see
    :func:`lossmooth.rl.agents.with_shared_source`)."""
    one = D.transitions(data.observations[:1], data.actions[:1], data.rewards[:1],
                        data.next_observations[:1], data.terminals[:1], data.timeouts[:1])
    return D.as_replay_buffer(one)


def offline_init(agents: Agents, spec: Spec, data: D.Transitions):
    """Per seed: a fresh agent with the observation normalizer set to D's statistics (frozen)."""
    mean, std = data.state_stats()
    mean, var = jnp.asarray(mean), jnp.asarray(std.astype(np.float64) ** 2 - 1e-8, jnp.float32)
    ph = placeholder_buffer(data)
    algo = agents.adapt

    def one(key):
        ts = algo.init_state(key)
        return ts.replace(source_buffer=ph, obs_rms_state=ts.obs_rms_state.replace(mean=mean, var=var))

    return jax.jit(jax.vmap(one))(seed_keys(spec.seed, spec.num_seeds, "td3"))


def offline_chunk(agents: Agents, iterations_per_eval: int, mesh=None):
    """``iterations_per_eval`` TD3+BC rounds on D (``L_S`` alone), then the shared evaluation."""
    def step(ts, algo, data):
        return with_shared_source(ts, data, algo.offline_iteration), {}

    return with_eval(engine.make_chunk(step, lambda ts, algo, data: {}, iterations_per_eval, 1), agents, mesh)
