"""The RL pieces two settings share (online RL and offline-to-online): an algorithm's compiled
parts on a task pair, deterministic-policy evaluation, training chunks for the engine, and the
adaptation state at the switch.

A *chunk* here is one evaluation interval: the training program (``steps_per_eval`` iterations,
jit-compiled and vmapped over runs by :func:`lossmooth.core.engine.make_chunk`) followed by one
evaluation program compiled separately, so the brax rollouts of the evaluation compile once and serve
the source phase, the switch and every adaptation chunk.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from lossmooth.core import engine
from lossmooth.rl.ppo import SmoothedPPO

ALGOS = ("td3", "ppo")


@dataclass
class Agents:
    """The compiled pieces of one algorithm on one task pair."""

    name: str
    source: object  # rejax algorithm on the source task (the source phase: plain rejax)
    adapt: object  # the smoothed algorithm on the target task (source task kept for its loss)
    source_env: object
    target_env: object
    env_params: object
    steps_per_iteration: int
    episodes: int
    eval_runs: int = 1  # evaluations are padded to this many runs (one compiled program for all)
    eval_tasks: tuple = ("target", "source")
    # TD3: the field of the source-phase state holding the source data (the source task's replay
    # buffer online; the offline dataset, already in ``source_buffer``, offline-to-online)
    source_data: str = "replay_buffer"
    eval_prog: object = None
    # a :class:`lossmooth.rl.host_loop.HostRunner` where the task's environments step on the host
    # (gymnasium); None: JAX environments (brax), the whole loop compiled
    host: object = None
    # a sequence of switches: every task's environment (task 0 the unshifted one; evaluated as
    # ``task<j>_return``), the smoothed algorithm of each switch i (index i - 1: task i, source task
    # i - 1) and the switch these agents train at (which tasks ``source_return`` / ``target_return`` are)
    task_envs: tuple = ()
    switch_algos: tuple = ()
    switch: int = 1


def at_switch(agents: Agents, switch: int) -> Agents:
    """``agents`` at switch ``switch`` (>= 1) of a sequence: that switch's algorithm and tasks; the
    compiled evaluation (every task) is shared."""
    return dataclasses.replace(agents, adapt=agents.switch_algos[switch - 1], source_env=agents.task_envs[switch - 1],
                               target_env=agents.task_envs[switch], switch=switch)


def deterministic_act(algo, ts):
    """The evaluation policy: TD3's actor, or PPO's mean action."""
    if hasattr(algo, "deterministic_act"):
        return algo.deterministic_act(ts)
    if hasattr(algo, "num_steps"):  # rejax PPO samples in make_act; evaluate its mean instead
        return SmoothedPPO.deterministic_act(algo, ts)
    return algo.make_act(ts)


def policy_return(algo, ts, env, env_params, key, episodes: int):
    """Mean undiscounted return of the deterministic policy over ``episodes`` episodes."""
    from rejax.evaluate import evaluate

    _, returns = evaluate(deterministic_act(algo, ts), key, env, env_params, episodes,
                          env_params.max_steps_in_episode)
    return returns.mean()


@struct.dataclass
class ActorParams:
    params: object


@struct.dataclass
class PolicyView:
    """What evaluation reads from a training state. rejax's and the smoothed states give the same
    view, so one compiled evaluation serves the source phase, the switch and every adaptation chunk."""

    actor_ts: ActorParams
    obs_rms_state: object
    rng: jnp.ndarray


def policy_view(ts) -> PolicyView:
    return PolicyView(ActorParams(ts.actor_ts.params), ts.obs_rms_state, ts.rng)


def make_eval_fn(agents: Agents, tasks=("target", "source")):
    """Per run: the deterministic policy's mean return on each of ``tasks`` (from a :class:`PolicyView`)."""
    envs_ = {"target": agents.target_env, "source": agents.source_env,
             **{f"task{j}": env for j, env in enumerate(agents.task_envs)}}
    algo = agents.adapt  # only its actor network and observation normalizer are used

    def eval_fn(view, _hp, data):
        key = jax.random.fold_in(view.rng, 0x5EED)  # does not advance the training stream
        keys = jax.random.split(key, len(tasks))
        return {f"{t}_return": policy_return(algo, view, envs_[t], agents.env_params, keys[i], agents.episodes)
                for i, t in enumerate(tasks)}

    return eval_fn


