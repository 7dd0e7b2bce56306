"""Composing ``conf/`` into a resolved config, with the config folders of settings from outside the
project on Hydra's search path (:func:`lossmooth.settings.search_path`): every place that composes a
config (``lossmooth run``, ``reproduce``, ``data collect``, the tests) goes through here."""
from __future__ import annotations

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lossmooth import settings
from lossmooth.errors import ConfigError
from lossmooth.provenance import CONF_DIR


def with_search_path(overrides: list[str]) -> list[str]:
    """``overrides`` plus ``hydra.searchpath`` naming the outside settings' config folders (if any)."""
    extra = settings.search_path()
    if not extra or any(o.startswith("hydra.searchpath=") for o in overrides):
        return list(overrides)
    return list(overrides) + ["hydra.searchpath=[" + ",".join(f"file://{p}" for p in extra) + "]"]


def compose(overrides: list[str], name: str = "config", where: str | None = "conf/") -> dict:
    """The resolved config ``name`` with ``overrides`` (a plain dict without ``hydra``); a bad key or
    value is one :class:`ConfigError` line (``where``: the files it points the reader to)."""
    try:
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            cfg = hydra_compose(name, overrides=with_search_path(overrides))
        return OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as e:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        raise ConfigError(" ".join(lines[:2]) + (f" (see {where} for the valid keys)" if where else "")) from None
