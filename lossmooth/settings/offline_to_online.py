"""Setting 3: offline-to-online RL, TD3+BC -> TD3 (the paper's protocol, section 3 of paper-protocol.md).

1. Offline: TD3+BC on the dataset D (states normalized with D's mean and std, fixed), every seed in
   one ``jit(vmap(scan of updates))`` batch, no environment step.
2. Online: from that agent every method fine-tunes with online TD3 on the task; update t draws an
   online batch b_on from the replay buffer (filled online) and an independent offline batch b_off
   from D, and minimizes

       L_t = lam_t * L_TD3(b_on) + (1 - lam_t) * L_TD3+BC(b_off)

   for the critic and (every ``policy_delay`` critic updates) the actor. Methods: hard switch
   (lam = 1: online losses only, from the offline agent; D is never read), loss smoothing (a ramp),
   online TD3 from scratch (a fresh agent, lam = 1), and constant 50/50 batch mixing (lam = 0.5 with
   TD3's losses on both batches: ``source_bc: false``; equal batch sizes make it exactly TD3 on a
   half-offline, half-online batch).

D is held once and shared by every run (the engine's unbatched ``data``), so memory does not grow
with the number of runs. Evaluation: the deterministic policy's mean return on the task, and its
normalized score 100 (R - R_random) / (R_expert - R_random) with the dataset's references.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import jax
import jax.numpy as jnp
import numpy as np

from lossmooth.core import engine
from lossmooth.errors import ConfigError
from lossmooth.offline import datasets as D
from lossmooth.offline import scores
from lossmooth.offline.collect import DEFAULT_ROOT, dataset_id
from lossmooth.rl import envs
from lossmooth.settings import common
from lossmooth.settings import online_rl as R
from lossmooth.settings.common import _float, _int

SWEEPABLE = ("T", "lam0", "value")
DATASET_KINDS = ("own", "minari", "d4rl")
ENV_KINDS = ("brax", "gymnasium")
TD3_FIELDS = {"hidden_layer_sizes", "activation", "batch_size", "policy_delay", "target_noise",
              "target_noise_clip", "tau", "gamma", "learning_rate", "max_grad_norm", "exploration_noise",
              "num_envs", "num_epochs", "buffer_size", "fill_buffer"}


@dataclass(frozen=True)
class Spec:
    num_seeds: int
    seed: int
    task: str
    backend: str
    episode_length: int
    dataset: dict  # kind, id / path, root, ref_scores
    algos: dict  # {"td3": rejax TD3 fields}
    bc_alpha: float
    offline_iterations: int
    offline_eval_every: int
    adapt_timesteps: dict  # {"td3": online env steps}
    eval_every: dict
    eval_episodes: int
    reset_optimizer: bool
    methods: dict
    inits: dict
    source_bc: dict  # method -> use TD3+BC on the offline batch (False: TD3's losses, batch mixing)
    sweep: dict
    gap_window: int
    env_kind: str = "brax"  # brax (the whole loop in JAX) | gymnasium (environments stepped on the host)
    env_kwargs: dict = field(default_factory=dict)
    max_episode_steps: int | None = None
    bc_decay: dict = field(default_factory=dict)  # method -> updates over which the BC weight decays (0: none)
    shift: envs.TaskShift = envs.TaskShift()


def parse(cfg: dict) -> Spec:
    """Validate the composed config (one line naming the field on any problem)."""
    s = cfg["setting"]
    task = dict(cfg.get("task") or {})
    kind = task.get("kind", "brax")
    if kind not in ENV_KINDS:
        raise ConfigError(f"task.kind: unknown environment kind '{kind}'; choose one of {', '.join(ENV_KINDS)}")
    if kind == "brax":
        if task.get("name") not in envs.TASKS:
            raise ConfigError(f"task.name: unknown task '{task.get('name')}'; choose one of {', '.join(envs.TASKS)}")
        if task.get("backend") not in envs.BACKENDS:
            raise ConfigError(f"task.backend: unknown brax backend '{task.get('backend')}'; choose one of "
                              f"{', '.join(envs.BACKENDS)}")
    else:
        if task.get("id") is not None and not (isinstance(task["id"], str) and task["id"]):
            raise ConfigError(f"task.id: must be a gymnasium environment id or null, got {task['id']!r}")
        if not isinstance(task.get("kwargs") or {}, dict):
            raise ConfigError(f"task.kwargs: must be a mapping of the environment's arguments, got {task['kwargs']!r}")
        if task.get("max_episode_steps") is not None:
            _int(task, "max_episode_steps", 1, "task.max_episode_steps")
    ds = dict(cfg.get("dataset") or {})
    if ds.get("kind") not in DATASET_KINDS:
        raise ConfigError(f"dataset.kind: unknown dataset source '{ds.get('kind')}'; choose one of "
                          f"{', '.join(DATASET_KINDS)}")
    if ds["kind"] == "d4rl" and not (ds.get("path") or (ds.get("dir") and ds.get("name"))):
        raise ConfigError("dataset.path: a D4RL dataset needs dataset.path (or dataset.dir and dataset.name), "
                          "e.g. dataset.path=/data/d4rl/hopper_medium-v2.hdf5")
    if ds["kind"] == "minari" and not ds.get("id"):
        raise ConfigError("dataset.id: a Minari dataset needs its id, e.g. dataset.id=mujoco/hopper/medium-v0")
    if ds["kind"] == "own" and not ds.get("quality"):
        raise ConfigError("dataset.quality: pick one of random, medium, medium_replay, expert, medium_expert")
    if ds["kind"] == "own" and kind != "brax":
        raise ConfigError("dataset.kind: our own datasets are collected on brax tasks; with task.kind=gymnasium "
                          "use a Minari (dataset=minari) or D4RL (dataset=d4rl) dataset")
    if kind == "gymnasium" and task.get("id") is None and ds["kind"] != "minari":
        raise ConfigError("task.id: a gymnasium task needs its id (e.g. task.id=Hopper-v5); only a Minari "
                          "dataset records its own environment")
    if ds.get("ref_scores") is not None:
        r = ds["ref_scores"]
        if not (isinstance(r, (list, tuple)) and len(r) == 2 and all(isinstance(x, (int, float)) for x in r)
                and r[1] > r[0]):
            raise ConfigError(f"dataset.ref_scores: must be [random, expert] returns with expert > random, got {r!r}")
    td3 = dict(cfg.get("td3") or {})
    extra = set(td3) - TD3_FIELDS - {"alpha"}
    if extra:
        raise ConfigError(f"td3: unknown field(s) {sorted(extra)}; allowed: {sorted(TD3_FIELDS | {'alpha'})}")
    alpha = _float(td3, "alpha", 0.0, field="td3.alpha", lo_open=True)
    for k in ("batch_size", "policy_delay", "num_envs", "num_epochs", "buffer_size", "fill_buffer"):
        _int(td3, k, 1, f"td3.{k}")
    for k in ("target_noise", "target_noise_clip", "exploration_noise", "max_grad_norm"):
        _float(td3, k, 0.0, field=f"td3.{k}")
    _float(td3, "tau", 0.0, 1.0, field="td3.tau")
    _float(td3, "gamma", 0.0, 1.0, field="td3.gamma")
    _float(td3, "learning_rate", 0.0, field="td3.learning_rate", lo_open=True)
    sizes = td3.get("hidden_layer_sizes")
    if not (isinstance(sizes, (list, tuple)) and sizes and all(isinstance(h, int) and h > 0 for h in sizes)):
        raise ConfigError(f"td3.hidden_layer_sizes: must be a list of positive integers, got {sizes!r}")
    if td3["batch_size"] > td3["buffer_size"]:
        raise ConfigError("td3.batch_size: larger than td3.buffer_size")
    rejax = {k: v for k, v in td3.items() if k not in ("alpha", "tau", "hidden_layer_sizes", "activation")}
    rejax.update(polyak=1.0 - float(td3["tau"]), target_update_freq=1, normalize_observations=True,
                 actor_kwargs={"activation": td3.get("activation", "relu"), "hidden_layer_sizes": list(sizes)},
                 critic_kwargs={"activation": td3.get("activation", "relu"), "hidden_layer_sizes": list(sizes)})
    off = cfg.get("offline") or {}
    on = cfg.get("online") or {}
    methods = common.parse_methods(cfg.get("method"), allow_scratch=True)
    source_bc = {}
    for name, m in methods.items():
        if m.reg != "none":
            raise ConfigError(f"method.{name}.reg: regularizer '{m.reg}' is a supervised-setting method; "
                              "offline-to-online compares hard_switch, loss_smoothing, scratch and batch_mix")
        bc = (cfg["method"][name] or {}).get("source_bc", True)
        if not isinstance(bc, bool):
            raise ConfigError(f"method.{name}.source_bc: must be true or false, got {bc!r}")
        source_bc[name] = bc
    sweep = common.parse_sweep(cfg, SWEEPABLE)
    reset = cfg.get("reset_optimizer", False)
    if not isinstance(reset, bool):
        raise ConfigError(f"reset_optimizer: must be true or false, got {reset!r}")
    bc_decay = {}
    for name in methods:
        d = (cfg["method"][name] or {}).get("bc_decay_updates", 0)
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise ConfigError(f"method.{name}.bc_decay_updates: must be an integer >= 0 (0: no decay), got {d!r}")
        bc_decay[name] = d
    gym = kind == "gymnasium"
    return Spec(
        num_seeds=_int(cfg, "num_seeds", 1), seed=_int(cfg, "seed", 0),
        task=task.get("id") or "" if gym else task["name"], env_kind=kind,
        env_kwargs=dict(task.get("kwargs") or {}) if gym else {},
        max_episode_steps=task.get("max_episode_steps") if gym else None,
        backend=task.get("backend", ""),
        episode_length=_int(task, "episode_length", 1, "task.episode_length") if not gym else 0,
        dataset=ds, algos={"td3": rejax}, bc_alpha=alpha,
        offline_iterations=_int(off, "iterations", 1, "offline.iterations"),
        offline_eval_every=_int(off, "eval_every", 1, "offline.eval_every"),
        adapt_timesteps={"td3": _int(on, "timesteps", 1, "online.timesteps")},
        eval_every={"td3": _int(on, "eval_every", 1, "online.eval_every")},
        eval_episodes=_int(cfg, "eval_episodes", 1), reset_optimizer=reset, methods=methods,
        inits=common.method_inits(cfg.get("method")), source_bc=source_bc, bc_decay=bc_decay, sweep=sweep,
        gap_window=_int(s, "gap_window", 1, "setting.gap_window"))


# ----------------------------------------------------------------------------- data


def load_dataset(spec: Spec) -> D.Transitions:
    """The offline dataset of ``spec`` with its (random, expert) reference returns."""
    ds = spec.dataset
    if ds["kind"] == "own":
        did = dataset_id(spec.task, ds["quality"])
        root = ds.get("root") or DEFAULT_ROOT
        if did not in _local_minari(root):
            raise ConfigError(f"dataset: our {ds['quality']} dataset for {spec.task} ('{did}') is not in "
                              f"{root}; prepare it with `lossmooth data collect task={spec.task}`")
        t = D.load_minari(did, root)
    elif ds["kind"] == "minari":
        t = D.load_minari(ds["id"], ds.get("root"))
    else:
        path = ds.get("path") or os.path.join(ds["dir"], ds["name"] + ".hdf5")
        t = D.load_d4rl(path, ds.get("name"))
    ref = ds.get("ref_scores")
    if ref is not None:
        ref = (float(ref[0]), float(ref[1]))
    elif ds["kind"] == "d4rl":
        ref = scores.d4rl_reference(t.name)  # D4RL's constants only for D4RL's own datasets
    else:
        ref = t.ref_scores
    if ref is None:
        raise ConfigError(f"dataset.ref_scores: '{t.name}' carries no reference returns; set "
                          "dataset.ref_scores=[random,expert]")
    return replace(t, ref_scores=ref)


def _local_minari(root: str) -> list[str]:
    import minari

    with D._minari_root(root):
        try:
            return list(minari.list_local_datasets())
        except Exception:
            return []


# ----------------------------------------------------------------------------- agents


def env_spec(spec: Spec, data: D.Transitions):
    """The gymnasium environment of a ``task.kind=gymnasium`` run: ``task.id`` (our short names map to
    MuJoCo v5), else the one the Minari dataset records, with its kwargs."""
    from lossmooth.rl.gym_envs import EnvSpec, resolve_id

    if spec.task:
        return EnvSpec(resolve_id(spec.task), spec.env_kwargs, spec.max_episode_steps)
    env_id = data.info.get("env_id")
    if not env_id:
        raise ConfigError(f"task.id: dataset '{data.name}' records no environment; set task.id (e.g. Hopper-v5)")
    return EnvSpec(env_id, {**data.info.get("env_kwargs", {}), **spec.env_kwargs},
                   spec.max_episode_steps or data.info.get("max_episode_steps"))


def env_name(spec: Spec, data: D.Transitions) -> str:
    if spec.env_kind == "brax":
        return f"brax {spec.task} ({spec.backend})"
    e = env_spec(spec, data)
    return f"gymnasium {e.env_id}" + (f" {e.kwargs}" if e.kwargs else "")


def build_agents(spec: Spec, data: D.Transitions) -> R.Agents:
    """The TD3 agent (one object for both phases: TD3+BC offline, smoothed TD3 online) on the task:
    brax with the whole loop compiled, or gymnasium stepped on the host (:mod:`lossmooth.rl.host_loop`)."""
    from lossmooth.rl.td3 import SmoothedTD3

    host = None
    if spec.env_kind == "brax":
        env, params = envs.make_env(spec.task, spec.backend, spec.episode_length)
    else:
        from lossmooth.rl.host_loop import HostRunner, SpacesEnv

        es = env_spec(spec, data)
        probe = es.probe()
        env = SpacesEnv(probe["obs_dim"], probe["low"], probe["high"], probe["max_episode_steps"])
        params = env.default_params
        host = HostRunner(es, spec.eval_episodes, probe["max_episode_steps"])
    obs_dim = int(np.prod(env.observation_space(params).shape))
    act_dim = int(np.prod(env.action_space(params).shape))
    D.check_matches(data, obs_dim, act_dim, env_name(spec, data))
    import warnings

    runs = expand_runs(spec)
    target_bc = any(float(r["algo_fields"]["target_bc_alpha"]) > 0 for r in runs)
    with warnings.catch_warnings():  # rejax deep-copies its config; brax envs are shallow-copied
        warnings.filterwarnings("ignore", message=".*deepcopy.*", category=RuntimeWarning)
        algo = SmoothedTD3.create(env=env, env_params=params, source_env=env, freeze_obs_rms=True,
                                  target_bc=target_bc, **spec.algos["td3"]).replace(
            source_bc_alpha=jnp.asarray(spec.bc_alpha))
    eval_runs = max([spec.num_seeds] + [len(g) for g in common.groups_of(runs)])
    spi = algo.num_envs * algo.policy_delay
    agents = R.Agents("td3", algo, algo, env, env, params, spi, spec.eval_episodes, eval_runs,
                      eval_tasks=("target",), source_data="source_buffer", host=host)
    if host is None:
        agents.eval_prog = engine.make_eval(R.make_eval_fn(agents, agents.eval_tasks))
    return agents


def dataset_buffer(data: D.Transitions):
    """D as a replay buffer (raw observations; batches are normalized with the frozen statistics)."""
    return D.as_replay_buffer(data)


def placeholder_buffer(data: D.Transitions):
    """A one-transition stand-in kept in each run's state where D itself is shared (see
    :func:`lossmooth.settings.online_rl.with_shared_source`)."""
    one = D.transitions(data.observations[:1], data.actions[:1], data.rewards[:1],
                        data.next_observations[:1], data.terminals[:1], data.timeouts[:1])
    return D.as_replay_buffer(one)


def offline_init(agents: R.Agents, spec: Spec, data: D.Transitions):
    """Per seed: a fresh agent with the observation normalizer set to D's statistics (frozen)."""
    mean, std = data.state_stats()
    mean, var = jnp.asarray(mean), jnp.asarray(std.astype(np.float64) ** 2 - 1e-8, jnp.float32)
    ph = placeholder_buffer(data)
    algo = agents.adapt

    def one(key):
        ts = algo.init_state(key)
        return ts.replace(source_buffer=ph, obs_rms_state=ts.obs_rms_state.replace(mean=mean, var=var))

    return jax.jit(jax.vmap(one))(R.seed_keys(spec, "td3"))