def evaluate(agents: Agents, state, mesh=None) -> dict:
    """Both tasks' returns for every run in ``state`` [runs] (a sequence: every task's, and its
    switch's source and target task's under those names); the batch is padded to
    ``agents.eval_runs`` so every phase reuses one compiled program (brax rollouts compile slowly)."""
    view = policy_view(state)
    if agents.host is not None:
        return agents.host.evaluate(agents.adapt, view)
    n = view.rng.shape[0]
    size = engine.padded_size(max(n, agents.eval_runs), 1 if mesh is None else mesh.size, engine.LANES)
    out = {k: v[:n] for k, v in agents.eval_prog(engine.pad_runs(view, n, size), None, None).items()}
    if agents.task_envs:
        out.update(source_return=out[f"task{agents.switch - 1}_return"], target_return=out[f"task{agents.switch}_return"])
    return out


def with_eval(train_chunk, agents: Agents, mesh=None):
    """A chunk = ``train_chunk`` (one evaluation interval of training) then the separately compiled
    evaluation: the brax rollouts are compiled once, not inside every training program."""

    def chunk(state, hp, data):
        state, m = train_chunk(state, hp, data)
        ev = evaluate(agents, state, mesh)
        return state, {**m, **{k: v[:, None] for k, v in ev.items()}}

    chunk.train = train_chunk  # the jitted training program (for engine.compile_ahead)
    return chunk


def eval_ahead(agents: Agents, state, mesh=None):
    """Start compiling the shared evaluation for ``state``'s batch in the background."""
    if agents.host is not None:
        return None
    view = policy_view(state)
    n = view.rng.shape[0]
    size = engine.padded_size(max(n, agents.eval_runs), 1 if mesh is None else mesh.size, engine.LANES)
    return engine.compile_ahead(agents.eval_prog, engine.pad_runs(view, n, size), None, None)


def with_shared_source(ts, data, fn):
    """``fn(ts)`` with ``ts.source_buffer`` = ``data`` where the source data is one dataset shared by
    every run (passed unbatched, so it is held once, not once per run); the run's own placeholder
    goes back into the returned state. ``data=None``: each run holds its own source data."""
    if data is None:
        return fn(ts)
    own = ts.source_buffer
    return fn(ts.replace(source_buffer=data)).replace(source_buffer=own)


def source_chunk(agents: Agents, steps_per_eval: int, mesh=None):
    train = engine.make_chunk(lambda ts, algo, data: (algo.train_iteration(ts), {}),
                              lambda ts, algo, data: {}, steps_per_eval, 1)
    return with_eval(train, agents, mesh)


def adapt_chunk(agents: Agents, steps_per_eval: int, with_source: bool = True, mesh=None, host_envs=None):
    """One evaluation interval of adaptation; ``with_source=False`` compiles the training without the
    source branch (same numbers once every run has lam = 1); the evaluation program is shared.
    ``host_envs``: the batch's host-stepped environments (where ``agents.host`` is set)."""
    if agents.host is not None:
        return with_eval(agents.host.chunk(agents.adapt, host_envs, steps_per_eval, with_source), agents, mesh)

    def step(ts, algo, data):
        ts = with_shared_source(ts, data, algo.replace(with_source=with_source).train_iteration)
        return ts, {"lam": algo.lam(ts.updates)}

    return with_eval(engine.make_chunk(step, lambda ts, algo, data: {}, steps_per_eval, 1), agents, mesh)


def seed_keys(seed: int, num_seeds: int, algo: str) -> jnp.ndarray:
    """One key per seed, different per algorithm (the same seed of TD3 and PPO shares nothing)."""
    tag = ALGOS.index(algo)
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(seed + i), tag) for i in range(num_seeds)])


