"""Offline RL datasets, one interface for three sources: D4RL hdf5 files, Minari datasets, and our own
(collected with ``lossmooth data collect``, stored in Minari's format).

Every source becomes :class:`Transitions`: aligned arrays of N transitions

    observations [N, obs], actions [N, act], rewards [N], next_observations [N, obs],
    terminals [N] (the episode ended in a terminal state: no bootstrap), timeouts [N] (cut by a time
    limit: bootstrap from next_observations)

A D4RL file without ``next_observations`` is converted as ``d4rl.qlearning_dataset`` does: the next
observation is the following row, and rows ending an episode by timeout (whose following row starts a
new episode) are dropped. A Minari episode of T steps holds T + 1 observations; its transitions are
(o_t, a_t, r_t, o_{t+1}) with terminals = terminations and timeouts = truncations.

Every problem (a missing or corrupt file, a missing field, ragged lengths, non-finite values, no
timeouts, shapes that do not match the environment) is a :class:`ConfigError` with one line naming
the file or dataset and the fix.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field

import numpy as np

from lossmooth.errors import ConfigError

D4RL_FIELDS = ("observations", "actions", "rewards", "terminals", "timeouts")
MINARI_ENV = "MINARI_DATASETS_PATH"


@dataclass(frozen=True)
class Transitions:
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    name: str = ""
    # (random, expert) episode returns for normalized scores, where the dataset carries them
    ref_scores: tuple | None = None
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every complete episode (ended by a terminal or a timeout)."""
        ends = np.flatnonzero(self.terminals | self.timeouts)
        sums = np.cumsum(self.rewards, dtype=np.float64)
        at_end = sums[ends]
        return np.diff(np.concatenate([[0.0], at_end]))

    def content_hash(self) -> str:
        """SHA-256 of the transitions themselves (every array's dtype, shape and bytes, in a fixed
        order; not the name or the file): two datasets with equal hashes hold the same data."""
        import hashlib

        h = hashlib.sha256()
        for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
            a = np.ascontiguousarray(getattr(self, name))
            h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def state_stats(self, eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
        """TD3+BC's state normalization: per-dimension mean and std (+ eps) of the observations."""
        return self.observations.mean(0), self.observations.std(0) + eps


def _check(t: Transitions, where: str) -> Transitions:
    n = len(t)
    for name in ("observations", "actions", "next_observations"):
        a = getattr(t, name)
        if a.ndim != 2 or a.shape[0] != n:
            raise ConfigError(f"{where}: '{name}' has shape {a.shape}, expected [{n}, dim] like 'rewards' "
                              f"[{n}]; the file is corrupt or not a transition dataset")
    for name in ("terminals", "timeouts"):
        if getattr(t, name).shape != (n,):
            raise ConfigError(f"{where}: '{name}' has shape {getattr(t, name).shape}, expected [{n}]")
    if n == 0:
        raise ConfigError(f"{where}: the dataset holds no transitions")
    for name in ("observations", "actions", "rewards", "next_observations"):
        if not np.isfinite(getattr(t, name)).all():
            raise ConfigError(f"{where}: '{name}' holds NaN or inf values; the file is corrupt")
    return t


def transitions(observations, actions, rewards, next_observations, terminals, timeouts, **kw) -> Transitions:
    """Build :class:`Transitions` with the canonical dtypes (float32 arrays, bool flags)."""
    f = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return Transitions(f(observations), f(actions), f(rewards).reshape(-1), f(next_observations),
                       np.asarray(terminals).astype(bool).reshape(-1),
                       np.asarray(timeouts).astype(bool).reshape(-1), **kw)


# ----------------------------------------------------------------------------- D4RL hdf5


def load_d4rl(path: str, name: str | None = None) -> Transitions:
    """A D4RL hdf5 file as distributed (``observations, actions, rewards, terminals, timeouts`` and,
    where present, ``next_observations``), read with h5py."""
    import h5py

    if not os.path.isfile(path):
        raise ConfigError(f"dataset.path: D4RL file '{path}' not found; download the dataset's hdf5 file "
                          "(e.g. hopper_medium-v2.hdf5) and set dataset.path (or dataset.dir + dataset.name)")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in D4RL_FIELDS if k not in f]
            if "timeouts" in missing:
                raise ConfigError(f"{path}: no 'timeouts' field; without it time-limit cuts cannot be told from "
                                  "terminal states (D4RL v0 files lack it: use the -v2 files)")
            if missing:
                raise ConfigError(f"{path}: missing D4RL field(s) {', '.join(missing)}; not a D4RL dataset file")
            arrays = {k: np.asarray(f[k]) for k in D4RL_FIELDS}
            nxt = np.asarray(f["next_observations"]) if "next_observations" in f else None
    except ConfigError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the hdf5 file ({type(e).__name__}: {e}); it is corrupt or "
                          "incomplete, download it again")
    n = arrays["rewards"].shape[0]
    for k, v in arrays.items():
        if v.shape[:1] != (n,):
            raise ConfigError(f"{path}: '{k}' has {v.shape[0] if v.ndim else 0} rows but 'rewards' has {n}; "
                              "the file is corrupt, download it again")
    name = name or os.path.splitext(os.path.basename(path))[0]
    if nxt is None:  # d4rl.qlearning_dataset: next = following row; drop timeout rows and the last one
        keep = ~arrays["timeouts"].astype(bool)
        keep[-1] = False
        idx = np.flatnonzero(keep)
        nxt_all = np.concatenate([arrays["observations"][1:], arrays["observations"][-1:]])
        t = transitions(arrays["observations"][idx], arrays["actions"][idx], arrays["rewards"][idx],
                        nxt_all[idx], arrays["terminals"][idx], arrays["timeouts"][idx], name=name,
                        info={"source": "d4rl", "path": path, "next_observations": "following row"})
    else:
        t = transitions(arrays["observations"], arrays["actions"], arrays["rewards"], nxt,
                        arrays["terminals"], arrays["timeouts"], name=name, info={"source": "d4rl", "path": path})
    return _check(t, path)


