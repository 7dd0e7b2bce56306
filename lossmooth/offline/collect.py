"""Rollouts and dataset ids for D4RL-style datasets of our own (``lossmooth data collect``,
:mod:`lossmooth.app.collect`), in Minari's format.

Rollouts run without auto-reset: every episode is a ``lax.scan`` of ``episode_length`` steps over a
batch of environments, cut at its first ``done``; a cut by the time limit is a timeout (D4RL's
``timeouts``), any other end a terminal. Dataset ids: ``lossmooth/<task>-<kind>-v0`` (``medium_replay``
is written ``medium-replay``, as D4RL names it).
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from lossmooth.core import threefry  # noqa: F401  (random bits compiled over flat arrays on CPU)

KINDS = ("random", "medium", "medium_replay", "expert", "medium_expert")
DEFAULT_ROOT = "~/.cache/lossmooth/datasets"


def dataset_id(task: str, kind: str) -> str:
    return f"lossmooth/{task}-{kind.replace('_', '-')}-v0"


def resolve_root(root: str | None) -> str:
    return os.path.abspath(os.path.expanduser(root or DEFAULT_ROOT))


# ----------------------------------------------------------------------------- rollouts


def make_rollout(env, policy_fn, episode_length: int, n_envs: int):
    """``rollout(params, key, noise) -> trajectories`` [steps, envs], jit-compiled once.

    ``policy_fn(params, obs, key) -> action`` in [-1, 1]; ``noise`` is the std of the Gaussian
    noise added to the action (clipped back to [-1, 1]).
    """

    def rollout(params, key, noise):
        k_reset, key = jax.random.split(key)
        state = jax.vmap(env.reset)(jax.random.split(k_reset, n_envs))

        def step(carry, _):
            state, key, alive = carry
            key, k_act, k_noise = jax.random.split(key, 3)
            a = policy_fn(params, state.obs, k_act)
            a = jnp.clip(a + noise * jax.random.normal(k_noise, a.shape), -1.0, 1.0)
            nxt = jax.vmap(env.step)(state, a)
            out = {"obs": state.obs, "action": a, "reward": nxt.reward, "next_obs": nxt.obs,
                   "done": nxt.done > 0, "truncation": nxt.info["truncation"] > 0, "valid": alive}
            return (nxt, key, alive & (nxt.done == 0)), out

        _, traj = jax.lax.scan(step, (state, key, jnp.ones(n_envs, bool)), None, episode_length)
        return traj

    return jax.jit(rollout)


def episodes_of(traj: dict) -> list[dict]:
    """Minari-layout episodes from rollout arrays [steps, envs] (each env's prefix up to its first done)."""
    traj = jax.device_get(traj)
    out = []
    for e in range(traj["valid"].shape[1]):
        n = int(traj["valid"][:, e].sum())
        if n == 0:
            continue
        done = bool(traj["done"][n - 1, e])
        trunc = bool(traj["truncation"][n - 1, e]) or not done  # an unfinished episode is cut: a timeout
        last = np.zeros(n, bool)
        last[-1] = True
        out.append({"observations": np.concatenate([traj["obs"][:n, e], traj["next_obs"][n - 1:n, e]]),
                    "actions": traj["action"][:n, e], "rewards": traj["reward"][:n, e],
                    "terminations": last & (done and not trunc), "truncations": last & trunc})
    return out


def collect_steps(rollout, params, key, noise, steps: int) -> list[dict]:
    """Whole episodes until at least ``steps`` transitions (or one batch if fewer)."""
    eps, total = [], 0
    while total < steps:
        key, sub = jax.random.split(key)
        batch = episodes_of(rollout(params, sub, noise))
        eps += batch
        total += sum(len(e["rewards"]) for e in batch)
    return eps


def mean_return(eps: list[dict]) -> float:
    return float(np.mean([np.sum(e["rewards"]) for e in eps]))
