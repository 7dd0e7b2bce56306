"""TD3 on host-stepped gymnasium environments: the engine's chunks with the environment step on the
host and every update jit-compiled and vmapped over runs.

One iteration for a batch of R runs with E environments each (R x E gymnasium environments):

    for each of the policy_delay rounds:  actions = host_act(state, obs)  (jit, vmapped over runs)
                                          step the R x E environments     (host)
    state = train_iteration(state, the rounds' transitions)              (jit, vmapped over runs)

``train_iteration`` is the same :meth:`SmoothedTD3.train_iteration` the JAX environments run (the
rounds' transitions go into the replay buffer, then ``num_epochs`` critic updates per round, then the
actor and targets), so the objective, the schedule and the source branch are one implementation.
The rounds of an iteration act with the actor and normalizer as they stand at its start (the actor
does not change between them in TD3 either). The agent is built on :class:`SpacesEnv`, a gymnax
stand-in that carries only the task's spaces.

Checkpoints hold the agent's state only: gymnasium environments cannot be saved, so a resumed host
run starts new episodes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from lossmooth.core import engine
from lossmooth.rl.agents import with_shared_source
from lossmooth.rl.gym_envs import EnvSpec, HostEnvs, rollout_episodes


@struct.dataclass
class SpacesParams(environment.EnvParams):
    max_steps_in_episode: int = 1000


class SpacesEnv(environment.Environment):
    """A gymnax environment with a gymnasium task's spaces and nothing else: rejax builds its networks
    and buffers from it; the steps themselves happen on the host."""

    def __init__(self, obs_dim: int, low: np.ndarray, high: np.ndarray, max_steps: int):
        super().__init__()
        self.obs_dim, self.low, self.high, self.max_steps = obs_dim, low, high, max_steps

    @property
    def default_params(self):
        return SpacesParams(max_steps_in_episode=self.max_steps)

    def reset_env(self, key, params):
        return jnp.zeros((self.obs_dim,), jnp.float32), environment.EnvState(time=0)

    def step_env(self, key, state, action, params):
        raise RuntimeError("SpacesEnv does not step: its task's environments step on the host")

    def observation_space(self, params):
        return spaces.Box(-jnp.inf, jnp.inf, (self.obs_dim,), jnp.float32)

    def action_space(self, params):
        return spaces.Box(jnp.asarray(self.low), jnp.asarray(self.high), self.low.shape, jnp.float32)

    @property
    def name(self) -> str:
        return "spaces"


def _minibatch(rounds: list[dict], n_runs: int):
    """The rounds' transitions as a rejax Minibatch [runs, policy_delay, envs_per_run, ...]."""
    from rejax.buffers import Minibatch

    def stack(k):
        x = np.stack([r[k] for r in rounds], axis=0)  # [rounds, R * E, ...]
        x = x.reshape(x.shape[0], n_runs, -1, *x.shape[2:])
        return jnp.asarray(np.swapaxes(x, 0, 1))

    return Minibatch(obs=stack("obs"), action=stack("action"), reward=stack("reward"),
                     next_obs=stack("next_obs"), done=stack("done"))


class HostRunner:
    """Builds the host-stepped training chunks and the evaluation for one gymnasium task."""

    def __init__(self, spec: EnvSpec, episodes: int, max_steps: int):
        self.spec, self.episodes, self.max_steps = spec, episodes, max_steps
        self._act = engine.in_lanes(lambda s, algo, _: algo.host_act(s[0], s[1]))  # s = (state, obs)
        self._policies = {}
        self._iters = {}

    def iteration(self, with_source: bool):
        """``jit(vmap(train_iteration))`` over runs, the shared source data unbatched."""
        if with_source not in self._iters:
            def it(ts, algo, data, trans):
                run = algo.replace(with_source=with_source)
                return with_shared_source(ts, data, lambda t: run.train_iteration(t, trans))

            self._iters[with_source] = engine.in_lanes(lambda s, algo, data: it(s[0], algo, data, s[1]))  # s = (state, trans)
        return self._iters[with_source]

    def new_envs(self, run_seeds: list[int], envs_per_run: int) -> HostEnvs:
        """The training environments of a batch of runs: run r's e-th environment is seeded from the
        run's seed, so every method's run of one seed meets the same episodes' initial states."""
        seeds = [1_000_003 * (s + 1) + e for s in run_seeds for e in range(envs_per_run)]
        return HostEnvs(self.spec, len(seeds), seeds)

    def chunk(self, algo, envs: HostEnvs, iterations: int, with_source: bool):
        """``chunk(state, hp, data) -> (state, {"lam": [runs, 1]})``: ``iterations`` iterations."""
        iterate = self.iteration(with_source)

        def train(state, hp, data):
            n_runs = int(jax.tree.leaves(state)[0].shape[0])
            for _ in range(iterations):
                rounds = []
                for _ in range(algo.policy_delay):
                    obs = jnp.asarray(envs.obs.reshape(n_runs, -1, envs.obs.shape[-1]))
                    state, actions = self._act((state, obs), hp, None)
                    rounds.append(envs.step(np.asarray(actions).reshape(envs.n, -1)))
                state = iterate((state, _minibatch(rounds, n_runs)), hp, data)
            lam = jax.vmap(lambda a, u: a.lam(u))(hp, state.updates)
            return state, {"lam": lam[:, None]}

        train.host = True
        return train

    def evaluate(self, algo, view) -> dict:
        """Per run in ``view`` [runs]: the deterministic policy's mean return over ``episodes`` fresh
        episodes, and the fraction of them in which the task's success flag was raised."""
        n_runs = int(view.rng.shape[0])
        # episode seeds from each run's key, as the JAX evaluation derives its key: the evaluation is
        # a function of the state (the same agent scores the same in every batch it sits in)
        keys = np.asarray(jax.random.key_data(jax.vmap(lambda k: jax.random.fold_in(k, 0x5EED))(view.rng)))
        base = keys.reshape(n_runs, -1)[:, -1].astype(np.int64) % (2 ** 31 - self.episodes)
        seeds = (base[:, None] + np.arange(self.episodes)[None]).reshape(-1)

        if id(algo) not in self._policies:  # the actor network and normalizer only (one per agent)
            self._policies[id(algo)] = engine.in_lanes(lambda s, _h, _d: _deterministic_actions(algo, s[0], s[1]))
        act = self._policies[id(algo)]

        def policy(obs):
            o = jnp.asarray(obs.reshape(n_runs, self.episodes, -1))
            return np.asarray(act((view, o), None, None)).reshape(obs.shape[0], -1)

        out = rollout_episodes(self.spec, policy, n_runs * self.episodes, seeds, self.max_steps)
        res = {"target_return": out["return"].reshape(n_runs, -1).mean(1).astype(np.float32)}
        if out["success"] is not None:  # goal tasks: the fraction of episodes that reached the goal
            res["target_success"] = out["success"].reshape(n_runs, -1).mean(1).astype(np.float32)
        return res


def _deterministic_actions(algo, view, obs):
    o = algo.normalize_obs(view.obs_rms_state, obs) if algo.normalize_observations else obs
    return algo.actor.apply(view.actor_ts.params, o)