def save_d4rl(t: Transitions, path: str, with_next: bool = True) -> None:
    """Write ``t`` as a D4RL-format hdf5 file (atomically: a temporary file renamed into place)."""
    import h5py

    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        for k in D4RL_FIELDS + (("next_observations",) if with_next else ()):
            f.create_dataset(k, data=getattr(t, k))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- Minari


@contextlib.contextmanager
def minari_root(root: str | None):
    """Minari reads its root from the environment; set it only for the duration of one call."""
    if root is None:
        yield
        return
    old = os.environ.get(MINARI_ENV)
    os.environ[MINARI_ENV] = os.path.abspath(os.path.expanduser(root))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(MINARI_ENV, None)
        else:
            os.environ[MINARI_ENV] = old


def _flat_obs(obs) -> np.ndarray:
    """Minari observations as one array: goal-conditioned dicts (AntMaze) become observation ++ desired_goal."""
    if isinstance(obs, dict):
        keys = [k for k in ("observation", "desired_goal") if k in obs] or sorted(obs)
        return np.concatenate([np.asarray(obs[k], np.float32).reshape(len(obs[keys[0]]), -1) for k in keys], 1)
    return np.asarray(obs, np.float32)


def load_minari(dataset_id: str, root: str | None = None) -> Transitions:
    """A Minari dataset (``D4RL/...``, ``mujoco/...`` or our own ``lossmooth/...`` ids) from a local root
    (``root`` or ``$MINARI_DATASETS_PATH``); never downloads."""
    import minari

    where = root or os.environ.get(MINARI_ENV) or "~/.minari/datasets"
    if not os.path.isdir(os.path.expanduser(where)):  # listing would create it: nothing is made by a lookup
        what = "is not a folder" if os.path.exists(os.path.expanduser(where)) else "does not exist"
        raise ConfigError(f"dataset.root: Minari folder '{where}' {what}; copy the dataset '{dataset_id}' into "
                          "a folder and set dataset.root to it, or build one with `lossmooth data collect`")
    with minari_root(root):
        try:
            local = minari.list_local_datasets()
        except Exception as e:  # an unreadable dataset folder
            raise ConfigError(f"dataset.root: cannot list Minari datasets in '{where}' ({e})")
        if dataset_id not in local:
            raise ConfigError(f"dataset.id: Minari dataset '{dataset_id}' not found in '{where}'; download it "
                              f"where a hub is reachable (minari download {dataset_id}) and copy it there, set "
                              f"dataset.root, or build one with `lossmooth data collect`")
        try:
            ds = minari.load_dataset(dataset_id)
            eps = list(ds.iterate_episodes())
        except Exception as e:
            raise ConfigError(f"dataset.id: Minari dataset '{dataset_id}' in '{where}' cannot be read "
                              f"({type(e).__name__}: {e}); it is corrupt, fetch or collect it again")
        meta = dict(ds.storage.metadata)
    parts = {k: [] for k in ("o", "a", "r", "n", "d", "t")}
    for ep in eps:
        obs = _flat_obs(ep.observations)
        parts["o"].append(obs[:-1])
        parts["n"].append(obs[1:])
        parts["a"].append(np.asarray(ep.actions, np.float32).reshape(len(ep.rewards), -1))
        parts["r"].append(np.asarray(ep.rewards, np.float32))
        parts["d"].append(np.asarray(ep.terminations, bool))
        parts["t"].append(np.asarray(ep.truncations, bool))
    if not eps:
        raise ConfigError(f"dataset.id: Minari dataset '{dataset_id}' holds no episodes")
    ref = (meta.get("ref_min_score"), meta.get("ref_max_score"))
    env_id, env_kwargs, env_steps = _env_of(meta.get("env_spec"))
    t = transitions(*(np.concatenate(parts[k]) for k in "oarndt"), name=dataset_id,
                    ref_scores=None if None in ref else (float(ref[0]), float(ref[1])),
                    info={"source": "minari", "id": dataset_id, "root": where,
                          "episodes": len(eps), "env_spec": str(meta.get("env_spec", ""))[:200],
                          "env_id": env_id, "env_kwargs": env_kwargs, "max_episode_steps": env_steps})
    return _check(t, f"minari:{dataset_id}")


