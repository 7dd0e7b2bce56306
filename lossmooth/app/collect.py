"""``lossmooth data collect``: D4RL-style datasets of our own for the brax tasks, in Minari's format.

1. **Train** rejax TD3 (the task's preset, with the collection budget's fields) on the task, one
   seed, keeping a *snapshot* of the policy (actor parameters and observation normalizer) at every
   evaluation together with its deterministic return.
2. **References** (ours, never D4RL's constants): random = mean return of uniform random actions;
   expert = mean return of the best snapshot, deterministic. Both go into every dataset's metadata
   (``ref_min_score`` / ``ref_max_score``) for normalized scores.
3. **Datasets**, each of about ``steps_per_dataset`` transitions in whole episodes:
   - ``random``: uniform random actions;
   - ``medium``: the snapshot whose return is closest to random + ``medium_fraction`` (expert - random),
     with Gaussian action noise ``noise``;
   - ``expert``: the best snapshot, same noise;
   - ``medium_replay``: what training saw up to the medium snapshot, as rollouts of every snapshot
     up to it with TD3's exploration noise, equal steps per snapshot. (brax's auto-reset replaces
     the final observation of every episode in the training replay buffer, so the buffer itself
     cannot give D4RL's fields; the rollouts can.)
   - ``medium_expert``: medium and expert together.

The rollouts (no auto-reset, episodes cut at their first ``done``) and the dataset ids
(``lossmooth/<task>-<kind>-v0``) are :mod:`lossmooth.offline.collect`'s.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from lossmooth.core.config import integer, number, writable_folder
from lossmooth.errors import ConfigError
from lossmooth.offline import datasets as D
from lossmooth.offline.collect import (KINDS, collect_steps, dataset_id, episodes_of, make_rollout, mean_return,
                                       resolve_root)
from lossmooth.rl import envs, presets


@dataclass(frozen=True)
class CollectSpec:
    task: str
    backend: str
    episode_length: int
    root: str
    seed: int
    kinds: tuple
    timesteps: int
    eval_every: int
    td3: dict
    steps_per_dataset: int
    medium_fraction: float
    noise: float
    ref_episodes: int
    rollout_envs: int


def parse(cfg: dict) -> CollectSpec:
    task = cfg.get("task") or {}
    if task.get("kind", "brax") != "brax":
        raise ConfigError("task.kind: `lossmooth data collect` collects on brax tasks; pick one of "
                          f"{', '.join(envs.TASKS)}")
    if task.get("name") not in envs.TASKS:
        raise ConfigError(f"task.name: unknown task '{task.get('name')}'; choose one of {', '.join(envs.TASKS)}")
    kinds = tuple(cfg.get("kinds") or ())
    bad = [k for k in kinds if k not in KINDS]
    if not kinds or bad:
        raise ConfigError(f"kinds: unknown dataset kind(s) {bad or '[]'}; choose from {', '.join(KINDS)}")
    tr = cfg.get("train") or {}
    root = resolve_root(cfg.get("root"))
    writable_folder(root, "root", "datasets")
    preset = presets.load("td3", task["name"], cfg.get("presets_dir"))
    preset.pop("env", None)
    preset.update(dict(tr.get("overrides") or {}))
    return CollectSpec(
        task=task["name"], backend=task.get("backend"), episode_length=integer(task, "episode_length", 1, "task.episode_length"),
        root=root, seed=integer(cfg, "seed", 0), kinds=kinds,
        timesteps=integer(tr, "timesteps", 1, "train.timesteps"), eval_every=integer(tr, "eval_every", 1, "train.eval_every"),
        td3=preset, steps_per_dataset=integer(cfg, "steps_per_dataset", 1),
        medium_fraction=number(cfg, "medium_fraction", 0.0, 1.0), noise=number(cfg, "noise", 0.0),
        ref_episodes=integer(cfg, "ref_episodes", 1), rollout_envs=integer(cfg, "rollout_envs", 1))


def run(cfg: dict, log=print) -> dict:
    """Collect every dataset of ``cfg`` (see the module docstring); returns {kind: dataset id}."""
    spec = parse(cfg)
    t0 = time.time()
    algo, rollout = _agent(spec)
    key = jax.random.PRNGKey(spec.seed)
    snaps, returns, steps = _train(spec, algo, rollout, key, log)
    rand = (snaps[0][0], snaps[0][1], jnp.asarray(True))
    ref, best, medium = _references(spec, rollout, rand, snaps, returns, key)
    log(f"references: random {ref[0]:.1f}, expert {ref[1]:.1f} (snapshot at {steps[best]} steps); "
        f"medium: snapshot at {steps[medium]} steps, return {returns[medium]:.1f}")
    policies = {"random": rand, "medium": snaps[medium], "expert": snaps[best], "replay": snaps[:medium + 1]}
    meta_common = {"task": spec.task, "backend": spec.backend, "episode_length": spec.episode_length,
                   "collector": "rejax TD3 (lossmooth data collect)", "train_timesteps": steps[-1],
                   "snapshot_steps": steps, "snapshot_returns": returns, "expert_snapshot_step": steps[best],
                   "medium_snapshot_step": steps[medium], "medium_fraction": spec.medium_fraction,
                   "action_noise": spec.noise, "td3": json.dumps(spec.td3, default=str)}
    made = _datasets(spec, rollout, policies, float(algo.exploration_noise), jax.random.fold_in(key, 13),
                     ref, meta_common, log)
    log(f"done in {time.time() - t0:.0f}s; datasets under {spec.root}")
    return made


def _agent(spec: CollectSpec):
    """rejax TD3 on the task's gymnax env, and a rollout of a snapshot's policy on its brax env."""
    import warnings

    from rejax import TD3

    genv, params = envs.make_env(spec.task, spec.backend, spec.episode_length)
    benv = envs.make_brax_env(spec.task, spec.backend, spec.episode_length)
    with warnings.catch_warnings():  # rejax deep-copies its config; brax envs are shallow-copied
        warnings.filterwarnings("ignore", message=".*deepcopy.*", category=RuntimeWarning)
        try:
            algo = TD3.create(env=genv, env_params=params, **spec.td3)
        except TypeError as e:
            raise ConfigError(f"train.overrides: {e}; use rejax TD3 fields")
    act_dim = int(np.prod(genv.action_space(params).shape))

    def policy(snap, obs, key):
        """A snapshot's deterministic action, or uniform random actions where ``snap[2]`` (one program
        for both, so the brax rollout compiles once)."""
        actor_params, rms, is_random = snap
        o = algo.normalize_obs(rms, obs) if algo.normalize_observations else obs
        uniform = jax.random.uniform(key, (obs.shape[0], act_dim), minval=-1.0, maxval=1.0)
        return jnp.where(is_random, uniform, algo.actor.apply(actor_params, o))

    return algo, make_rollout(benv, policy, spec.episode_length, spec.rollout_envs)


def _train(spec: CollectSpec, algo, rollout, key, log):
    """Train TD3, keeping a snapshot (actor, observation statistics, not random) and its return per evaluation."""
    iters = max(1, spec.eval_every // (algo.num_envs * algo.policy_delay))
    train = jax.jit(lambda ts: jax.lax.scan(lambda s, _: (algo.train_iteration(s), None), ts, None, iters)[0])
    ts = algo.init_state(key)
    snaps, returns, steps = [], [], []
    k_eval = jax.random.fold_in(key, 7)
    n_evals = max(1, -(-spec.timesteps // (iters * algo.num_envs * algo.policy_delay)))
    for i in range(n_evals):
        ts = train(ts)
        snap = (ts.actor_ts.params, ts.obs_rms_state, jnp.asarray(False))
        ret = mean_return(episodes_of(rollout(snap, jax.random.fold_in(k_eval, i), 0.0)))
        snaps.append(snap)
        returns.append(ret)
        steps.append(int(ts.global_step))
        log(f"train {steps[-1]} steps: return {ret:.1f}")
    return snaps, returns, steps


def _references(spec: CollectSpec, rollout, rand, snaps, returns, key):
    """The random and expert reference returns, the best snapshot and the medium one (the snapshot up to
    the best whose return is nearest ``medium_fraction`` of the way between the references)."""
    k_ref = jax.random.fold_in(key, 11)
    ref_rand = []
    while len(ref_rand) < spec.ref_episodes:
        ref_rand += episodes_of(rollout(rand, jax.random.fold_in(k_ref, len(ref_rand)), 0.0))
    best = int(np.argmax(returns))
    ref_exp = []
    while len(ref_exp) < spec.ref_episodes:
        ref_exp += episodes_of(rollout(snaps[best], jax.random.fold_in(k_ref, 1000 + len(ref_exp)), 0.0))
    ref = (mean_return(ref_rand[:spec.ref_episodes]), mean_return(ref_exp[:spec.ref_episodes]))
    if not ref[1] > ref[0]:
        raise ConfigError(f"train.timesteps: the trained policy (return {ref[1]:.1f}) is no better than random "
                          f"({ref[0]:.1f}); collect with a longer training budget")
    goal = ref[0] + spec.medium_fraction * (ref[1] - ref[0])
    medium = int(np.argmin([abs(r - goal) for r in returns[: best + 1]]))
    return ref, best, medium


def _datasets(spec: CollectSpec, rollout, policies: dict, explore: float, k_data, ref, meta_common: dict, log) -> dict:
    """Write each wanted kind as a Minari dataset; returns {kind: dataset id}."""
    n = spec.steps_per_dataset
    cache = {}

    def kind_eps(kind):
        if kind in cache:
            return cache[kind]
        k = jax.random.fold_in(k_data, KINDS.index(kind))
        if kind == "random":
            eps = collect_steps(rollout, policies["random"], k, 0.0, n)
        elif kind == "medium":
            eps = collect_steps(rollout, policies["medium"], k, spec.noise, n)
        elif kind == "expert":
            eps = collect_steps(rollout, policies["expert"], k, spec.noise, n)
        elif kind == "medium_replay":
            per = max(1, n // len(policies["replay"]))
            eps = []
            for j, snap in enumerate(policies["replay"]):
                eps += collect_steps(rollout, snap, jax.random.fold_in(k, j), explore, per)
        else:
            eps = kind_eps("medium") + kind_eps("expert")
        cache[kind] = eps
        return eps

    made = {}
    for kind in spec.kinds:
        eps = kind_eps(kind)
        did = dataset_id(spec.task, kind)
        D.save_minari(eps, did, spec.root, ref_scores=ref, algorithm="rejax TD3",
                      description=f"{kind} dataset of brax {spec.task} ({spec.backend}) collected by lossmooth",
                      metadata={**meta_common, "kind": kind, "dataset_return": mean_return(eps)})
        made[kind] = did
        log(f"wrote {did}: {len(eps)} episodes, {sum(len(e['rewards']) for e in eps)} transitions, "
            f"mean return {mean_return(eps):.1f}")
    return made
