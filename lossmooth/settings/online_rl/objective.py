"""The online RL objectives (protocol ``task_shift``, assumed: the paper does not say what the shift is
in online RL): an agent trained online on a source task continues online on the shifted target task.

With ``L_alg`` the algorithm's own loss (TD3: the critic's TD loss and the actor's ``-Q``; PPO: the
clipped surrogate, value and entropy terms),

    L_S(theta) = L_alg(theta; source-task data)   TD3: a batch of the source phase's replay buffer,
                                                  kept; PPO: rollouts of the source task with the
                                                  current policy in parallel source environments
    L_T(theta) = L_alg(theta; target-task data)   TD3: a batch of a new buffer filled online on the
                                                  target task; PPO: the target task's rollouts

    L_t = lam_t L_T + (1 - lam_t) L_S             t: gradient updates after the switch

each loss on its own batch (:class:`lossmooth.rl.td3.SmoothedTD3`, :class:`lossmooth.rl.ppo.SmoothedPPO`,
shared with offline-to-online RL). The source phase is plain rejax on the source task. Source data is
collected only while some run of a batch has lam < 1; scratch runs (``init: scratch``) start from a
fresh agent with lam = 1.
"""
from __future__ import annotations

import warnings

from rejax import PPO, TD3

from lossmooth.core import engine
from lossmooth.errors import ConfigError
from lossmooth.rl import envs
from lossmooth.rl.agents import Agents, make_eval_fn
from lossmooth.rl.ppo import SmoothedPPO
from lossmooth.rl.td3 import SmoothedTD3
from lossmooth.settings.online_rl.config import Spec


def build_agents(spec: Spec, name: str, eval_runs: int) -> Agents:
    """The algorithm ``name`` on the source task (plain rejax: the source phase) and, smoothed, on the
    target task with the source task kept for ``L_S``; evaluations padded to ``eval_runs`` runs."""
    src_env, params = envs.make_env(spec.task, spec.backend, spec.episode_length)
    tgt_env, _ = envs.make_env(spec.task, spec.backend, spec.episode_length, spec.shift)
    cfg = dict(spec.algos[name])
    plain, smoothed = (TD3, SmoothedTD3) if name == "td3" else (PPO, SmoothedPPO)
    try:
        with warnings.catch_warnings():  # rejax deep-copies its config; brax envs are shallow-copied
            warnings.filterwarnings("ignore", message=".*deepcopy.*", category=RuntimeWarning)
            source = plain.create(env=src_env, env_params=params, **cfg)
            adapt = smoothed.create(env=tgt_env, env_params=params, source_env=src_env, **cfg)
    except TypeError as e:  # an unknown key in the preset overrides
        raise ConfigError(f"budget.{name}: {e}; use rejax {name.upper()} fields")
    spi = cfg.get("num_envs", 1) * (cfg.get("policy_delay", 2) if name == "td3" else cfg.get("num_steps", 64))
    if name == "td3" and cfg.get("batch_size", 256) > cfg.get("buffer_size", 131072):
        raise ConfigError(f"budget.{name}.batch_size: larger than buffer_size")
    agents = Agents(name, source, adapt, src_env, tgt_env, params, int(spi), spec.eval_episodes, eval_runs)
    agents.eval_prog = engine.make_eval(make_eval_fn(agents, agents.eval_tasks))
    return agents
