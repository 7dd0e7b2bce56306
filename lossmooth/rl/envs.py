"""Tasks (brax locomotion through rejax's gymnax adapter, and gymnax's classic-control Pendulum) and
the task shifts of the online RL setting. A shift turns the *source task* into the *target task*; each has a severity s in [0, 1]
(0 = the source task itself) and parameters set in ``conf/online_rl/shift/<name>.yaml``.

Dynamics (the simulated system ``sys`` of the target task; gymnax: its ``EnvParams``):
- ``mass``:     every body's mass and inertia times f = 1 + s (max_scale - 1); on the
                  ``positional``/``spring`` backends (which treat bodies as unit masses,
                  ``spring_mass_scale = 1``) the equivalent change: actuator gears times 1/f;
                  pendulum: the pole's mass ``m`` times f (the torque's angular acceleration 3u/(m l^2)
                  falls by 1/f)
- ``friction``: every geom's friction coefficients times f = 1 + s (max_scale - 1) (brax only)
- ``gravity``:  gravity times f = 1 + s (max_scale - 1) (pendulum: ``g``)

Reward (r the task's reward, r_fwd its forward-progress term, v the forward velocity):
- ``backwards``:       r' = r - 2 s r_fwd                      (s = 1: running backwards pays)
- ``target_velocity``: r' = r + s (-|v - v*| - r_fwd)          (s = 1: track the velocity v*)

Observation (o the task's observation, d its size):
- ``obs_noise``:       o' = o + s sigma_max eps, eps ~ N(0, I) fresh at every step
- ``obs_permutation``: a fixed cyclic permutation of round(s d) observation entries

The shift wraps the brax environment below brax's episode and auto-reset wrappers (gymnax: below
gymnax's own auto-reset in ``Environment.step``), so episodes, truncation and resets behave as in the
source task.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from lossmooth.errors import ConfigError

TASKS = ("hopper", "halfcheetah", "walker2d", "humanoidstandup", "swimmer")  # brax
# gymnax tasks (classic control, cheap enough for rejax's own preset budgets on a CPU): name -> gymnax
# id, and the ``EnvParams`` field each dynamics shift scales
GYMNAX_TASKS = {"pendulum": "Pendulum-v1"}
GYMNAX_DYNAMICS = {"pendulum": {"mass": "m", "gravity": "g"}}
BACKENDS = ("positional", "spring", "generalized", "mjx")
DYNAMICS = ("mass", "friction", "gravity")
REWARD = ("backwards", "target_velocity")
OBSERVATION = ("obs_noise", "obs_permutation")
RL_SHIFTS = ("none",) + DYNAMICS + REWARD + OBSERVATION
# the metric holding each task's forward-progress reward term (humanoidstandup has none)
FORWARD_TERM = {"hopper": "reward_forward", "walker2d": "reward_forward",
                "halfcheetah": "reward_run", "swimmer": "reward_fwd"}
_PARAMS = {"mass": {"max_scale": (0.0, None)}, "friction": {"max_scale": (0.0, None)},
           "gravity": {"max_scale": (0.0, None)}, "backwards": {},
           "target_velocity": {"velocity": (None, None)}, "obs_noise": {"max_std": (0.0, None)},
           "obs_permutation": {"seed": (0, None)}, "none": {}}


@dataclass(frozen=True)
class TaskShift:
    name: str = "none"
    severity: float = 0.0
    params: dict = field(default_factory=dict)

    @property
    def scale(self) -> float:
        """The factor f = 1 + s (max_scale - 1) of a dynamics shift."""
        return 1.0 + self.severity * (float(self.params["max_scale"]) - 1.0)


def parse_shift(cfg: dict, task: str) -> TaskShift:
    """Validate ``shift`` config for ``task``; one-line ConfigError naming the field otherwise."""
    name = cfg.get("name")
    if name not in RL_SHIFTS:
        raise ConfigError(f"shift.name: '{name}' is not an online RL shift; choose one of "
                          f"{', '.join(RL_SHIFTS)}")
    sev = cfg.get("severity", 0.0)
    if isinstance(sev, bool) or not isinstance(sev, (int, float)) or not 0.0 <= float(sev) <= 1.0:
        raise ConfigError(f"shift.severity: must be a number in [0, 1], got {sev!r}")
    params = {}
    for key, (lo, hi) in _PARAMS[name].items():
        v = cfg.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (lo is not None and v <= lo and key != "seed") \
                or (key == "seed" and (v < 0 or int(v) != v)):
            raise ConfigError(f"shift.{key}: must be a number{'' if lo is None else f' > {lo}'}, got {v!r}")
        params[key] = v
    if name in DYNAMICS and task in GYMNAX_DYNAMICS and name not in GYMNAX_DYNAMICS[task]:
        raise ConfigError(f"shift.name: task '{task}' has no {name} to change; use one of "
                          f"{', '.join(GYMNAX_DYNAMICS[task])} or an observation shift")
    if name in REWARD and task not in FORWARD_TERM:
        raise ConfigError(f"shift.name: '{name}' changes the forward-velocity reward, which task "
                          f"'{task}' does not have; use a dynamics or observation shift")
    return TaskShift(name=name, severity=float(sev), params=params)


def _brax():
    try:
        from brax import envs as brax_envs
        from brax.envs import training
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ConfigError(f"brax is not installed ({e}); run `pip install -e '.[rl]'`")
    return brax_envs, training


def _shift_system(sys, shift: TaskShift):
    """The target task's system: masses, friction or gravity scaled by the shift's factor."""
    if shift.name not in DYNAMICS or shift.severity == 0.0:
        return sys
    f = shift.scale
    if shift.name == "mass" and float(np.asarray(getattr(sys, "spring_mass_scale", 0.0))) == 1.0:
        # these pipelines ignore masses; a heavier body is one the motors accelerate f times less
        return sys.tree_replace({"actuator.gear": sys.actuator.gear / f})
    paths = {"mass": ("link.inertia.mass", "link.inertia.i", "body_mass", "body_inertia"),
             "friction": ("geom_friction",), "gravity": ("gravity", "opt.gravity")}[shift.name]
    updates = {}
    for p in paths:
        obj = sys
        try:
            for part in p.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        updates[p] = obj * f
    return sys.tree_replace(updates)


def _shift_wrapper(base):
    """A brax Wrapper class (built lazily so importing this module needs no brax)."""

    class ShiftWrapper(base):
        def __init__(self, env, shift: TaskShift, task: str):
            super().__init__(env)
            self.shift = shift
            self.task = task
            self.perm = _permutation(env.observation_size, shift)

        def _obs(self, obs, key):
            return _shift_obs(self.shift, self.perm, obs, key)

        def _reward(self, state):
            s = self.shift
            if s.name not in REWARD or s.severity == 0.0:
                return state.reward
            fwd = state.metrics[FORWARD_TERM[self.task]]
            if s.name == "backwards":
                return state.reward - 2.0 * s.severity * fwd
            v = state.metrics["x_velocity"]
            return state.reward + s.severity * (-jnp.abs(v - float(s.params["velocity"])) - fwd)

        def reset(self, rng):
            rng, key = jax.random.split(rng)
            state = self.env.reset(rng)
            info = dict(state.info, shift_key=key)
            key, sub = jax.random.split(key)
            info["shift_key"] = key
            return state.replace(obs=self._obs(state.obs, sub), info=info)

        def step(self, state, action):
            key, sub = jax.random.split(state.info["shift_key"])
            nstate = self.env.step(state, action)
            info = dict(nstate.info, shift_key=key)
            return nstate.replace(obs=self._obs(nstate.obs, sub), reward=self._reward(nstate), info=info)

    return ShiftWrapper


def _permutation(n: int, shift: TaskShift) -> np.ndarray:
    """The observation order of ``obs_permutation``: round(s n) entries chosen by ``seed``, cycled."""
    perm = np.arange(n)
    if shift.name == "obs_permutation" and shift.severity > 0:
        k = int(round(shift.severity * n))
        if k >= 2:
            idx = np.random.default_rng(int(shift.params["seed"])).choice(n, k, replace=False)
            perm[idx] = np.roll(idx, 1)
    return perm


def _shift_obs(shift: TaskShift, perm, obs, key):
    if shift.name == "obs_permutation":
        return obs[..., perm]
    if shift.name == "obs_noise":
        return obs + shift.severity * float(shift.params["max_std"]) * jax.random.normal(key, obs.shape)
    return obs


def _gymnax_shifted():
    """A gymnax Environment class (built lazily) running a task under fixed, shifted ``EnvParams``."""
    from gymnax.environments import environment

    class ShiftedGymnax(environment.Environment):
        """``env`` with its dynamics set by ``params`` whatever params a caller passes (the source and
        target tasks then share one ``env_params``, which only sets the episode length), and the
        observation shift applied to every observation."""

        def __init__(self, env, params, shift: TaskShift):
            super().__init__()
            self.env, self.params, self.shift = env, params, shift
            self.perm = _permutation(int(np.prod(env.observation_space(params).shape)), shift)

        @property
        def default_params(self):
            return self.params

        def step_env(self, key, state, action, params):
            key, sub = jax.random.split(key)
            obs, state, reward, done, info = self.env.step_env(
                key, state, action, self.params.replace(max_steps_in_episode=params.max_steps_in_episode))
            return _shift_obs(self.shift, self.perm, obs, sub), state, reward, done, info

        def reset_env(self, key, params):
            key, sub = jax.random.split(key)
            obs, state = self.env.reset_env(key, self.params)
            return _shift_obs(self.shift, self.perm, obs, sub), state

        @property
        def name(self):
            return self.env.name

        @property
        def num_actions(self):
            return self.env.num_actions

        def action_space(self, params=None):
            return self.env.action_space(self.params)

        def observation_space(self, params=None):
            return self.env.observation_space(self.params)

    return ShiftedGymnax


def _gymnax_env(task: str, episode_length: int, shift: TaskShift | None):
    import gymnax

    env, params = gymnax.make(GYMNAX_TASKS[task])
    params = params.replace(max_steps_in_episode=int(episode_length))
    shift = shift or TaskShift()
    dyn = params
    if shift.name in DYNAMICS and shift.severity > 0.0:
        field_ = GYMNAX_DYNAMICS[task][shift.name]
        dyn = params.replace(**{field_: getattr(params, field_) * shift.scale})
    return _gymnax_shifted()(env, dyn, shift), params


def make_env(task: str, backend: str | None, episode_length: int, shift: TaskShift | None = None):
    """``(env, env_params)``: the brax task (shifted if ``shift`` is given) as a gymnax environment
    through rejax's adapter, with brax's episode (``episode_length`` steps) and auto-reset wrappers;
    a gymnax task (:data:`GYMNAX_TASKS`, no backend) as gymnax makes it, its episodes
    ``episode_length`` steps long. ``env_params`` are the source task's for both (a shifted task
    keeps its own dynamics)."""
    if task in GYMNAX_TASKS:
        return _gymnax_env(task, episode_length, shift)
    _, training = _brax()
    from rejax.compat.brax2gymnax import Brax2GymnaxEnv

    env = training.AutoResetWrapper(make_brax_env(task, backend, episode_length, shift))
    genv = Brax2GymnaxEnv(env)
    return genv, genv.default_params


def make_brax_env(task: str, backend: str, episode_length: int, shift: TaskShift | None = None):
    """The brax task (shifted if ``shift`` is given) with brax's episode wrapper and no auto-reset:
    ``state.done`` marks the end of an episode and ``state.info['truncation']`` a time-limit cut,
    and the final observation is kept (what dataset collection records)."""
    if task not in TASKS:
        raise ConfigError(f"task.name: unknown task '{task}'; choose one of {', '.join(TASKS)}")
    if backend not in BACKENDS:
        raise ConfigError(f"task.backend: unknown brax backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    brax_envs, training = _brax()
    import warnings

    try:
        with warnings.catch_warnings():  # brax's notice that it is unmaintained, printed per task load
            warnings.filterwarnings("ignore", message=".*Brax System, piplines.*", category=UserWarning)
            env = brax_envs.get_environment(task, backend=backend)
    except Exception as e:  # brax raises a bare error for unsupported (task, backend) pairs
        raise ConfigError(f"task.backend: brax task '{task}' does not support backend '{backend}' "
                          f"({str(e).splitlines()[0][:80]}); try task.backend=generalized")
    shift = shift or TaskShift()
    env.sys = _shift_system(env.sys, shift)
    from brax.envs.base import Wrapper

    env = _shift_wrapper(Wrapper)(env, shift, task)
    return training.EpisodeWrapper(env, episode_length, 1)
