"""Reading a composed config: the field checks every setting (and ``lossmooth data collect``) uses,
and the methods of ``conf/method`` and the numbers of ``sweep`` as the core's objects.

Every check raises :class:`~lossmooth.errors.ConfigError` with one line naming the dotted field and
what it takes, so bad input stops before any data is read or any file is written.

>>> integer({"steps": 10}, "steps", lo=1, field="setting.steps")
10
>>> number({"lr": 0}, "lr", lo=0.0, lo_open=True, field="setting.lr")
Traceback (most recent call last):
...
lossmooth.errors.ConfigError: setting.lr: must be in (0.0, inf], got 0
"""
from __future__ import annotations

import dataclasses
import typing

import numpy as np

from lossmooth.core.objective import Method
from lossmooth.core.schedules import ADAPTIVE, ADAPTIVE_NUMBERS, Schedule
from lossmooth.errors import ConfigError

INITS = ("switch", "scratch")
SCHEDULE_FIELDS = ("T", "lam0", "value", "sharpness", "stairs", *ADAPTIVE_NUMBERS)


def integer(section: dict, key: str, lo: int = 0, field: str | None = None) -> int:
    """``section[key]`` as an integer >= ``lo`` (a float with an integer value is accepted; NaN and
    infinity are not)."""
    v = section.get(key)
    field = field or key
    if (isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(float(v)) or float(v) != int(v)
            or int(v) < lo):
        raise ConfigError(f"{field}: must be an integer >= {lo}, got {v!r}")
    return int(v)


def optional_integer(section: dict, key: str, lo: int = 1, field: str | None = None) -> int | None:
    """:func:`integer`, or None where the value is null."""
    return None if section.get(key) is None else integer(section, key, lo, field)


