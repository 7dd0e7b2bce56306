"""Upper bounds on the sizes a config asks for, checked before anything is allocated.

- ``seed``: the seeds ``seed .. seed + num_seeds - 1`` are 32-bit PRNG seeds (``jax.random.key`` folds a
  larger one into the same key as a small one, so two "different" seeds would train the same run);
- the run count (``num_seeds`` x methods, at least: a swept number multiplies some methods' runs):
  every run keeps a host record from its expansion to ``runs.json`` (:data:`HOST_BYTES_PER_RUN`, a
  floor: its model, optimizer state and curves come on top), so a count whose records alone exceed
  the machine's memory is refused in one line instead of growing until the kernel kills the process;
- the evaluations per run (``setting.source_steps + setting.adapt_steps`` over ``setting.eval_every``,
  where a setting counts that way): every run's curves stay in host memory until its summaries are
  written (:data:`CURVE_BYTES_PER_EVALUATION`, a floor), so steps whose curves cannot fit are refused.
"""
from __future__ import annotations

import os

from lossmooth.core.config import integer
from lossmooth.errors import ConfigError

SEED_MAX = 2**32 - 1
# measured: a run's dict from lossmooth.core.runs.expand_runs, its label, its row in runs.json and its
# metric rows' keys take well over 1 KiB of CPython objects; the bound uses 1 KiB as a floor
HOST_BYTES_PER_RUN = 1024
# a run's curves stay in host memory until its summaries are written: at least two float32 metrics
# (a loss and an accuracy or return) per evaluation
CURVE_BYTES_PER_EVALUATION = 8


def host_memory() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def _evaluations(cfg: dict) -> tuple[str, int] | None:
    """``(field, evaluations per run)`` of a setting that evaluates every ``setting.eval_every`` steps
    of ``setting.source_steps`` and ``setting.adapt_steps`` (the larger of the two named), or None where
    the setting counts otherwise or the numbers are not integers yet (its own checks then speak)."""
    s = cfg.get("setting") if isinstance(cfg.get("setting"), dict) else {}
    every = s.get("eval_every")
    steps = {k: s.get(k) for k in ("source_steps", "adapt_steps")}
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        return None
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in steps.values()):
        return None
    field = max(steps, key=steps.get)
    return f"setting.{field}", sum(steps.values()) // every


def check_sizes(cfg: dict, memory: int | None = None) -> None:
    """``num_seeds`` and ``seed`` within their bounds (see the module docstring); ``memory``: the
    machine's memory in bytes (default: :func:`host_memory`). One-line ConfigError naming the field."""
    num_seeds = integer(cfg, "num_seeds", 1)
    seed = integer(cfg, "seed", 0)
    if seed + num_seeds - 1 > SEED_MAX:
        raise ConfigError(f"seed: seeds {seed}..{seed + num_seeds - 1} pass {SEED_MAX}, the largest 32-bit PRNG "
                          f"seed (a larger one would repeat a smaller one's run); use seed <= {SEED_MAX - num_seeds + 1}")
    methods = cfg.get("method")
    n_methods = len(methods) if isinstance(methods, dict) and methods else 1
    runs = num_seeds * n_methods
    memory = host_memory() if memory is None else memory
    if memory is not None and runs * HOST_BYTES_PER_RUN > memory:
        most = max(1, memory // (HOST_BYTES_PER_RUN * n_methods))
        raise ConfigError(f"num_seeds: {num_seeds} seeds x {n_methods} method(s) = {runs} runs need at least "
                          f"{_gib(runs * HOST_BYTES_PER_RUN)} of host memory for their records alone, more than this "
                          f"machine's {_gib(memory)}; use num_seeds <= {most} per job (seed=... starts a job's seeds)")
    evals = _evaluations(cfg)
    if memory is not None and evals is not None and runs * evals[1] * CURVE_BYTES_PER_EVALUATION > memory:
        raise ConfigError(f"{evals[0]}: {evals[1]} evaluations per run x {runs} runs keep at least "
                          f"{_gib(runs * evals[1] * CURVE_BYTES_PER_EVALUATION)} of curves in host memory, more than "
                          f"this machine's {_gib(memory)}; use fewer steps or a larger setting.eval_every")
