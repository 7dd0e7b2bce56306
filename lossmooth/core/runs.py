"""Runs: every (method, swept numbers, seed) combination of a config, the batches that share a
compiled program, and the labels runs go by in progress lines and dashboards.

A swept number only multiplies the methods it affects (``T`` and ``lam0``: ramps; ``value``: constant
mixes; ``eps``, ``eta``, ``mu0``, ``patience``, ``rho``, ``beta``: adaptive schedules; ``reg_coef``:
regularized methods; ``lr``: every method), so ``+sweep.T=[50,100]`` next to the
hard switch gives two smoothing runs and one hard switch per seed.
"""
from __future__ import annotations

import itertools

import jax.numpy as jnp

from lossmooth.core.objective import Method
from lossmooth.core.schedules import ADAPTIVE, ADAPTIVE_NUMBERS


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
                        or (k in ADAPTIVE_NUMBERS and m.schedule.kind in ADAPTIVE)
                        or (k == "reg_coef" and m.reg != "none"))
            if relevant:
                axes[k] = vals
        for combo in itertools.product(*axes.values()) if axes else [()]:
            point = dict(zip(axes.keys(), combo))
            sched = m.schedule.replace(**{k: jnp.asarray(v, jnp.float32) for k, v in point.items()
                                          if k in ("T", "lam0", "value", *ADAPTIVE_NUMBERS)})
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
        h["T"] = float(s.T)
        if s.kind != "guard":  # the guard starts from mu0, not lam0
            h["lam0"] = float(s.lam0)
    if s.kind == "exponential":
        h["sharpness"] = float(s.sharpness)
    if s.kind == "step":
        h["stairs"] = float(s.stairs)
    if s.kind == "constant":
        h["value"] = float(s.value)
    if s.kind == "guard":
        h.update(eps=float(s.eps), eta=float(s.eta), mu0=float(s.mu0), patience=float(s.patience),
                 beta=float(s.beta))
    if s.kind == "progress":
        h.update(rho=float(s.rho), beta=float(s.beta))
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


def run_label(r: dict, swept: list[str]) -> str:
    """``method[swept numbers]/seed<seed>``: a run's name in progress lines and loggers."""
    nums = ",".join(f"{k}={r['hparams'][k]:g}" for k in swept if k in r["hparams"])
    return f"{r['name']}" + (f"[{nums}]" if nums else "") + f"/seed{r['seed']}"