def _env_of(env_spec) -> tuple[str | None, dict, int | None]:
    """(id, kwargs, max_episode_steps) of the gymnasium environment a Minari dataset records."""
    if not env_spec:
        return None, {}, None
    try:
        from gymnasium.envs.registration import EnvSpec

        es = EnvSpec.from_json(env_spec) if isinstance(env_spec, str) else env_spec
        return es.id, dict(es.kwargs or {}), es.max_episode_steps
    except Exception:  # an environment spec this gymnasium cannot parse: the task must name the id
        return None, {}, None


def save_minari(episodes: list[dict], dataset_id: str, root: str, ref_scores: tuple | None = None,
                description: str = "", algorithm: str = "", metadata: dict | None = None,
                env_id: str | None = None) -> None:
    """Write ``episodes`` (dicts of ``observations`` [T+1, obs], ``actions`` [T, act], ``rewards``,
    ``terminations``, ``truncations`` [T]) as a Minari dataset under ``root``, with the reference
    returns ``(random, expert)`` and ``metadata`` (JSON values) in its metadata. The dataset is built
    in a staging folder and moved into place complete: an existing one of that id is replaced only
    then, and an interrupted write leaves nothing under its id. ``env_id``: the gymnasium environment
    the episodes come from, recorded in the dataset (as Minari's own datasets record theirs)."""
    from minari.data_collector import EpisodeBuffer

    obs_dim = episodes[0]["observations"].shape[1]
    act_dim = episodes[0]["actions"].shape[1]
    buffers = [EpisodeBuffer(id=i, observations=np.asarray(e["observations"], np.float32),
                             actions=np.asarray(e["actions"], np.float32),
                             rewards=np.asarray(e["rewards"], np.float64),
                             terminations=np.asarray(e["terminations"], bool),
                             truncations=np.asarray(e["truncations"], bool), infos={})
               for i, e in enumerate(episodes)]
    os.makedirs(root, exist_ok=True)
    stage = tempfile.mkdtemp(dir=root, prefix=".staging-")  # one per writer: concurrent writes never mix
    try:
        _create_minari(buffers, dataset_id, stage, ref_scores, description, algorithm, metadata, obs_dim, act_dim,
                       env_id)
        src = os.path.join(stage, *_id_parts(dataset_id))
        dst = os.path.join(root, *_id_parts(dataset_id))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.exists(dst):
            shutil.rmtree(dst)
        os.replace(src, dst)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _create_minari(buffers, dataset_id, stage, ref_scores, description, algorithm, metadata, obs_dim, act_dim,
                   env_id=None):
    import gymnasium as gym
    import minari

    import warnings

    with minari_root(stage), warnings.catch_warnings():
        # Minari's advice on optional metadata (author, code link, eval env) is not for our users
        warnings.filterwarnings("ignore", category=UserWarning, module="minari")
        if dataset_id in minari.list_local_datasets():
            minari.delete_dataset(dataset_id)
        if env_id is not None:
            from lossmooth.rl.gym_envs import make_one

            env = make_one(env_id)  # registers gymnasium-robotics ids where needed
            spaces = {"env": env.spec, "observation_space": env.observation_space, "action_space": env.action_space}
            env.close()
        else:
            spaces = {"observation_space": gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
                      "action_space": gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)}
        minari.create_dataset_from_buffers(
            dataset_id, buffers, algorithm_name=algorithm or None, description=description or None, **spaces)
        extra = dict(metadata or {})
        if ref_scores is not None:  # Minari computes these itself only for gymnasium-registered envs
            extra.update(ref_min_score=float(ref_scores[0]), ref_max_score=float(ref_scores[1]))
        if extra:
            minari.load_dataset(dataset_id).storage.update_metadata(extra)


