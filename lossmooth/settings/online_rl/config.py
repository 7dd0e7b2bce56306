"""The online RL setting's config (``conf/setting/online_rl.yaml`` with the ``algo``, ``task``,
``shift``, ``protocol`` and ``budget`` groups), validated into a :class:`Spec`:
each field's type and bounds from the schema (``schema.py``), then the rules that involve several fields.

Budget keys, shared by name with every setting, count *environment steps* here (of the source task in
the source phase, of the target task after the switch): ``setting.source_steps``,
``setting.adapt_steps``, ``setting.eval_every`` and ``setting.gap_window``; ``setting.smoothing_T``
counts gradient updates after the switch, as in every setting. ``budget.<algo>`` may set an
algorithm's own ``source_steps`` / ``adapt_steps`` / ``eval_every`` and any rejax field on top of
rejax's preset; a null step count is the preset's ``total_timesteps`` (``eval_every``: its
``eval_freq``). ``setting.reset_optimizer``: fresh optimizer states at the switch.
"""
from __future__ import annotations

from dataclasses import dataclass

from lossmooth.core.config import integer, method_inits, parse_methods, parse_sequence, parse_sweep, validate
from lossmooth import settings
from lossmooth.errors import ConfigError
from lossmooth.settings.contract import RunSpec
from lossmooth.settings.online_rl.schema import OnlineRLSetting
from lossmooth.rl import envs, presets

ALGOS = ("td3", "ppo")
PROTOCOLS = ("task_shift",)
SWEEPABLE = ("T", "lam0", "value")
BUDGET = ("source_steps", "adapt_steps", "eval_every")


@dataclass(frozen=True, kw_only=True)  # (RunSpec's fields have defaults)
class Spec(RunSpec):
    algos: dict  # name -> rejax fields (the preset with the overrides applied)
    task: str
    backend: str | None  # brax's physics backend (None: a gymnax task)
    episode_length: int
    shift: envs.TaskShift
    protocol: str
    reset_optimizer: bool
    inits: dict
    source_steps: dict  # algo -> source-task env steps
    adapt_steps: dict  # algo -> target-task env steps
    eval_every: dict  # algo -> env steps between evaluations
    eval_episodes: int
    # a sequence of switches (config ``sequence``): the shifts of tasks 1..k, task 0 the unshifted task;
    # switch i trains task i with task i - 1 as its source (its replay buffer or its environments)
    sequence: tuple = ()


def _algo(name: str, a: dict | None, tname: str, kind: str, s: dict, budget: dict) -> tuple[dict, int, int, int]:
    """One algorithm's rejax config (its preset for the task, then the config's overrides and the
    budget's rejax fields, each of the preset's type) and its phase lengths (source steps, adaptation
    steps, evaluation period: the budget's, else the setting's, else the preset's)."""
    if name not in ALGOS or (a or {}).get("name", name) not in ALGOS:
        raise ConfigError(f"algo: unknown algorithm '{name}'; choose one of {', '.join(ALGOS)}")
    preset = presets.load(name, tname, s.get("presets_dir"), family=kind)
    preset.pop("env", None)
    over = dict((a or {}).get("overrides") or {})
    per_algo = dict(budget.get(name) or {})  # rejax fields, and this algorithm's own phase lengths
    b = {k: per_algo.pop(k, s.get(k)) for k in BUDGET}
    over.update(per_algo)
    for k, v in over.items():
        if k in ("env", "env_params"):
            raise ConfigError(f"budget.{name}.{k}: set the task with task=... / task.backend=...")
        ref = preset.get(k)
        if isinstance(ref, bool) and not isinstance(v, bool):
            raise ConfigError(f"budget.{name}.{k}: must be true or false, got {v!r}")
        if isinstance(ref, int) and not isinstance(ref, bool):
            integer({k: v}, k, 1, f"budget.{name}.{k}")
        if isinstance(ref, float) and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ConfigError(f"budget.{name}.{k}: must be a number, got {v!r}")
    preset.update(over)
    src = preset["total_timesteps"] if b["source_steps"] is None else b["source_steps"]
    ad = preset["total_timesteps"] if b["adapt_steps"] is None else b["adapt_steps"]
    every = preset.get("eval_freq", 4096) if b["eval_every"] is None else b["eval_every"]
    for key, d in (("source_steps", src), ("adapt_steps", ad), ("eval_every", every)):
        integer({key: d}, key, 1, f"setting.{key}")
    if name == "ppo" and (preset["num_envs"] * preset["num_steps"]) % preset["num_minibatches"]:
        raise ConfigError(f"budget.ppo.num_minibatches: {preset['num_minibatches']} does not divide a rollout "
                          f"of num_envs x num_steps = {preset['num_envs'] * preset['num_steps']} transitions")
    return preset, src, ad, every


