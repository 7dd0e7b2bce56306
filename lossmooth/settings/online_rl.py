"""Setting 4: online RL (rejax TD3 and PPO on brax) adapting from a source task to a shifted target task.

Protocol ``task_shift`` (assumed; the paper does not say what the shift is in online RL):

1. Source phase: rejax's own algorithm (preset hyperparameters) trains online on the source task,
   every seed in one ``jit(vmap(...))`` batch.
2. Adaptation: from that agent (networks, optimizer state, observation normalizer), every method
   continues online on the target task (the shift applied) with the smoothed objective

       L_t = lam_t * L_alg(target-task data) + (1 - lam_t) * L_alg(source-task data)

   TD3: source data = the source phase's replay buffer, kept; target data = a new buffer filled
   online. PPO: source data = rollouts of the source task with the current policy in parallel
   source environments (collected only while some run has lam < 1). ``t`` counts gradient updates
   after the switch. Methods: hard switch (lam = 1), loss smoothing (a ramp), a constant replay mix,
   and training from scratch on the target task (``init: scratch``).

All (method, swept numbers, seed) runs that share a compiled structure adapt in one vmapped batch;
methods adapt from the same source agent per seed, so comparisons are paired.

Evaluation, at every ``eval_every`` target-task steps: mean deterministic-policy return over
``eval_episodes`` episodes on the target task and on the source task (forgetting).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from lossmooth.core import engine
from lossmooth.errors import ConfigError
from lossmooth.rl import envs, presets
from lossmooth.settings import common
from lossmooth.settings.common import _int

ALGOS = ("td3", "ppo")
PROTOCOLS = ("task_shift",)
SWEEPABLE = ("T", "lam0", "value")


@dataclass(frozen=True)
class Spec:
    num_seeds: int
    seed: int
    algos: dict  # name -> {preset: dict (rejax keys), ...}
    task: str
    backend: str
    episode_length: int
    shift: envs.TaskShift
    protocol: str
    reset_optimizer: bool
    methods: dict
    inits: dict
    sweep: dict
    source_timesteps: dict  # algo -> int
    adapt_timesteps: dict
    eval_every: dict
    eval_episodes: int
    gap_window: int


def parse(cfg: dict) -> Spec:
    """Validate the composed config (one line naming the field on any problem)."""
    s = cfg["setting"]
    num_seeds = _int(cfg, "num_seeds", 1)
    seed = _int(cfg, "seed", 0)
    task = cfg.get("task") or {}
    tname = task.get("name")
    if task.get("kind", "brax") != "brax":
        raise ConfigError("task.kind: online RL runs on brax tasks (the whole loop in JAX); gymnasium tasks "
                          "are for setting=offline_to_online")
    if tname not in envs.TASKS:
        raise ConfigError(f"task.name: unknown task '{tname}'; choose one of {', '.join(envs.TASKS)}")
    if task.get("backend") not in envs.BACKENDS:
        raise ConfigError(f"task.backend: unknown brax backend '{task.get('backend')}'; choose one of "
                          f"{', '.join(envs.BACKENDS)}")
    episode_length = _int(task, "episode_length", 1, "task.episode_length")
    shift = envs.parse_shift(cfg.get("shift") or {}, tname)
    proto = cfg.get("protocol") or {}
    if proto.get("name") not in PROTOCOLS:
        raise ConfigError(f"protocol.name: unknown protocol '{proto.get('name')}'; choose one of "
                          f"{', '.join(PROTOCOLS)}")
    if not isinstance(proto.get("reset_optimizer"), bool):
        raise ConfigError(f"protocol.reset_optimizer: must be true or false, got {proto.get('reset_optimizer')!r}")
    methods = common.parse_methods(cfg.get("method"), allow_scratch=True)
    for name, m in methods.items():
        if m.reg != "none":
            raise ConfigError(f"method.{name}.reg: regularizer '{m.reg}' is a supervised-setting method; "
                              "online RL compares hard_switch, loss_smoothing, replay_mix and scratch")
    sweep = common.parse_sweep(cfg, SWEEPABLE)
    algo_cfg = cfg.get("algo") or {}
    if not algo_cfg:
        raise ConfigError("algo: no algorithm selected; pick some, e.g. algo=[td3,ppo]")
    budget = cfg.get("budget") or {}
    algos, src_ts, ad_ts, every = {}, {}, {}, {}
    for name, a in algo_cfg.items():
        if name not in ALGOS or (a or {}).get("name", name) not in ALGOS:
            raise ConfigError(f"algo: unknown algorithm '{name}'; choose one of {', '.join(ALGOS)}")
        preset = presets.load(name, tname, s.get("presets_dir"))
        preset.pop("env", None)
        over = dict((a or {}).get("overrides") or {})
        per_algo = dict(budget.get(name) or {})  # rejax fields, and this algorithm's own phase lengths
        b = {k: per_algo.pop(k, budget.get(k)) for k in ("source_timesteps", "adapt_timesteps", "eval_every")}
        over.update(per_algo)
        for k, v in over.items():
            if k in ("env", "env_params"):
                raise ConfigError(f"budget.{name}.{k}: set the task with task=... / task.backend=...")
            ref = preset.get(k)
            if isinstance(ref, bool) and not isinstance(v, bool):
                raise ConfigError(f"budget.{name}.{k}: must be true or false, got {v!r}")
            if isinstance(ref, int) and not isinstance(ref, bool):
                _int({k: v}, k, 1, f"budget.{name}.{k}")
            if isinstance(ref, float) and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ConfigError(f"budget.{name}.{k}: must be a number, got {v!r}")
        preset.update(over)
        src_ts[name] = preset["total_timesteps"] if b["source_timesteps"] is None else b["source_timesteps"]
        ad_ts[name] = preset["total_timesteps"] if b["adapt_timesteps"] is None else b["adapt_timesteps"]
        every[name] = preset.get("eval_freq", 4096) if b["eval_every"] is None else b["eval_every"]
        for key, d in (("source_timesteps", src_ts), ("adapt_timesteps", ad_ts), ("eval_every", every)):
            _int({key: d[name]}, key, 1, f"budget.{key}")
        algos[name] = preset
    return Spec(
        num_seeds=num_seeds, seed=seed, algos=algos, task=tname, backend=task["backend"],
        episode_length=episode_length, shift=shift, protocol=proto["name"],
        reset_optimizer=proto["reset_optimizer"], methods=methods,
        inits=common.method_inits(cfg.get("method")), sweep=sweep,
        source_timesteps=src_ts, adapt_timesteps=ad_ts, eval_every=every,
        eval_episodes=_int(budget, "eval_episodes", 1, "budget.eval_episodes"),
        gap_window=_int(s, "gap_window", 1, "setting.gap_window"))


# ----------------------------------------------------------------------------- algorithms


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

    def source_iterations(self, timesteps: int) -> int:
        return max(1, -(-timesteps // self.steps_per_iteration))


def build_agents(spec: Spec, name: str) -> Agents:
    from rejax import PPO, TD3

    from lossmooth.rl.ppo import SmoothedPPO
    from lossmooth.rl.td3 import SmoothedTD3

    src_env, params = envs.make_env(spec.task, spec.backend, spec.episode_length)
    tgt_env, _ = envs.make_env(spec.task, spec.backend, spec.episode_length, spec.shift)
    cfg = dict(spec.algos[name])
    plain, smoothed = (TD3, SmoothedTD3) if name == "td3" else (PPO, SmoothedPPO)
    import warnings

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
    eval_runs = max([spec.num_seeds] + [len(g) for g in common.groups_of(expand_runs(spec))])
    agents = Agents(name, source, adapt, src_env, tgt_env, params, int(spi), spec.eval_episodes, eval_runs)
    agents.eval_prog = engine.make_eval(make_eval_fn(agents, agents.eval_tasks))
    return agents


def deterministic_act(algo, ts):
    """The evaluation policy: TD3's actor, or PPO's mean action."""
    if hasattr(algo, "deterministic_act"):
        return algo.deterministic_act(ts)
    from lossmooth.rl.ppo import SmoothedPPO

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
    envs_ = {"target": agents.target_env, "source": agents.source_env}
    algo = agents.adapt  # only its actor network and observation normalizer are used

    def eval_fn(view, _hp, data):
        key = jax.random.fold_in(view.rng, 0x5EED)  # does not advance the training stream
        keys = jax.random.split(key, 2)
        return {f"{t}_return": policy_return(algo, view, envs_[t], agents.env_params, keys[i], agents.episodes)
                for i, t in enumerate(tasks)}

    return eval_fn


def evaluate(agents: Agents, state, mesh=None) -> dict:
    """Both tasks' returns for every run in ``state`` [runs]; the batch is padded to
    ``agents.eval_runs`` so every phase reuses one compiled program (brax rollouts compile slowly)."""
    view = policy_view(state)
    if agents.host is not None:
        return agents.host.evaluate(agents.adapt, view)
    n = view.rng.shape[0]
    size = engine.padded_size(max(n, agents.eval_runs), 1 if mesh is None else mesh.size)
    out = agents.eval_prog(engine.pad_runs(view, n, size), None, None)
    return {k: v[:n] for k, v in out.items()}


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
    size = engine.padded_size(max(n, agents.eval_runs), 1 if mesh is None else mesh.size)
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


def seed_keys(spec: Spec, name: str) -> jnp.ndarray:
    """One key per seed, different per algorithm (the same seed of TD3 and PPO shares nothing)."""
    tag = ALGOS.index(name)
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(spec.seed + i), tag)
                      for i in range(spec.num_seeds)])


def train_source(agents: Agents, spec: Spec, mesh=None, callbacks=(), checkpoints=None, tag: str = "source"):
    """The source phase for every seed in one compiled batch (plain rejax). Returns the state and
    metrics [seeds, evals] (step 0 = before training). ``checkpoints``: resume and save at chunk
    boundaries under ``tag`` (:func:`engine.run_loop`)."""
    n = spec.num_seeds
    algo = agents.source
    keys = seed_keys(spec, agents.name)
    state = jax.jit(jax.vmap(algo.init_state))(keys)
    hp = engine.stack_runs([algo] * n)
    spe, n_chunks = _chunking(spec, agents, spec.source_timesteps[agents.name])
    n_pad = engine.padded_size(n, 1 if mesh is None else mesh.size)
    state, hp = engine.pad_runs(state, n, n_pad), engine.pad_runs(hp, n, n_pad)
    state, hp = engine.shard_runs(state, mesh), engine.shard_runs(hp, mesh)
    eval_ahead(agents, state, mesh)  # compiles on the second core while the training program compiles
    res = engine.run_loop(source_chunk(agents, spe, mesh), state, hp, None, n_chunks, callbacks,
                          checkpoints=checkpoints, tag=tag)
    return jax.tree.map(lambda x: x[:n], res.state), {k: v[:n] for k, v in res.metrics.items()}


def _chunking(spec: Spec, agents: Agents, timesteps: int) -> tuple[int, int]:
    """(iterations per evaluation, chunks) covering ``timesteps`` (rounded up); a chunk is one
    evaluation interval."""
    spe = max(1, -(-spec.eval_every[agents.name] // agents.steps_per_iteration))
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


def adapt_init(agents: Agents, spec: Spec, src_state, runs: list[dict]):
    """Per run, the adaptation state: the source agent (or a fresh one for ``init: scratch``) on the
    target task, with fresh target-task environments and replay buffer, the source data kept."""
    algo = agents.adapt
    keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(seed_keys(spec, agents.name))
    idx = jnp.asarray([r["seed_index"] for r in runs])
    scratch = jnp.asarray([r["init"] == "scratch" for r in runs])
    src = jax.tree.map(lambda x: x[idx], src_state)
    reset_opt = spec.reset_optimizer

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
            source_data = {"source_buffer": getattr(src, agents.source_data)}
        else:
            source_data = {"source_env_state": src.env_state, "source_last_obs": src.last_obs,
                           "source_last_done": src.last_done}
        switched = fresh.replace(**kept)
        state = jax.tree.map(lambda a, b: jnp.where(scratch, a, b), fresh, switched)
        if getattr(algo, "freeze_obs_rms", False):  # fixed preprocessing (dataset statistics) for every run
            source_data["obs_rms_state"] = src.obs_rms_state
        return state.replace(**source_data)  # scratch runs never read the source data (lam = 1 throughout)

    state = jax.jit(jax.vmap(one))(keys[idx], src, scratch)
    hps = [algo.replace(method=r["method"], **r.get("algo_fields", {}),
                        **({"uniform_warmup": jnp.asarray(r["init"] == "scratch")} if agents.name == "td3" else {}))
           for r in runs]  # ``algo_fields``: per-run vmappable fields a setting adds (e.g. the BC weight)
    return state, engine.stack_runs(hps)


def adapt_programs(agents: Agents, spec: Spec, runs: list[dict], src_state, mesh=None, data=None) -> list:
    """The ``(jitted program, args)`` pairs :func:`adapt_group` will run for ``runs`` (from a source
    state of the same shapes as ``src_state``), for compiling them ahead (:func:`engine.compile_queue`)."""
    if agents.host is not None:  # host loops: their jitted pieces are small
        return []
    n = len(runs)
    state, hp = adapt_init(agents, spec, src_state, runs)
    n_pad = engine.padded_size(n, 1 if mesh is None else mesh.size)
    state, hp = engine.pad_runs(state, n, n_pad), engine.pad_runs(hp, n, n_pad)
    state, hp = engine.shard_runs(state, mesh), engine.shard_runs(hp, mesh)
    spe, n_chunks = _chunking(spec, agents, spec.adapt_timesteps[agents.name])
    progs = [(adapt_chunk(agents, spe, True, mesh).train, (state, hp, data))]
    if source_free_from(agents, runs, spe, n_chunks) is not None:
        progs.append((adapt_chunk(agents, spe, False, mesh).train, (state, hp, data)))
    return progs


def adapt_group(agents: Agents, spec: Spec, runs: list[dict], src_state, mesh=None, callbacks=(), data=None,
                checkpoints=None, tag: str = "adapt"):
    """Adapt one batch of runs sharing a static structure; metrics start with the eval at the switch.
    ``data``: source data shared by every run (see :func:`with_shared_source`). ``checkpoints``:
    resume and save at chunk boundaries under ``tag``, where the whole loop is in JAX (host-stepped
    environments keep their state in the simulator, outside the checkpoint: such a loop restarts
    from the switch)."""
    n = len(runs)
    state, hp = adapt_init(agents, spec, src_state, runs)
    n_pad = engine.padded_size(n, 1 if mesh is None else mesh.size)
    state, hp = engine.pad_runs(state, n, n_pad), engine.pad_runs(hp, n, n_pad)
    state, hp = engine.shard_runs(state, mesh), engine.shard_runs(hp, mesh)
    at_switch = jax.device_get(evaluate(agents, state, mesh))
    spe, n_chunks = _chunking(spec, agents, spec.adapt_timesteps[agents.name])
    host_envs = None if agents.host is None else agents.host.new_envs(
        [r["seed"] for r in runs] + [runs[-1]["seed"]] * (n_pad - n), agents.adapt.num_envs)
    # from the first chunk where every run is past its ramp, a program without the source branch
    first_free = source_free_from(agents, runs, spe, n_chunks)
    later = None if first_free is None else (first_free, adapt_chunk(agents, spe, False, mesh, host_envs))
    if later is not None and first_free > 0:  # compiles while the ramp's program compiles and runs
        engine.compile_ahead(later[1].train, state, hp, data)
    try:
        res = engine.run_loop(adapt_chunk(agents, spe, True, mesh, host_envs), state, hp, data, n_chunks,
                              callbacks, later=later, checkpoints=checkpoints if host_envs is None else None,
                              tag=tag)
    finally:
        if host_envs is not None:
            host_envs.close()
    metrics = {}
    for k, v in res.metrics.items():
        first = (np.asarray(at_switch[k])[:, None] if k in at_switch
                 else np.asarray(jax.vmap(lambda a: a.lam(0))(hp))[:, None])
        metrics[k] = np.concatenate([first, v], axis=1)[:n]
    steps = np.arange(metrics["target_return"].shape[1]) * spe * agents.steps_per_iteration
    return jax.tree.map(lambda x: x[:n], res.state), metrics, res.diverged_at[:n], steps


def expand_runs(spec: Spec) -> list[dict]:
    return common.expand_runs(spec.methods, spec.sweep, spec.num_seeds, spec.seed, inits=spec.inits)
