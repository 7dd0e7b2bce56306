"""One run over several processes (hosts): ``jax.distributed.initialize`` joins them, ``jax.devices()``
then lists every process's devices, and the runner's mesh spans them all (a run spread over hosts:
:mod:`lossmooth.core.sharding`).

Every process runs the same program on the same config (multi-controller JAX): the same phases, the
same compiled chunks, and between chunks the same host work, each process reading back the metrics
gathered from all of them (:func:`lossmooth.core.engine.to_host`). Process 0 writes the run's results
folder and dashboards; every other process writes its identical copy of the files to a folder of its
own, ``<results_dir>/.processes/<index>/`` (JSONL only), so no file has two writers. Checkpoints are per
process too: each saves the whole state gathered to its host and resumes from its own.

Config (host-only, not part of a run's key)::

    distributed:
      enabled: false        # true: join the processes before any JAX work
      coordinator: null     # host:port of process 0 (null under SLURM: JAX reads the job's environment)
      num_processes: null   # (null under SLURM)
      process_id: null      # (null under SLURM)
      collectives: gloo     # CPU collectives between processes: gloo | mpi (accelerators use their own)
"""
from __future__ import annotations

import os

from lossmooth.errors import ConfigError

KEYS = ("enabled", "coordinator", "num_processes", "process_id", "collectives")


def parse(section) -> dict | None:
    """The ``distributed`` section, checked (one-line errors); None where it is off."""
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ConfigError(f"distributed: must be a mapping with {', '.join(KEYS)}, got {section!r}")
    unknown = sorted(set(section) - set(KEYS))
    if unknown:
        raise ConfigError(f"distributed.{unknown[0]}: unknown key (distributed has {', '.join(KEYS)})")
    enabled = section.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"distributed.enabled: must be true or false, got {enabled!r}")
    if not enabled:
        return None
    out = {"coordinator": section.get("coordinator"), "num_processes": section.get("num_processes"),
           "process_id": section.get("process_id"), "collectives": section.get("collectives", "gloo")}
    if out["collectives"] not in ("gloo", "mpi"):
        raise ConfigError(f"distributed.collectives: must be gloo or mpi, got {out['collectives']!r}")
    given = [k for k in ("coordinator", "num_processes", "process_id") if out[k] is not None]
    if given and len(given) < 3:
        missing = next(k for k in ("coordinator", "num_processes", "process_id") if out[k] is None)
        raise ConfigError(f"distributed.{missing}: set coordinator, num_processes and process_id together "
                          "(or none of them under SLURM)")
    if given:
        if not isinstance(out["coordinator"], str) or ":" not in out["coordinator"]:
            raise ConfigError(f"distributed.coordinator: must be host:port, got {out['coordinator']!r}")
        n, i = out["num_processes"], out["process_id"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"distributed.num_processes: must be an integer >= 1, got {n!r}")
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
            raise ConfigError(f"distributed.process_id: must be an integer in [0, {n - 1}], got {i!r}")
    return out


def join(cfg: dict) -> dict:
    """Join the processes the config's ``distributed`` section names (before any JAX work), and
    return the config this process runs: process 0's unchanged, another's writing its own folder."""
    spec = parse(cfg.get("distributed"))
    if spec is None:
        return cfg
    import jax

    jax.config.update("jax_cpu_collectives_implementation", spec["collectives"])
    if not jax.distributed.is_initialized():
        jax.distributed.initialize(coordinator_address=spec["coordinator"], num_processes=spec["num_processes"],
                                   process_id=spec["process_id"])
    index = jax.process_index()
    if index == 0:
        return cfg
    return {**cfg, "results_dir": os.path.join(str(cfg["results_dir"]), ".processes", str(index)),
            "logger": {**(cfg.get("logger") or {}), "wandb": "disabled", "tensorboard": False},
            "progress": False}


def agree(flag: bool) -> bool:
    """Process 0's ``flag`` on every process (a decision every process must take alike, e.g. that the
    run is already complete); ``flag`` itself with one process."""
    import jax

    if jax.process_count() == 1:
        return flag
    import numpy as np
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))
