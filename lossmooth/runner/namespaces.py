"""Each setting's config groups live in its own folder of ``conf/`` (``online_rl/shift``,
``supervised/data``, ``lm/model``, ...), so an option of one setting cannot compose with another
(``setting=online_rl shift=blur`` fails in one line naming the group and its options).

A user still selects them by their short names: ``shift=blur`` selects ``supervised/shift/blur.yaml``
under the supervised settings and ``online_rl/shift=...`` is Hydra's own spelling of the same. Every
option file declares the package its values land in (``# @package shift``), so the resolved config,
and with it every run's identity, does not depend on the folder. The namespaced groups of a config are
read from the defaults lists (the primary config's, and the chosen setting's ``setting/<name>.yaml``):
an entry ``/<namespace>/<group>: option``; nothing here lists the settings or their groups.

The LM's groups were once flat (``lm_model``, ``lm_target``, ``lm_replay``, ``lm_budget``): those
spellings select ``lm/model`` and so on (:data:`OLD_NAMES`).
"""
from __future__ import annotations

import os

from lossmooth import settings
from lossmooth.core import yamlio
from lossmooth.errors import ConfigError
from lossmooth.provenance import CONF_DIR

# old flat group names -> the short name of their namespaced group
OLD_NAMES = {"lm_model": "model", "lm_target": "target", "lm_replay": "replay", "lm_budget": "budget"}


def translate(overrides: list[str], name: str = "config") -> list[str]:
    """``overrides`` with every group selection by short name (``shift=blur``, ``+sequence=three``,
    ``lm_model=olmo_1b``, ``algo=[td3]``, sweeps ``shift=a,b``) spelled as Hydra reads it
    (``supervised/shift=blur``); other overrides unchanged. One-line :class:`ConfigError` for a group
    of another setting, an option the group does not have, or a sweep over settings whose namespaces
    differ for a group it selects."""
    chosen = _chosen_settings(overrides, name)
    per_setting = [{**defaults_groups(name), **defaults_groups(f"setting/{s}")} for s in chosen or [None]]
    where = "setting " + ",".join(chosen) if chosen else name
    out = []
    for ov in overrides:
        prefix = ov[:len(ov) - len(ov.lstrip("+~"))]
        key, sep, value = ov[len(prefix):].partition("=")
        short = OLD_NAMES.get(key, key)
        if ("." in key or "/" in key or ov.startswith("-")
                or (all(short not in g for g in per_setting) and not _elsewhere(short))):
            out.append(ov)
            continue
        found = {g.get(short) for g in per_setting}
        if len(found) > 1 and None not in found:
            raise ConfigError(f"setting: a sweep over settings ({','.join(chosen)}) cannot select {key}, a group of "
                              "each setting's own; run each setting with its own command")
        group = found.pop() if len(found) == 1 else None
        if group is None:
            owners = ", ".join(f"conf/{n}/{short}/" for n in _namespaces() if os.path.isdir(_folder(f"{n}/{short}")))
            groups = [g for g in per_setting[0] if all(g in p for p in per_setting)]
            raise ConfigError(f"{key}: not a config group of {where} (its groups: {', '.join(groups) or 'none'}); "
                              f"{key} options live in {owners}")
        if sep and "(" not in value and "$" not in value:
            known = options(group)
            for v in (v.strip() for v in value.strip("[]").split(",")):
                if v and v != "null" and v not in known:
                    raise ConfigError(f"{key}: unknown option '{v}' for {where} ({group}); choose one of "
                                      f"{', '.join(known)}")
        out.append(f"{prefix}{group}{sep}{value}")
    return out


def defaults_groups(rel: str) -> dict[str, str]:
    """``{short name: namespaced group}`` of the defaults list of ``conf/<rel>.yaml``: its entries
    ``/<namespace>/<group>`` (``{}`` where the file is not found)."""
    out = {}
    for entry in _defaults(rel):
        key = next(iter(entry)) if isinstance(entry, dict) else entry
        if not isinstance(key, str) or key.startswith("override ") or "@" in key:
            continue
        group = key.strip("/")
        if "/" in group and not group.startswith("hydra/"):
            out[group.rsplit("/", 1)[1]] = group
    return out


def options(group: str) -> list[str]:
    """The options (file names) of a config group in conf/ and the outside settings' folders."""
    found = set()
    for root in _roots():
        d = os.path.join(root, group)
        if os.path.isdir(d):
            found |= {f[:-5] for f in os.listdir(d) if f.endswith(".yaml")}
    return sorted(found)


def _chosen_settings(overrides: list[str], name: str) -> list[str]:
    """The settings ``overrides`` select (``setting=<name>``, or a sweep ``setting=a,b``), else the
    primary config's default (none for a config without settings)."""
    chosen = None
    for ov in overrides:
        key, sep, value = ov.partition("=")
        if key == "setting" and sep:
            chosen = value
    if chosen is None:
        chosen = next((e["setting"] for e in _defaults(name) if isinstance(e, dict) and "setting" in e), None)
    return [] if chosen is None else [s.strip() for s in str(chosen).strip("[]").split(",") if s.strip()]


def _defaults(rel: str) -> list:
    """The defaults list of ``conf/<rel>.yaml`` (empty where there is no such file)."""
    path = _file(f"{rel}.yaml")
    if path is None:
        return []
    with open(path) as f:
        return (yamlio.load(f) or {}).get("defaults") or []


def _elsewhere(short: str) -> bool:
    """Whether ``short`` is a group of some setting's namespace (an option file folder ``<ns>/<short>``)."""
    return any(os.path.isdir(_folder(f"{n}/{short}")) for n in _namespaces())


def _namespaces() -> list[str]:
    """The namespace folders: folders of conf/ whose sub-folders are groups (those holding no yaml)."""
    out = []
    for root in _roots():
        for n in sorted(os.listdir(root)):
            d = os.path.join(root, n)
            if (os.path.isdir(d) and n != "hydra" and not any(f.endswith(".yaml") for f in os.listdir(d))
                    and n not in out):
                out.append(n)
    return out


def _roots() -> list[str]:
    return [CONF_DIR, *settings.search_path()]


def _folder(rel: str) -> str:
    return next((os.path.join(r, rel) for r in _roots() if os.path.isdir(os.path.join(r, rel))),
                os.path.join(CONF_DIR, rel))


def _file(rel: str) -> str | None:
    return next((os.path.join(r, rel) for r in _roots() if os.path.isfile(os.path.join(r, rel))), None)