def _id_parts(dataset_id: str) -> list[str]:
    """``ns/name-v0`` -> the folders Minari stores it in."""
    return dataset_id.split("/")


# ----------------------------------------------------------------------------- checks


def check_matches(t: Transitions, obs_dim: int, act_dim: int, env_name: str) -> None:
    """The dataset's observation and action sizes equal the environment's."""
    if (t.obs_dim, t.act_dim) != (obs_dim, act_dim):
        raise ConfigError(f"dataset: '{t.name}' has observations of size {t.obs_dim} and actions of size "
                          f"{t.act_dim}, but {env_name} has {obs_dim} and {act_dim}; pick the dataset of "
                          f"that environment (or the environment of that dataset)")


def as_replay_buffer(t: Transitions, obs_mean=None, obs_std=None):
    """``t`` as a full rejax replay buffer (the source data of :class:`lossmooth.rl.td3.SmoothedTD3`),
    observations normalized as (o - mean) / std where given; ``done`` = terminals only (a timeout
    still bootstraps from its next observation)."""
    import jax.numpy as jnp
    from rejax.buffers import Minibatch, ReplayBuffer

    norm = (lambda o: o) if obs_mean is None else (lambda o: (o - obs_mean) / obs_std)  # noqa: E731
    data = Minibatch(obs=jnp.asarray(norm(t.observations), jnp.float32),
                     action=jnp.asarray(t.actions, jnp.float32),
                     reward=jnp.asarray(t.rewards, jnp.float32), done=jnp.asarray(t.terminals),
                     next_obs=jnp.asarray(norm(t.next_observations), jnp.float32))
    return ReplayBuffer(size=len(t), data=data, index=jnp.zeros((), jnp.int32), full=jnp.ones((), bool))