def chunking(agents: Agents, eval_every: int, timesteps: int) -> tuple[int, int]:
    """(iterations per evaluation, chunks) covering ``timesteps`` environment steps (rounded up) with
    an evaluation every ``eval_every`` steps (rounded up to whole iterations); a chunk is one
    evaluation interval."""
    spe = max(1, -(-eval_every // agents.steps_per_iteration))
    return spe, max(1, -(-timesteps // (spe * agents.steps_per_iteration)))


def updates_after(agents: Agents, iterations: int) -> int:
    """Gradient updates (the schedule's t) done by ``iterations`` adaptation iterations (host-side).

    TD3: an iteration is ``policy_delay`` rounds of ``num_envs`` steps; round r trains (``num_epochs``
    updates) once its starting step r * num_envs is past ``fill_buffer``. PPO: ``num_epochs`` x
    ``num_minibatches`` updates per iteration.
    """
    a = agents.adapt
    if agents.name == "td3":
        rounds = iterations * a.policy_delay
        return max(0, rounds - a.fill_buffer // a.num_envs - 1) * a.num_epochs
    return iterations * a.num_epochs * a.num_minibatches


def source_free_from(agents: Agents, runs: list[dict], steps_per_eval: int, n_chunks: int) -> int | None:
    """The first chunk from whose start every run has lam = 1 for good (None: never in this phase)."""
    ends = [r["method"].schedule.ends_at for r in runs]
    if any(e is None for e in ends):  # a constant mix needs the source data throughout
        return None
    return next((c for c in range(n_chunks) if updates_after(agents, c * steps_per_eval) >= max(ends)), None)


def adapt_init(agents: Agents, seed_keys_: jnp.ndarray, src_state, runs: list[dict], reset_optimizer: bool,
               switch: int = 0):
    """Per run, the adaptation state: the source agent (or a fresh one for ``init: scratch``) on the
    target task, with fresh target-task environments and replay buffer, the source data kept.
    ``seed_keys_``: :func:`seed_keys` of every seed; ``reset_optimizer``: fresh optimizer states at
    the switch instead of the source phase's. ``switch`` > 0 (the contract's index: switch + 1 of a
    sequence, ``agents`` at it): ``src_state`` holds the runs' own states at the end of the previous switch [runs], whose
    target task is this switch's source (TD3: its replay buffer; PPO: its environments); every run
    goes on from its own agent, with random streams of this switch's own."""
    algo = agents.adapt
    keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(seed_keys_)
    idx = jnp.asarray([r["seed_index"] for r in runs])
    scratch = jnp.asarray([r["init"] == "scratch" and not switch for r in runs])
    src = jax.tree.map(lambda x: x[idx], src_state) if not switch else src_state
    keys = keys[idx] if not switch else jax.vmap(lambda k: jax.random.fold_in(k, 1000 + switch))(keys[idx])
    source_field = agents.source_data if not switch else "replay_buffer"
    reset_opt = reset_optimizer

    def one(key, src, scratch):
        fresh = algo.init_state(key)
        kept = {k: getattr(src, k) for k in ("obs_rms_state", "rew_rms_state")}
        for k in ("actor_ts", "critic_ts"):  # the source agent's networks and optimizer state
            f, o = getattr(fresh, k), getattr(src, k)
            opt_state = f.tx.init(o.params) if reset_opt else o.opt_state
            kept[k] = f.replace(params=o.params, opt_state=opt_state, step=o.step)
        if agents.name == "td3":
            kept.update(actor_target_params=src.actor_target_params,
                        critic_target_params=src.critic_target_params)
            source_data = {"source_buffer": getattr(src, source_field)}
        else:
            source_data = {"source_env_state": src.env_state, "source_last_obs": src.last_obs,
                           "source_last_done": src.last_done}
        switched = fresh.replace(**kept)
        state = jax.tree.map(lambda a, b: jnp.where(scratch, a, b), fresh, switched)
        if getattr(algo, "freeze_obs_rms", False):  # fixed preprocessing (dataset statistics) for every run
            source_data["obs_rms_state"] = src.obs_rms_state
        return state.replace(**source_data)  # scratch runs never read the source data (lam = 1 throughout)

    state = jax.jit(jax.vmap(one))(keys, src, scratch)
    hps = [algo.replace(method=r["method"], **r.get("algo_fields", {}),
                        **({"uniform_warmup": jnp.asarray(r["init"] == "scratch" and not switch)}
                           if agents.name == "td3" else {}))
           for r in runs]  # ``algo_fields``: per-run vmappable fields a setting adds (e.g. the BC weight)
    return state, engine.stack_runs(hps)