def offline_chunk(agents: R.Agents, iterations_per_eval: int, mesh=None):
    def step(ts, algo, data):
        return R.with_shared_source(ts, data, algo.offline_iteration), {}

    return R.with_eval(engine.make_chunk(step, lambda ts, algo, data: {}, iterations_per_eval, 1), agents, mesh)


def offline_chunking(spec: Spec) -> tuple[int, int]:
    every = min(spec.offline_eval_every, spec.offline_iterations)
    return every, max(1, -(-spec.offline_iterations // every))


def train_offline(agents: R.Agents, spec: Spec, data: D.Transitions, buffer, mesh=None, callbacks=(),
                  checkpoints=None):
    """TD3+BC for every seed; returns the state and metrics [seeds, evals] (step 0 = before training).
    ``checkpoints``: resume and save at chunk boundaries (:func:`engine.run_loop`)."""
    n = spec.num_seeds
    state = offline_init(agents, spec, data)
    hp = engine.stack_runs([agents.adapt] * n)
    n_pad = engine.padded_size(n, 1 if mesh is None else mesh.size)
    state, hp = engine.pad_runs(state, n, n_pad), engine.pad_runs(hp, n, n_pad)
    state, hp = engine.shard_runs(state, mesh), engine.shard_runs(hp, mesh)
    every, n_chunks = offline_chunking(spec)
    chunk = offline_chunk(agents, every, mesh)
    engine.compile_ahead(chunk.train, state, hp, buffer)  # while the evaluation compiles
    at_start = jax.device_get(R.evaluate(agents, state, mesh))
    res = engine.run_loop(chunk, state, hp, buffer, n_chunks, callbacks, checkpoints=checkpoints, tag="offline")
    metrics = {k: np.concatenate([np.asarray(at_start[k])[:n, None], v[:n]], axis=1) for k, v in res.metrics.items()}
    return jax.tree.map(lambda x: x[:n], res.state), metrics


def expand_runs(spec: Spec) -> list[dict]:
    runs = common.expand_runs(spec.methods, spec.sweep, spec.num_seeds, spec.seed, inits=spec.inits)
    for r in runs:
        bc = spec.source_bc.get(r["name"], True)
        decay = spec.bc_decay.get(r["name"], 0)
        r["algo_fields"] = {"source_bc_alpha": jnp.asarray(spec.bc_alpha if bc else 0.0, jnp.float32),
                            # the BC-decay control: TD3+BC's actor loss on the online half too
                            "target_bc_alpha": jnp.asarray(spec.bc_alpha if decay else 0.0, jnp.float32),
                            "bc_decay_updates": jnp.asarray(decay, jnp.float32)}
        if not bc:
            r["hparams"] = {**r["hparams"], "source_loss": "td3"}
        if decay:
            r["hparams"] = {**r["hparams"], "bc_decay_updates": decay}
    return runs
