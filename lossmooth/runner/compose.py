"""Composing ``conf/`` into a resolved config, with the config folders of settings from outside the
project on Hydra's search path (:func:`lossmooth.settings.search_path`) and group selections by short
name moved into the chosen setting's namespace (:mod:`lossmooth.runner.namespaces`): every place that
composes a config (``lossmooth run``, ``reproduce``, ``data collect``, the tests) goes through here."""
from __future__ import annotations

import importlib

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lossmooth import settings
from lossmooth.core.config import schema_node
from lossmooth.errors import ConfigError
from lossmooth.provenance import CONF_DIR
from lossmooth.runner.namespaces import translate


def register_schemas() -> None:
    """Each built-in setting's schema (its ``schema.py``: ``SCHEMA``, config node -> dataclass) in
    Hydra's ConfigStore as ``schema/<setting>``, which the setting's config names first in its
    defaults list (``- /schema: <setting>``), so its values land on the schema's keys."""
    store = ConfigStore.instance()
    for name, package in settings.BUILTIN.items():
        try:
            module = importlib.import_module(f"{package}.schema")
        except ModuleNotFoundError as e:
            if e.name != f"{package}.schema":
                raise
            continue  # a setting whose config names another's schema (pretrained_vision: supervised's)
        store.store(group="schema", name=name, package="_global_",
                    node={key: schema_node(schema) for key, schema in module.SCHEMA.items()})


register_schemas()  # at import: every compose here, and Hydra's app behind ``lossmooth run``, finds them


def hydra_overrides(overrides: list[str], name: str = "config") -> list[str]:
    """``overrides`` as Hydra reads them: group selections in the setting's namespace
    (:func:`~lossmooth.runner.namespaces.translate`), then :func:`with_search_path`."""
    return with_search_path(translate(overrides, name))


def with_search_path(overrides: list[str]) -> list[str]:
    """``overrides`` plus ``hydra.searchpath`` naming the outside settings' config folders (if any)."""
    extra = settings.search_path()
    if not extra or any(o.startswith("hydra.searchpath=") for o in overrides):
        return list(overrides)
    return list(overrides) + ["hydra.searchpath=[" + ",".join(f"file://{p}" for p in extra) + "]"]


# config nodes a ``+key=value`` override may add keys to: numbers to sweep, rejax fields on top of a
# preset (validated against it), an environment's keyword arguments; everywhere else a key that the
# config does not have is a typo, refused with the node's known keys
OPEN = ("sweep", "budget.td3", "budget.ppo", "algo.td3.overrides", "algo.ppo.overrides", "task.kwargs",
        "train.overrides", "hydra")


def check_added(overrides: list[str], name: str = "config") -> None:
    """Refuse ``+key=value`` overrides that add a key to a node outside :data:`OPEN` (one line naming the
    key and the node's keys); the node is read from the config composed without those overrides."""
    added = [o for o in overrides if o.startswith("+") and not o.startswith("++")]
    if not added:
        return
    base = compose([o for o in overrides if o not in added], name)
    for o in added:
        key = o[1:].split("=", 1)[0].removeprefix("+")
        parent, _, leaf = key.rpartition(".")
        if any(key == p or key.startswith(p + ".") for p in OPEN):
            continue
        node = base
        for part in parent.split(".") if parent else []:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            continue  # the key exists: `+` then overrides it, as Hydra does
        known = ", ".join(sorted(node)) if isinstance(node, dict) else ""
        raise ConfigError(f"{key}: unknown key" + (f"; {parent or 'the config'}'s keys are {known}" if known else
                                                   f"; {parent} is not a config node") + " (see conf/)")


def compose(overrides: list[str], name: str = "config", where: str | None = "conf/") -> dict:
    """The resolved config ``name`` with ``overrides`` (a plain dict without ``hydra``); a bad key or
    value is one :class:`ConfigError` line (``where``: the files it points the reader to)."""
    try:
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            cfg = hydra_compose(name, overrides=hydra_overrides(overrides, name))
        return OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as e:
        unreadable = unparsable(overrides)
        if unreadable is not None:
            key, _, value = unreadable.partition("=")
            raise ConfigError(f"{key}: the override '{unreadable}' cannot be parsed (Hydra reads spaces, non-ASCII "
                              "letters and =,[]{}() and quotes specially); quote the value inside the argument, e.g. "
                              f"'{key}=\"{value}\"'") from None
        if "Interpolation key 'setting.smoothing_T' not found" in str(e):
            raise ConfigError(settings.NO_SMOOTHING_T) from None
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        raise ConfigError(" ".join(lines[:2]) + (f" (see {where} for the valid keys)" if where else "")) from None


def unparsable(overrides: list[str]) -> str | None:
    """The first override Hydra's grammar cannot read (a value with a space or a non-ASCII letter left
    unquoted), or None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_override(o)
        except Exception:  # the grammar's own errors (lexer, parser) share no base class
            return o
    return None
