"""Gymnasium environments stepped on the host: MuJoCo v5 locomotion (HalfCheetah, Hopper, Walker2d,
Ant) and gymnasium-robotics' AntMaze v5 and Adroit v1, the environments of Minari's D4RL datasets.

The agent's updates stay jit-compiled and vmapped over runs; only the environment step runs on the
host, ``n_runs x envs_per_run`` environments in one ``gymnasium.vector.SyncVectorEnv`` with
same-step autoreset, so every transition carries its true next observation (the final observation
where an episode ends) and ``done`` is the termination flag only (a time limit is not a terminal
state). Goal-conditioned observations (AntMaze's dict) are flattened as observation ++
desired_goal, as :func:`lossmooth.offline.datasets.load_minari` flattens Minari's AntMaze datasets
(D4RL's own hdf5 files hold the ant's state with its x-y position instead, and no goal). Minari's
D4RL AntMaze datasets come from the v4 maze, whose ant observation has no contact forces: on v5 pass
``+task.kwargs.include_cfrc_ext_in_observation=false`` (a Minari dataset's recorded kwargs are
used as they are).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lossmooth.errors import ConfigError

# our short names for gymnasium's MuJoCo v5 tasks (any registered id works too)
MUJOCO_IDS = {"halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5", "walker2d": "Walker2d-v5",
              "ant": "Ant-v5"}
ROBOTICS_PREFIXES = ("AntMaze", "Adroit", "PointMaze", "FrankaKitchen")  # gymnasium-robotics ids


def resolve_id(name: str) -> str:
    return MUJOCO_IDS.get(name, name)


def _register(env_id: str) -> None:
    if env_id.startswith(ROBOTICS_PREFIXES):
        import contextlib
        import io

        import gymnasium as gym

        try:
            # its import prints a release notice to stderr; bad input must stay one line
            with contextlib.redirect_stderr(io.StringIO()):
                import gymnasium_robotics
        except ImportError:
            raise ConfigError(f"task.id: '{env_id}' needs gymnasium-robotics; install it with "
                              "`pip install -e .[rl]`") from None
        gym.register_envs(gymnasium_robotics)


def make_one(env_id: str, kwargs: dict | None = None, max_episode_steps: int | None = None):
    """One gymnasium environment (one clear line if the id is unknown or its kwargs are wrong)."""
    import gymnasium as gym

    _register(env_id)
    kw = dict(kwargs or {})
    if max_episode_steps:
        kw["max_episode_steps"] = int(max_episode_steps)
    try:
        return gym.make(env_id, **kw)
    except gym.error.Error as e:
        raise ConfigError(f"task.id: cannot make gymnasium environment '{env_id}' ({e}); pick a registered "
                          f"id such as {', '.join(MUJOCO_IDS.values())}, AntMaze_UMaze-v5 or AdroitHandPen-v1") from None
    except TypeError as e:
        raise ConfigError(f"task.kwargs: gymnasium environment '{env_id}' rejects its kwargs ({e})") from None


def flat_obs(obs) -> np.ndarray:
    """[n, obs_dim] float32 from a vector env's observation (array or goal dict)."""
    if isinstance(obs, dict):
        obs = np.concatenate([np.asarray(obs["observation"]), np.asarray(obs["desired_goal"])], axis=-1)
    return np.asarray(obs, np.float32)


def _flat_space_dim(space) -> int:
    if hasattr(space, "spaces") and "observation" in space.spaces:
        return int(np.prod(space["observation"].shape) + np.prod(space["desired_goal"].shape))
    return int(np.prod(space.shape))


@dataclass(frozen=True)
class EnvSpec:
    """What a run needs to build its environments (picklable; no environment is held)."""
    env_id: str
    kwargs: dict
    max_episode_steps: int | None = None

    def probe(self) -> dict:
        """Observation/action sizes and the action box, from one environment made and closed."""
        env = make_one(self.env_id, self.kwargs, self.max_episode_steps)
        try:
            a = env.action_space
            return {"obs_dim": _flat_space_dim(env.observation_space), "act_dim": int(np.prod(a.shape)),
                    "low": np.asarray(a.low, np.float32), "high": np.asarray(a.high, np.float32),
                    "max_episode_steps": int(env.spec.max_episode_steps or 1000)}
        finally:
            env.close()


class HostEnvs:
    """``n`` environments of ``spec`` stepped together on the host (same-step autoreset)."""

    def __init__(self, spec: EnvSpec, n: int, seed):
        """``seed``: one int (environment i gets seed + i) or a list of ``n`` seeds."""
        import gymnasium as gym

        self.n = n
        self.has_success = False  # whether the task reports a success flag (AntMaze, Adroit)
        self.vec = gym.vector.SyncVectorEnv(
            [lambda: make_one(spec.env_id, spec.kwargs, spec.max_episode_steps) for _ in range(n)],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        obs, _ = self.vec.reset(seed=[int(x) for x in seed] if np.ndim(seed) else int(seed))
        self.obs = flat_obs(obs)

    def step(self, actions: np.ndarray) -> dict:
        """Step every environment; returns the transitions (``obs, action, reward, next_obs, done``:
        done = terminated) and, per environment, ``ended`` (the episode ended here) and ``success``
        (the task's success flag at this step, False where the task has none). ``self.obs`` moves on
        to the observations the policy sees next (a reset one where an episode ended)."""
        actions = np.asarray(actions, np.float32).reshape(self.n, -1)
        obs, reward, term, trunc, info = self.vec.step(actions)
        obs = flat_obs(obs)
        ended = np.logical_or(term, trunc)
        next_obs = obs.copy()
        success = np.asarray(info.get("success", np.zeros(self.n, bool)), bool).copy()
        self.has_success |= "success" in info
        if ended.any():
            mask = np.asarray(info["_final_obs"], bool)
            for i in np.flatnonzero(mask):
                next_obs[i] = flat_obs({k: v[None] for k, v in info["final_obs"][i].items()}
                                       if isinstance(info["final_obs"][i], dict) else info["final_obs"][i][None])[0]
            final_info = info.get("final_info", {})
            if "success" in final_info:
                self.has_success = True
                success[mask] = np.asarray(final_info["success"], bool)[mask]
        out = {"obs": self.obs, "action": actions, "reward": np.asarray(reward, np.float32),
               "next_obs": next_obs, "done": np.asarray(term, bool), "ended": ended, "success": success}
        self.obs = obs
        return out

    def close(self) -> None:
        self.vec.close()


def rollout_episodes(spec: EnvSpec, policy, n: int, seed, max_steps: int) -> dict:
    """One episode in each of ``n`` fresh environments (``seed`` as for :class:`HostEnvs`) with
    ``policy(obs [n, d]) -> actions``: per environment the undiscounted return and whether the task's
    success flag was ever raised (``success`` is None where the task has no such flag)."""
    envs = HostEnvs(spec, n, seed)
    try:
        ret = np.zeros(n, np.float64)
        success = np.zeros(n, bool)
        live = np.ones(n, bool)
        for _ in range(max_steps):
            tr = envs.step(policy(envs.obs))
            ret += np.where(live, tr["reward"], 0.0)
            success |= live & tr["success"]
            live &= ~tr["ended"]
            if not live.any():
                break
        return {"return": ret, "success": success if envs.has_success else None}
    finally:
        envs.close()
