"""The offline-to-online setting's config (``conf/setting/offline_to_online.yaml`` with the ``task``,
``dataset`` and ``method`` groups and TD3+BC's numbers under ``td3``), validated into a :class:`Spec`:
each field's type and bounds from the schema (``schema.py``), then the rules that involve several fields.

Budget keys, shared by name with every setting: ``setting.source_steps`` (offline gradient updates:
critic updates, ``td3.policy_delay`` of them per TD3+BC round) with ``setting.source_eval_every``
(offline updates between evaluations), ``setting.adapt_steps``, ``setting.eval_every`` and
``setting.gap_window`` (online *environment steps*), ``setting.smoothing_T`` (gradient updates after
the switch, as everywhere), ``setting.reset_optimizer`` and ``setting.eval_episodes``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from lossmooth.core.config import integer, method_inits, parse_methods, parse_sweep, validate
from lossmooth import settings
from lossmooth.errors import ConfigError
from lossmooth.settings.contract import RunSpec
from lossmooth.settings.offline_to_online.schema import TD3, OfflineToOnlineSetting
from lossmooth.rl import envs

SWEEPABLE = ("T", "lam0", "value")
DATASET_KINDS = ("own", "minari", "d4rl")
ENV_KINDS = ("brax", "gymnasium")


@dataclass(frozen=True, kw_only=True)  # (RunSpec's fields have defaults)
class Spec(RunSpec):
    task: str
    backend: str
    episode_length: int
    dataset: dict  # kind, id / path, root, ref_scores
    algos: dict  # {"td3": rejax TD3 fields}
    bc_alpha: float
    source_steps: int  # offline gradient updates (critic updates; policy_delay of them per TD3+BC round)
    source_eval_every: int  # offline updates between evaluations
    adapt_steps: dict  # {"td3": online env steps}
    eval_every: dict  # {"td3": online env steps between evaluations}
    eval_episodes: int
    reset_optimizer: bool
    inits: dict
    source_bc: dict  # method -> use TD3+BC on the offline batch (False: TD3's losses, batch mixing)
    env_kind: str = "brax"  # brax (the whole loop in JAX) | gymnasium (environments stepped on the host)
    env_kwargs: dict = field(default_factory=dict)
    max_episode_steps: int | None = None
    bc_decay: dict = field(default_factory=dict)  # method -> updates over which the BC weight decays (0: none)
    shift: envs.TaskShift = envs.TaskShift()


def _task(cfg: dict) -> tuple[dict, str]:
    """The ``task`` node and its environment kind (brax: a known task and backend; gymnasium: an id,
    keyword arguments and an episode limit of the right types)."""
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
            integer(task, "max_episode_steps", 1, "task.max_episode_steps")
    return task, kind


def _dataset(cfg: dict, task: dict, kind: str) -> dict:
    """The ``dataset`` node: a known source with what it needs, matching the task's environment kind."""
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
    return ds


def _td3(cfg: dict) -> tuple[dict, dict, float]:
    """The ``td3`` node checked against its schema, its rejax fields (polyak = 1 - tau, the networks'
    sizes and activation) and the behaviour-cloning weight alpha."""
    td3 = dict(cfg.get("td3") or {})
    known = [f.name for f in dataclasses.fields(TD3)]
    if set(td3) - set(known):
        raise ConfigError(f"td3: unknown field(s) {sorted(set(td3) - set(known))}; allowed: {sorted(known)}")
    alpha = validate(td3, TD3, "td3")["alpha"]  # each field's type and bounds (schema.py)
    sizes = td3["hidden_layer_sizes"]
    if td3["batch_size"] > td3["buffer_size"]:
        raise ConfigError("td3.batch_size: larger than td3.buffer_size")
    rejax = {k: v for k, v in td3.items() if k not in ("alpha", "tau", "hidden_layer_sizes", "activation")}
    rejax.update(polyak=1.0 - float(td3["tau"]), target_update_freq=1, normalize_observations=True,
                 actor_kwargs={"activation": td3.get("activation", "relu"), "hidden_layer_sizes": list(sizes)},
                 critic_kwargs={"activation": td3.get("activation", "relu"), "hidden_layer_sizes": list(sizes)})
    return td3, rejax, alpha


def _method_fields(cfg: dict, methods: dict) -> tuple[dict, dict]:
    """Per method: whether its source batches keep the BC term (``source_bc``) and over how many online
    updates that term decays to 0 (``bc_decay_updates``; 0: no decay)."""
    source_bc, bc_decay = {}, {}
    for name in methods:
        bc = (cfg["method"][name] or {}).get("source_bc", True)
        if not isinstance(bc, bool):
            raise ConfigError(f"method.{name}.source_bc: must be true or false, got {bc!r}")
        source_bc[name] = bc
    for name in methods:
        d = (cfg["method"][name] or {}).get("bc_decay_updates", 0)
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise ConfigError(f"method.{name}.bc_decay_updates: must be an integer >= 0 (0: no decay), got {d!r}")
        bc_decay[name] = d
    return source_bc, bc_decay


def parse(cfg: dict) -> Spec:
    """Validate the composed config (one line naming the field on any problem)."""
    s = cfg["setting"]
    task, kind = _task(cfg)
    ds = _dataset(cfg, task, kind)
    td3, rejax, alpha = _td3(cfg)
    methods = parse_methods(cfg.get("method"), offers=settings.get(s["name"]))
    sweep = parse_sweep(cfg, SWEEPABLE)
    fields = validate(s, OfflineToOnlineSetting, "setting")  # each field's type and bounds (schema.py)
    source_steps, source_every = fields["source_steps"], fields["source_eval_every"]
    for key, v in (("source_steps", source_steps), ("source_eval_every", source_every)):
        if v % td3["policy_delay"]:
            raise ConfigError(f"setting.{key}: {v} offline updates is not a whole number of TD3+BC rounds of "
                              f"td3.policy_delay={td3['policy_delay']} critic updates; make it a multiple")
    source_bc, bc_decay = _method_fields(cfg, methods)
    gym = kind == "gymnasium"
    return Spec(
        num_seeds=integer(cfg, "num_seeds", 1), seed=integer(cfg, "seed", 0),
        task=task.get("id") or "" if gym else task["name"], env_kind=kind,
        env_kwargs=dict(task.get("kwargs") or {}) if gym else {},
        max_episode_steps=task.get("max_episode_steps") if gym else None,
        backend=task.get("backend", ""),
        episode_length=integer(task, "episode_length", 1, "task.episode_length") if not gym else 0,
        dataset=ds, algos={"td3": rejax}, bc_alpha=alpha,
        source_steps=source_steps, source_eval_every=source_every,
        adapt_steps={"td3": fields["adapt_steps"]}, eval_every={"td3": fields["eval_every"]},
        eval_episodes=fields["eval_episodes"], reset_optimizer=fields["reset_optimizer"],
        methods=methods, inits=method_inits(cfg.get("method")), source_bc=source_bc, bc_decay=bc_decay,
        sweep=sweep, gap_window=fields["gap_window"])
