"""The shared runner: everything every setting's run needs besides the setting itself.

- :func:`validate`: a resolved config checked by its setting, reading no data;
- :func:`run_config`: a resolved config run to a complete run directory (or the one a finished run of
  the same config and code already left);
- :mod:`.execute`: a run end to end (parse, load, plan, run each job, finish), :mod:`.plan`: every job
  of a run with its run indices, labels and keys, :mod:`.phase`: one phase through the engine,
  :mod:`.hooks`: the work between its chunks, :mod:`.sink`: the metric rows, :mod:`.rows`: the
  ``runs.json`` records, :mod:`.records`: the run directory's life and the pairing keys,
  :mod:`.loggers`: wandb and TensorBoard.
"""
from __future__ import annotations

import math

import jax

from lossmooth import settings
from lossmooth.core import engine
from lossmooth.core.config import flag, integer, writable_folder
from lossmooth.errors import ConfigError
from lossmooth.results import aggregate as agg
from lossmooth.results import store
from lossmooth.runner import distributed
from lossmooth.runner.bounds import check_sizes
from lossmooth.runner.execute import execute
from lossmooth.runner.loggers import check_loggers
from lossmooth.runner.memory import apply_xla_flags


def setting_of(cfg: dict) -> settings.Setting:
    """The config's setting, with its results folder checked writable (creates nothing)."""
    name = (cfg.get("setting") or {}).get("name")
    setting = settings.get(name)
    check_writable(cfg.get("results_dir"))
    return setting


def validate(cfg: dict) -> None:
    """Validate a resolved config without running it or reading data (one-line ConfigError): the
    host-only keys, then the setting's own."""
    setting = setting_of(cfg)
    check_host_keys(cfg)
    check_sizes(cfg)
    factor = cfg.get("diverge_factor", 100.0)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or not factor > 1:
        raise ConfigError(f"diverge_factor: must be a number > 1 (a loss this many times its value at the switch "
                          f"marks a run diverged), got {factor!r}")
    dense = cfg.get("dense_eval")
    if isinstance(dense, dict) and dense.get("steps") and not setting.dense_eval:
        raise ConfigError(f"dense_eval.steps: the {setting.name} setting has no dense evaluation (settings with one: "
                          f"{', '.join(s for s in settings.names() if settings.get(s).dense_eval)}); set it to 0")
    seq = cfg.get("sequence")
    if isinstance(seq, dict) and seq.get("shifts") and not setting.sequences:
        raise ConfigError(f"sequence.shifts: the {setting.name} setting runs one switch (settings with sequences of "
                          f"shifts: {', '.join(s for s in settings.names() if settings.get(s).sequences)}); "
                          "drop sequence")
    setting.parse(cfg)


def check_host_keys(cfg: dict) -> None:
    """The keys that change where and how a run executes, never its numbers."""
    every = cfg.get("checkpoint_every_s", 60.0)
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not math.isfinite(every) or every < 0:
        raise ConfigError(f"checkpoint_every_s: must be a number >= 0 (0: after every chunk), got {every!r}")
    flag(cfg, "rerun", "rerun", default=False)
    flag(cfg, "progress", "progress", default=True)
    for key in ("cache_dir", "run_name"):
        if cfg.get(key) is not None and not isinstance(cfg[key], str):
            raise ConfigError(f"{key}: must be a string or null, got {cfg[key]!r}")
    check_loggers(cfg.get("logger") or {})
    check_summaries(cfg)
    mesh = device_mesh(cfg.get("devices", "all"))
    check_shard(cfg.get("shard", "auto"), 1 if mesh is None else mesh.size)


def check_shard(shard, n_devices: int) -> None:
    """``shard``: ``auto`` or a divisor of the device count (:func:`lossmooth.core.sharding.mesh_shape`)."""
    if shard != "auto" and (isinstance(shard, bool) or not isinstance(shard, int) or shard < 1 or n_devices % shard):
        raise ConfigError(f"shard: must be 'auto' or a divisor of the {n_devices} device(s) in use "
                          f"(devices=...), got {shard!r}")


def check_summaries(cfg: dict) -> tuple[int, int]:
    """(w, beta) of the field's metrics (:mod:`lossmooth.results.summaries`): ``summaries.window`` >= 2
    evaluations, ``summaries.lca_beta`` >= 1 evaluation."""
    sp = cfg.get("summaries")
    if sp is None:
        return agg.summary_params(cfg)
    if not isinstance(sp, dict):
        raise ConfigError(f"summaries: must be a mapping with window and lca_beta, got {sp!r}")
    unknown = sorted(set(sp) - {"window", "lca_beta"})
    if unknown:
        raise ConfigError(f"summaries.{unknown[0]}: unknown key (summaries has window and lca_beta)")
    for key, lo in (("window", 2), ("lca_beta", 1)):
        if key in sp:
            integer(sp, key, lo, f"summaries.{key}")
    return agg.summary_params(cfg)


def run_config(cfg: dict, choices: dict, progress: bool | None = None) -> str | None:
    """Run a resolved config (a plain dict without ``hydra``); return the run directory (None on a
    process other than 0 of a distributed run whose config process 0 found complete). Raises
    :class:`lossmooth.results.store.NothingToDo` where another process is running this config right
    now (nothing was produced here)."""
    distributed.parse(cfg.get("distributed"))  # a bad section fails before joining anything
    cfg = distributed.join(cfg)  # before any JAX work; another process than 0 writes a folder of its own
    setting = setting_of(cfg)
    apply_xla_flags(setting.xla_flags)  # before any JAX work starts the backend
    validate(cfg)  # bad input is an error even where a finished run of the config exists
    done = None if cfg.get("rerun", False) else store.find_complete(cfg["results_dir"], setting.name,
                                                                     store.run_key(cfg))
    if distributed.agree(done is not None) and done is None:  # process 0 has it: every process stops
        return None
    if done is not None:  # the same config on the same code already finished: nothing to do
        print(f"lossmooth: {setting.name} run already complete (same config, same code): {done}; "
              "rerun=true runs it again")
        return done
    engine.enable_compilation_cache(cfg.get("cache_dir"))
    mesh = device_mesh(cfg.get("devices", "all"))
    try:
        return execute(setting, cfg, choices, mesh=mesh, shard=cfg.get("shard", "auto"),
                       progress=cfg.get("progress", True) if progress is None else progress)
    except store.NothingToDo as e:  # another sweep runs this config now, or just finished it
        if e.complete is None:  # running elsewhere: the caller says whether that is an error
            raise
        print(f"lossmooth: {e}")
        return e.complete


def check_writable(results_dir) -> None:
    """The results folder takes files (:func:`lossmooth.core.config.writable_folder`): checked before
    any work."""
    writable_folder(results_dir, "results_dir")


def device_mesh(devices):
    """The mesh the run axis is sharded over: ``all`` visible devices (none with one), or the first
    ``devices`` of them."""
    n = len(jax.devices())
    if devices == "all":
        return engine.run_mesh() if n > 1 else None
    if isinstance(devices, bool) or not isinstance(devices, int) or not 1 <= devices <= n:
        raise ConfigError(f"devices: must be 'all' or an integer in [1, {n}], got {devices!r}")
    return engine.run_mesh(jax.devices()[:devices]) if devices > 1 else None
