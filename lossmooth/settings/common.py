"""What every setting shares between its config and its compiled batches: number validation,
the methods of ``conf/method``, and the expansion of (method, swept numbers, seed) into runs.
"""
from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np

from lossmooth.core.objective import Method
from lossmooth.core.schedules import Schedule
from lossmooth.errors import ConfigError

INITS = ("switch", "scratch")


def _int(cfg, key, lo=0, field=None):
    v = cfg.get(key)
    field = field or key
    if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) != int(v) or int(v) < lo:
        raise ConfigError(f"{field}: must be an integer >= {lo}, got {v!r}")
    return int(v)


def _float(cfg, key, lo=None, hi=None, field=None, lo_open=False):
    v = cfg.get(key)
    field = field or key
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
        raise ConfigError(f"{field}: must be a number, got {v!r}")
    if (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and v > hi):
        rng = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}]"
        raise ConfigError(f"{field}: must be in {rng}, got {v!r}")
    return float(v)


def parse_methods(methods_cfg, allow_scratch: bool = False, allow_probe: bool = False) -> dict:
    """``{name: {schedule: {...}, reg, reg_coef, init, probe_steps}}`` -> ``{name: Method}`` (validated).

    ``init: scratch`` (train from a fresh model instead of the one at the switch) is a control of
    the RL settings; ``probe_steps`` (LP-FT's linear probe) needs a classifier with a separate head
    (the supervised settings); elsewhere each is refused.
    """
    if not methods_cfg:
        raise ConfigError("method: no method selected; pick some, e.g. method=[hard_switch,loss_smoothing]")
    out = {}
    for name, m in methods_cfg.items():
        sched = dict(m.get("schedule") or {})
        kind = sched.pop("kind", None)
        allowed = {"T", "lam0", "value", "sharpness", "stairs"}
        extra = set(sched) - allowed
        if extra:
            raise ConfigError(f"method.{name}.schedule: unknown field(s) {sorted(extra)}; "
                              f"allowed: {sorted(allowed)}")
        init = m.get("init", "switch")
        if init not in INITS or (init == "scratch" and not allow_scratch):
            raise ConfigError(f"method.{name}.init: '{init}' is not available in this setting; "
                              f"use {'/'.join(INITS) if allow_scratch else 'switch'}")
        probe = m.get("probe_steps", 0)
        if probe and not allow_probe:
            raise ConfigError(f"method.{name}.probe_steps: LP-FT needs a classifier head; it is available in "
                              "the supervised and pretrained_vision settings only")
        s = Schedule.make(kind, field=f"method.{name}.schedule", **sched)
        out[name] = Method.make(name, s, reg=m.get("reg", "none"), reg_coef=m.get("reg_coef", 0.0),
                                probe_steps=probe)
    return out


def parse_sweep(cfg: dict, sweepable: tuple) -> dict:
    """``sweep.<name>: [numbers]`` for the numbers this setting vmaps (one line on anything else)."""
    sweep = dict(cfg.get("sweep") or {})
    for k, v in sweep.items():
        if k not in sweepable:
            raise ConfigError(f"sweep.{k}: not sweepable here; sweepable: {', '.join(sweepable)}")
        if not isinstance(v, (list, tuple)) or not v:
            raise ConfigError(f"sweep.{k}: must be a non-empty list of numbers, got {v!r}")
    return sweep


def method_inits(methods_cfg) -> dict:
    """``{name: 'switch' | 'scratch'}``: where each method's adaptation starts from."""
    return {name: (m or {}).get("init", "switch") for name, m in (methods_cfg or {}).items()}


def expand_runs(methods: dict, sweep: dict, num_seeds: int, seed: int, lr: float | None = None,
                inits: dict | None = None) -> list[dict]:
    """Every (method, swept numbers, seed) run. A swept number only multiplies the methods it
    affects (T and lam0: ramps; value: constant mixes; reg_coef: regularized methods; lr: all)."""
    runs = []
    for name, m in methods.items():
        axes = {}
        for k, vals in sweep.items():
            relevant = (k == "lr" or (k in ("T", "lam0") and m.schedule.is_ramp)
                        or (k == "value" and m.schedule.kind == "constant")
                        or (k == "reg_coef" and m.reg != "none"))
            if relevant:
                axes[k] = vals
        for combo in itertools.product(*axes.values()) if axes else [()]:
            point = dict(zip(axes.keys(), combo))
            sched = m.schedule.replace(**{k: jnp.asarray(v, jnp.float32) for k, v in point.items()
                                          if k in ("T", "lam0", "value")})
            method = m.replace(schedule=sched)
            if "reg_coef" in point:
                method = method.replace(reg_coef=jnp.asarray(point["reg_coef"], jnp.float32))
            run_lr = point.get("lr", lr)
            run_lr = None if run_lr is None else float(run_lr)
            for i in range(num_seeds):
                runs.append({"name": name, "method": method, "seed_index": i, "seed": seed + i,
                             "lr": run_lr, "init": (inits or {}).get(name, "switch"),
                             "hparams": method_hparams(method, run_lr)})
    return runs


def method_hparams(method: Method, lr: float | None = None) -> dict:
    """The numbers that identify a configured method in tables (plain floats)."""
    s = method.schedule
    h = {"schedule": s.kind} if lr is None else {"schedule": s.kind, "lr": lr}
    if s.kind not in ("hard", "constant") and not s.is_ramp:
        h["schedule"] = "hard"  # a ramp of length 0 is the hard switch: no T or lam0 to report
    elif s.is_ramp:
        h.update(T=float(s.T), lam0=float(s.lam0))
    if s.kind == "exponential":
        h["sharpness"] = float(s.sharpness)
    if s.kind == "step":
        h["stairs"] = float(s.stairs)
    if s.kind == "constant":
        h["value"] = float(s.value)
    if method.reg != "none":
        h.update(reg=method.reg, reg_coef=float(method.reg_coef))
    if float(method.probe_steps) > 0:
        h["probe_steps"] = float(method.probe_steps)
    return h


def groups_of(runs: list[dict]) -> list[list[int]]:
    """Run indices grouped by compiled structure (schedule kind, regularizer)."""
    by = {}
    for i, r in enumerate(runs):
        by.setdefault(r["method"].signature, []).append(i)
    return list(by.values())
