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
    target task with the source task kept for ``L_S``; evaluations padded to ``eval_runs`` runs. A
    sequence of switches: tasks 0..k (task i: the unshifted task under ``spec.sequence[i - 1]``), the
    smoothed algorithm of each switch i on task i with task i - 1 as its source, every task evaluated."""
    src_env, params = envs.make_env(spec.task, spec.backend, spec.episode_length)
    shifts = spec.sequence or (spec.shift,)
    task_envs = [src_env] + [envs.make_env(spec.task, spec.backend, spec.episode_length, s)[0] for s in shifts]
    cfg = dict(spec.algos[name])
    plain, smoothed = (TD3, SmoothedTD3) if name == "td3" else (PPO, SmoothedPPO)
    try:
        with warnings.catch_warnings():  # rejax deep-copies its config; brax envs are shallow-copied
            warnings.filterwarnings("ignore", message=".*deepcopy.*", category=RuntimeWarning)
            source = plain.create(env=src_env, env_params=params, **cfg)
            switch_algos = tuple(smoothed.create(env=task_envs[i], env_params=params, source_env=task_envs[i - 1], **cfg)
                                 for i in range(1, len(task_envs)))
    except TypeError as e:  # an unknown key in the preset overrides
        raise ConfigError(f"budget.{name}: {e}; use rejax {name.upper()} fields")
    adapt, tgt_env = switch_algos[0], task_envs[1]
    spi = cfg.get("num_envs", 1) * (cfg.get("policy_delay", 2) if name == "td3" else cfg.get("num_steps", 64))
    if name == "td3" and cfg.get("batch_size", 256) > cfg.get("buffer_size", 131072):
        raise ConfigError(f"budget.{name}.batch_size: larger than buffer_size")
    agents = Agents(name, source, adapt, src_env, tgt_env, params, int(spi), spec.eval_episodes, eval_runs)
    if spec.sequence:
        agents.task_envs, agents.switch_algos = tuple(task_envs), switch_algos
        agents.eval_tasks = tuple(f"task{j}" for j in range(len(task_envs)))
    agents.eval_prog = engine.make_eval(make_eval_fn(agents, agents.eval_tasks))
    return agents