def number(section: dict, key: str, lo: float | None = None, hi: float | None = None,
           field: str | None = None, lo_open: bool = False) -> float:
    """``section[key]`` as a finite float in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    v = section.get(key)
    field = field or key
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
        raise ConfigError(f"{field}: must be a number, got {v!r}")
    if (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and v > hi):
        rng = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}]"
        raise ConfigError(f"{field}: must be in {rng}, got {v!r}")
    return float(v)


def flag(section: dict, key: str, field: str | None = None, default=None) -> bool:
    """``section[key]`` as true or false (``default`` where the key is absent)."""
    v = section.get(key, default)
    if not isinstance(v, bool):
        raise ConfigError(f"{field or key}: must be true or false, got {v!r}")
    return v


def choice(section: dict, key: str, allowed: tuple, field: str | None = None):
    """``section[key]``, one of ``allowed``."""
    v = section.get(key)
    if v not in allowed:
        raise ConfigError(f"{field or key}: unknown value {v!r}; choose one of {', '.join(map(str, allowed))}")
    return v


def bounded(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, choices: tuple = (),
            doc: str = ""):
    """A field of a config schema (a dataclass whose annotations are the field's type: ``int``,
    ``float``, ``bool``, ``str``, ``list[int]``, ``X | None``) with what :func:`validate` checks beyond
    the type: ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``; for ``list[int]``, every entry >= ``lo``),
    ``choices``; ``doc`` says what the field is (its ``# assumed:`` reason, where the paper gives no
    value, stays beside the value in ``conf/``, where each run's metadata reads it)."""
    return dataclasses.field(metadata={"lo": lo, "hi": hi, "lo_open": lo_open, "choices": tuple(choices), "doc": doc})


def validate(section: dict, schema, prefix: str) -> dict:
    """``section`` (a config node) checked against ``schema`` (a dataclass of :func:`bounded` fields)
    field by field, in the schema's order: ``{field: value}``, integers as ``int`` and numbers as
    ``float``; the first bad field is one :class:`ConfigError` line naming ``<prefix>.<field>``.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class S:
    ...     steps: int = bounded(1)
    ...     lr: float = bounded(0.0, lo_open=True)
    >>> validate({"steps": 10, "lr": 1}, S, "setting")
    {'steps': 10, 'lr': 1.0}
    >>> validate({"steps": 2.5, "lr": 1}, S, "setting")
    Traceback (most recent call last):
    ...
    lossmooth.errors.ConfigError: setting.steps: must be an integer >= 1, got 2.5
    """
    hints = typing.get_type_hints(schema)
    return {f.name: check(section, f.name, hints[f.name], f.metadata, f"{prefix}.{f.name}")
            for f in dataclasses.fields(schema)}


def check(section: dict, key: str, kind, meta: dict, field: str):
    """``section[key]`` checked as the schema type ``kind`` with :func:`bounded`'s ``meta``."""
    args = typing.get_args(kind)
    if type(None) in args:  # ``X | None``: null, or an X
        if section.get(key) is None:
            return None
        kind = next(a for a in args if a is not type(None))
    if meta.get("choices"):
        return choice(section, key, meta["choices"], field)
    if kind is bool:
        return flag(section, key, field)
    if kind is int:
        return integer(section, key, meta.get("lo") or 0, field)
    if kind is float:
        return number(section, key, meta.get("lo"), meta.get("hi"), field, lo_open=meta.get("lo_open", False))
    v = section.get(key)
    if kind is str:
        if not isinstance(v, str):
            raise ConfigError(f"{field}: must be a string, got {v!r}")
        return v
    if typing.get_origin(kind) is list and typing.get_args(kind) == (int,):
        lo = meta.get("lo") or 0
        if not (isinstance(v, (list, tuple)) and v
                and all(isinstance(x, int) and not isinstance(x, bool) and x >= lo for x in v)):
            raise ConfigError(f"{field}: must be a non-empty list of integers >= {lo}, got {v!r}")
        return list(v)
    raise TypeError(f"{field}: schema type {kind!r} is not one validate() reads")  # a programming error


def schema_node(schema) -> dict:
    """The keys of ``schema`` as a config node of missing values (``???``), in the schema's order: what
    Hydra's ConfigStore holds for it, so a key no schema field names is refused (struct mode) and a
    field no config file sets fails when composed. Values keep the type the YAML gives them (OmegaConf's
    own typing would turn a ``1`` into ``1.0``, changing a run's identity, and answer in its own
    words): :func:`validate` checks the types."""
    return {f.name: "???" for f in dataclasses.fields(schema)}


def writable_folder(path, field: str, what: str = "") -> None:
    """``path`` is a folder that takes files, or (while it does not exist yet) its nearest existing
    parent is: probed by creating and removing a file there, so nothing is created before the config
    is validated and a folder no process may write (``/proc``, a read-only mount) is refused even for root."""
    import errno
    import os
    import tempfile

    if not isinstance(path, str) or not path:
        raise ConfigError(f"{field}: must be a folder path, got {path!r}")
    where = os.path.abspath(os.path.expanduser(path))
    while not os.path.exists(where) and os.path.dirname(where) != where:
        where = os.path.dirname(where)
    try:
        if not os.path.isdir(where):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        fd, probe = tempfile.mkstemp(dir=where, prefix=".lossmooth-write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{field}: cannot write {what + ' ' if what else ''}to '{path}' ({e.strerror or e}); "
                          f"point {field} at a writable folder") from None


# the method families a setting may offer (its ``Setting.capabilities``) beyond the fixed schedules
# (hard switch, ramps, constant mixes): a pull to the switch point, schedules that read the run's
# losses, LP-FT's linear probe, adaptation from a fresh model, TD3+BC's offline batch options; each
# with the method fields that ask for it
FAMILIES = {
    "regularizers": "reg: l2 | kl, as in l2_init, kl_init",
    "adaptive_schedules": "schedule.kind: guard | progress, as in source_guard, progress_ramp",
    "linear_probe": "probe_steps > 0, as in lp_ft",
    "scratch": "init: scratch, as in scratch",
    "offline_batches": "source_bc: false or bc_decay_updates > 0, as in batch_mix, bc_decay",
}


def families(m: dict) -> list[str]:
    """The families of :data:`FAMILIES` one method's config (``conf/method/<name>.yaml``) asks for."""
    sched = m.get("schedule") or {}
    wants = {"regularizers": m.get("reg", "none") != "none",
             "adaptive_schedules": sched.get("kind") in ADAPTIVE,
             "linear_probe": bool(m.get("probe_steps", 0)),
             "scratch": m.get("init", "switch") == "scratch",
             "offline_batches": m.get("source_bc", True) is False or bool(m.get("bc_decay_updates", 0))}
    return [f for f, wanted in wants.items() if wanted]


def parse_methods(methods_cfg, offers=None) -> dict:
    """``{name: {schedule: {...}, reg, reg_coef, init, probe_steps}}`` -> ``{name: Method}`` (validated).

    ``offers``: the setting (its ``name`` and ``capabilities``, the families of :data:`FAMILIES` it
    offers); a method of a family it does not offer is refused in one line naming the setting and the
    family (None: a setting that offers none of them).
    """
    if not methods_cfg:
        raise ConfigError("method: no method selected; pick some, e.g. method=[hard_switch,loss_smoothing]")
    offered = frozenset(getattr(offers, "capabilities", ()))
    out = {}
    for name, m in methods_cfg.items():
        for family in families(m or {}):
            if family not in offered:
                raise ConfigError(f"method.{name}: the {getattr(offers, 'name', None) or 'chosen'} setting does not offer "
                                  f"{family} ({FAMILIES[family]}); its method families: "
                                  f"{', '.join(sorted(offered)) or 'none beyond the fixed schedules'}")
        sched = dict(m.get("schedule") or {})
        kind = sched.pop("kind", None)
        extra = set(sched) - set(SCHEDULE_FIELDS)
        if extra:
            raise ConfigError(f"method.{name}.schedule: unknown field(s) {sorted(extra)}; "
                              f"allowed: {sorted(SCHEDULE_FIELDS)}")
        init = m.get("init", "switch")
        if init not in INITS:
            raise ConfigError(f"method.{name}.init: unknown value {init!r}; choose one of {', '.join(INITS)}")
        s = Schedule.make(kind, field=f"method.{name}.schedule", **sched)
        out[name] = Method.make(name, s, reg=m.get("reg", "none"), reg_coef=m.get("reg_coef", 0.0),
                                probe_steps=m.get("probe_steps", 0))
    return out


def parse_sweep(cfg: dict, sweepable: tuple) -> dict:
    """``sweep.<name>: [numbers]`` for the numbers a setting vmaps (one line on anything else);
    schedule numbers are checked as a schedule would check them, the others must be positive
    (a learning rate strictly)."""
    if not isinstance(cfg.get("sweep") or {}, dict):
        raise ConfigError(f"sweep: must map numbers to lists of values (e.g. +sweep.T=[50,100]), got "
                          f"{cfg.get('sweep')!r}")
    sweep = {k: v for k, v in dict(cfg.get("sweep") or {}).items()}
    for k, v in sweep.items():
        if k not in sweepable:
            raise ConfigError(f"sweep.{k}: not sweepable here; sweepable: {', '.join(sweepable)}")
        if not isinstance(v, (list, tuple)) or not v:
            raise ConfigError(f"sweep.{k}: must be a non-empty list of numbers, got {v!r}")
        for x in v:
            if k == "T":
                Schedule.make("linear", T=x, field="sweep")
            elif k in ("lam0", "value"):
                Schedule.make("linear", **{k: x}, field="sweep")
            elif k in ADAPTIVE_NUMBERS:
                Schedule.make("guard", T=1, **{k: x}, field="sweep")
            elif (isinstance(x, bool) or not isinstance(x, (int, float)) or not np.isfinite(x) or x < 0
                  or (k == "lr" and x == 0)):
                raise ConfigError(f"sweep.{k}: bad value {x!r}; use finite positive numbers")
    return {k: list(v) for k, v in sweep.items()}


def method_inits(methods_cfg) -> dict:
    """``{name: 'switch' | 'scratch'}``: where each method's adaptation starts from."""
    return {name: (m or {}).get("init", "switch") for name, m in (methods_cfg or {}).items()}


# config keys that were renamed so that every setting names its budget the same way: old -> (new, note)
RENAMED = {
    "setting.steps_per_eval": ("setting.eval_every", "updates between evaluations"),
    "budget.source_timesteps": ("setting.source_steps", "source-task environment steps"),
    "budget.adapt_timesteps": ("setting.adapt_steps", "target-task environment steps"),
    "budget.eval_every": ("setting.eval_every", "environment steps between evaluations"),
    "budget.eval_episodes": ("setting.eval_episodes", "episodes per evaluation"),
    "budget.td3.source_timesteps": ("budget.td3.source_steps", "TD3's own source-task environment steps"),
    "budget.td3.adapt_timesteps": ("budget.td3.adapt_steps", "TD3's own target-task environment steps"),
    "budget.ppo.source_timesteps": ("budget.ppo.source_steps", "PPO's own source-task environment steps"),
    "budget.ppo.adapt_timesteps": ("budget.ppo.adapt_steps", "PPO's own target-task environment steps"),
    "protocol.reset_optimizer": ("setting.reset_optimizer", "fresh optimizer states at the switch"),
    "offline.iterations": ("setting.source_steps", "offline gradient updates: TD3+BC rounds x td3.policy_delay"),
    "offline.eval_every": ("setting.source_eval_every", "offline updates between evaluations: rounds x "
                                                        "td3.policy_delay"),
    "online.timesteps": ("setting.adapt_steps", "online environment steps"),
    "online.eval_every": ("setting.eval_every", "online environment steps between evaluations"),
    "reset_optimizer": ("setting.reset_optimizer", "fresh optimizer states at the switch"),
    "eval_episodes": ("setting.eval_episodes", "episodes per evaluation"),
    "lm_budget.updates": ("setting.adapt_steps", "updates"),
    "lm_budget.steps_per_eval": ("setting.eval_every", "updates between evaluations"),
    "lm_budget.evals_per_chunk": ("setting.evals_per_chunk", "evaluations per compiled chunk"),
    "lm_budget.smoothing_T": ("setting.smoothing_T", "the ramp's length in updates"),
    "lm_budget.gap_window": ("setting.gap_window", "updates after the switch"),
}


def check_renamed(overrides: list[str]) -> None:
    """An override of a renamed key is refused in one line naming the key's new name."""
    for ov in overrides:
        key, sep, value = ov.partition("=")
        key = key.lstrip("+~")
        if key in RENAMED:
            new, note = RENAMED[key]
            raise ConfigError(f"{key}: renamed to {new} ({note}); use {new}" + (f"={value}" if sep else ""))


def dense_eval(cfg: dict, eval_every: int, evals_per_chunk: int) -> tuple[int, int | None]:
    """``(W, size)`` of the config's ``dense_eval``: an evaluation after every one of the first ``W``
    updates of the adaptation (0: none), on the first ``size`` examples of each evaluation set (None:
    all of them). ``W`` covers whole evaluation intervals of the first compiled chunk: a multiple of
    ``eval_every`` and at most ``eval_every * evals_per_chunk``."""
    d = cfg.get("dense_eval")
    if d is None:
        return 0, None
    if not isinstance(d, dict):
        raise ConfigError(f"dense_eval: must be a mapping with steps and size, got {d!r}")
    unknown = sorted(set(d) - {"steps", "size"})
    if unknown:
        raise ConfigError(f"dense_eval.{unknown[0]}: unknown key (dense_eval has steps and size)")
    steps = integer(d, "steps", 0, "dense_eval.steps") if "steps" in d else 0
    size = optional_integer(d, "size", 1, "dense_eval.size")
    most = eval_every * evals_per_chunk
    if steps % eval_every or steps > most:
        raise ConfigError(f"dense_eval.steps: {steps} must be a multiple of setting.eval_every ({eval_every}) and at "
                          f"most one compiled chunk (eval_every x evals_per_chunk = {most}); change it or raise "
                          "setting.evals_per_chunk")
    return steps, size


REPLAY = ("previous", "all")


def parse_sequence(cfg: dict, item, replays: tuple = REPLAY) -> tuple[tuple, str]:
    """``sequence.shifts`` (the shifts of tasks 1..k, each a dict ``{name, severity, ...}``) as a tuple
    of ``item(d)`` per entry, and ``sequence.replay``, validated. ``item`` checks one entry and raises a
    ConfigError naming ``shift.<field>``, which becomes ``sequence.shifts[i].<field>``; ``replays``: the
    replay choices the setting offers."""
    seq = cfg.get("sequence") or {}
    items = seq.get("shifts") or []
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"sequence.shifts: must be a list of {{name, severity}}, got {items!r}")
    out = []
    for i, d in enumerate(items):
        if not isinstance(d, dict) or "name" not in d:
            raise ConfigError(f"sequence.shifts[{i}]: must be {{name: <shift>, severity: <0..1>}}, got {d!r}")
        try:
            out.append(item(dict(d)))
        except ConfigError as e:
            raise ConfigError(f"sequence.shifts[{i}].{str(e).split('shift.', 1)[-1]}") from None
    replay = seq.get("replay", "previous")
    if replay in REPLAY and replay not in replays:
        raise ConfigError(f"sequence.replay: {replay!r} is not offered by this setting (its source objective "
                          f"replays the previous task only); use {', '.join(replays)}")
    if replay not in replays:
        raise ConfigError(f"sequence.replay: unknown value {replay!r}; choose one of {', '.join(replays)}")
    return tuple(out), replay
