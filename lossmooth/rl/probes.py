"""Probe environments for checking an RL algorithm's learned values against known answers.

One-step episodes (every step ends the episode), one continuous action in [-1, 1]:

- ``constant``:    observation 0, reward 1                  -> Q(s, a) = V(s) = 1
- ``observation``: observation s in {-1, +1} at random, reward s -> Q(s, a) = V(s) = s
- ``nan``:         observations and rewards are NaN            (data that must never be touched)

With one-step episodes the discount does not enter, so the targets are exact.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces
from gymnax.environments.environment import Environment

KINDS = ("constant", "observation", "nan")


@struct.dataclass
class ProbeState:
    obs: jnp.ndarray
    time: int = 0


@struct.dataclass
class ProbeParams:
    max_steps_in_episode: int = 1


class ProbeEnv(Environment):
    def __init__(self, kind: str = "constant"):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"probe kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind

    @property
    def default_params(self):
        return ProbeParams()

    def _draw(self, key):
        if self.kind == "constant":
            return jnp.zeros((1,))
        if self.kind == "nan":
            return jnp.full((1,), jnp.nan)
        return jnp.where(jax.random.bernoulli(key), 1.0, -1.0) * jnp.ones((1,))

    def reset_env(self, key, params):
        state = ProbeState(obs=self._draw(key))
        return state.obs, state

    def step_env(self, key, state, action, params):
        reward = {"constant": jnp.ones(()), "observation": state.obs[0],
                  "nan": jnp.full((), jnp.nan)}[self.kind]
        done = jnp.ones((), bool)
        return state.obs, state.replace(time=state.time + 1), reward, done, {}

    def get_obs(self, state, params=None, key=None):
        return state.obs

    def is_terminal(self, state, params):
        return jnp.ones((), bool)

    def action_space(self, params=None):
        return spaces.Box(low=-1.0, high=1.0, shape=(1,))

    def observation_space(self, params=None):
        return spaces.Box(low=-1.0, high=1.0, shape=(1,))

    @property
    def name(self):
        return f"Probe-{self.kind}"