def parse(cfg: dict) -> Spec:
    """Validate the composed config (one line naming the field on any problem)."""
    s = cfg["setting"]
    num_seeds = integer(cfg, "num_seeds", 1)
    seed = integer(cfg, "seed", 0)
    task = cfg.get("task") or {}
    tname = task.get("name")
    kind = task.get("kind", "brax")
    if kind not in ("brax", "gymnax"):
        raise ConfigError("task.kind: online RL runs on brax or gymnax tasks (the whole loop in JAX); gymnasium "
                          "tasks are for setting=offline_to_online")
    known = envs.TASKS if kind == "brax" else tuple(envs.GYMNAX_TASKS)
    if tname not in known:
        raise ConfigError(f"task.name: unknown {kind} task '{tname}'; choose one of {', '.join(known)}")
    if kind == "brax" and task.get("backend") not in envs.BACKENDS:
        raise ConfigError(f"task.backend: unknown brax backend '{task.get('backend')}'; choose one of "
                          f"{', '.join(envs.BACKENDS)}")
    episode_length = integer(task, "episode_length", 1, "task.episode_length")
    shift = envs.parse_shift(cfg.get("shift") or {}, tname)
    sequence, _ = parse_sequence(cfg, lambda d: envs.parse_shift(d, tname), replays=("previous",))
    if sequence and shift.name != "none":
        raise ConfigError(f"sequence.shifts: a sequence starts from the unshifted task, but shift={shift.name}; "
                          "set shift=none (the sequence lists every switch's shift)")
    proto = cfg.get("protocol") or {}
    if proto.get("name") not in PROTOCOLS:
        raise ConfigError(f"protocol.name: unknown protocol '{proto.get('name')}'; choose one of "
                          f"{', '.join(PROTOCOLS)}")
    fields = validate(s, OnlineRLSetting, "setting")  # each field's type and bounds (schema.py)
    methods = parse_methods(cfg.get("method"), offers=settings.get(s["name"]))
    sweep = parse_sweep(cfg, SWEEPABLE)
    algo_cfg = cfg.get("algo") or {}
    if not algo_cfg:
        raise ConfigError("algo: no algorithm selected; pick some, e.g. algo=[td3,ppo]")
    budget = cfg.get("budget") or {}
    algos, src, ad, every = {}, {}, {}, {}
    for name, a in algo_cfg.items():
        algos[name], src[name], ad[name], every[name] = _algo(name, a, tname, kind, s, budget)
    return Spec(
        num_seeds=num_seeds, seed=seed, algos=algos, task=tname, backend=task.get("backend") if kind == "brax" else None,
        episode_length=episode_length, shift=shift, protocol=proto["name"], reset_optimizer=fields["reset_optimizer"],
        methods=methods, inits=method_inits(cfg.get("method")), sweep=sweep,
        source_steps=src, adapt_steps=ad, eval_every=every,
        eval_episodes=fields["eval_episodes"], sequence=sequence, gap_window=fields["gap_window"])
