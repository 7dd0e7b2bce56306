"""The Hydra application behind ``lossmooth run``: compose ``conf/``, dispatch to the setting.

Multiruns (``-m``) go through Hydra's launchers (``hydra/launcher=joblib`` locally,
``hydra/launcher=submitit_slurm`` on a cluster); seeds are vmapped inside each job.
"""
from __future__ import annotations

import importlib
import os
import sys

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lossmooth.core.engine import Preempted
from lossmooth.errors import ConfigError
from lossmooth.provenance import CONF_DIR

# setting -> the module that validates its config (``parse``); its runner is that module + "_run"
SETTINGS = {"supervised": "lossmooth.settings.supervised",
            "pretrained_vision": "lossmooth.settings.supervised",  # the same engine on domain pairs
            "online_rl": "lossmooth.settings.online_rl",
            "offline_to_online": "lossmooth.settings.offline_to_online",
            "lm": "lossmooth.settings.lm"}


def _setting(cfg: dict) -> str:
    """The config's setting, checked, with its results folder checked writable (creates nothing)."""
    setting = (cfg.get("setting") or {}).get("name")
    if setting not in SETTINGS:
        raise ConfigError(f"setting: unknown setting '{setting}'; choose one of {', '.join(SETTINGS)}")
    _check_writable(cfg.get("results_dir"))
    return setting


def validate(cfg: dict) -> None:
    """Validate a resolved config without running it or reading data (one-line ConfigError)."""
    importlib.import_module(SETTINGS[_setting(cfg)]).parse(cfg)


def run_config(cfg: dict, choices: dict, progress: bool | None = None) -> str | None:
    """Run a resolved config (a plain dict without ``hydra``); return the run directory (None where
    another process is running this config right now)."""
    from lossmooth.core import engine
    from lossmooth.results import store

    setting = _setting(cfg)
    every = cfg.get("checkpoint_every_s", 60.0)
    if isinstance(every, bool) or not isinstance(every, (int, float)) or every < 0:
        raise ConfigError(f"checkpoint_every_s: must be a number >= 0 (0: after every chunk), got {every!r}")
    if not isinstance(cfg.get("rerun", False), bool):
        raise ConfigError(f"rerun: must be true or false, got {cfg['rerun']!r}")
    done = None if cfg.get("rerun", False) else store.find_complete(cfg["results_dir"], setting, store.run_key(cfg))
    if done is not None:  # the same config on the same code already finished: nothing to do
        print(f"lossmooth: {setting} run already complete (same config, same code): {done}; rerun=true runs it again")
        return done
    engine.enable_compilation_cache(cfg.get("cache_dir"))
    mesh = _mesh(cfg.get("devices", "all"))
    module = importlib.import_module(SETTINGS[setting] + "_run")
    try:
        return module.execute(cfg, choices, mesh=mesh,
                              progress=cfg.get("progress", True) if progress is None else progress)
    except store.NothingToDo as e:  # another sweep runs this config now, or just finished it
        print(f"lossmooth: {e}")
        return e.complete


def _check_writable(results_dir) -> None:
    """The results folder (or, while it does not exist yet, its nearest existing parent, so nothing is
    created before the config is validated) is a folder that takes files: checked before any work."""
    import errno
    import tempfile

    if not isinstance(results_dir, str) or not results_dir:
        raise ConfigError(f"results_dir: must be a folder path, got {results_dir!r}")
    where = os.path.abspath(os.path.expanduser(results_dir))
    while not os.path.exists(where) and os.path.dirname(where) != where:
        where = os.path.dirname(where)
    try:
        if not os.path.isdir(where):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        fd, probe = tempfile.mkstemp(dir=where, prefix=".lossmooth-write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"results_dir: cannot write to '{results_dir}' ({e.strerror or e}); point results_dir "
                          "at a writable folder") from None


def _mesh(devices):
    import jax

    from lossmooth.core import engine

    n = len(jax.devices())
    if devices == "all":
        return engine.run_mesh() if n > 1 else None
    if isinstance(devices, bool) or not isinstance(devices, int) or not 1 <= devices <= n:
        raise ConfigError(f"devices: must be 'all' or an integer in [1, {n}], got {devices!r}")
    return engine.run_mesh(jax.devices()[:devices]) if devices > 1 else None


def print_run_table(run_dir: str) -> None:
    from lossmooth.results import aggregate as agg
    from lossmooth.results import report

    rows = agg.collect(os.path.dirname(os.path.dirname(run_dir)), filters={"run_dir": run_dir})
    groups, diffs, normalized = agg.tables(rows)
    print(report.markdown(groups, diffs, normalized=normalized))
    print(f"results: {run_dir}")


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> str | None:
    from hydra.core.hydra_config import HydraConfig

    try:
        choices = dict(HydraConfig.get().runtime.choices)
        plain = OmegaConf.to_container(cfg, resolve=True)
        plain.pop("hydra", None)
        run_dir = run_config(plain, choices)
    except (ConfigError, OmegaConfBaseException) as e:
        print(f"lossmooth: error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
    except Preempted as e:
        print(f"lossmooth: stopped by SIGTERM; checkpoint saved in {e}; run the same command to resume",
              file=sys.stderr)
        sys.exit(143)
    if run_dir is not None:
        print_run_table(run_dir)
    return run_dir
