"""The settings registry: each setting's name -> its :class:`~lossmooth.settings.contract.Setting`.

The built-in settings are packages of this folder, each with ``SETTING`` in its ``setting.py``; they
are imported only when used (a setting pulls in its own heavy libraries; reading its schema does not).
More settings come from outside the project without touching it, through either

- the environment variable ``LOSSMOOTH_SETTINGS``: comma-separated ``module:attribute`` references
  to Setting instances (``my_lab.drift:SETTING``, the module importable: installed, or its folder on
  ``PYTHONPATH``), or ``file.py:attribute`` (a path ending in ``.py``, relative to the current folder
  or absolute: the file is loaded as a module of its own name, nothing added to the path), or
- installed packages declaring an entry point in the group ``lossmooth.settings``.

A setting from outside names its config folder (``conf_dir``: ``setting/<name>.yaml`` and any groups
of its own); :func:`search_path` adds those folders to Hydra's search path. The registry holds no
state: every lookup reads the built-ins, the variable and the entry points as they are now.
"""
from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import os
import sys

from lossmooth.errors import ConfigError
from lossmooth.settings.contract import (Context, Curves, Line, Loaded, Phase, PhaseResult, Policy, RunSpec, Setting,
                                        Steps, batches, check_setting, common)

__all__ = ["Context", "Curves", "Line", "Loaded", "Phase", "PhaseResult", "Policy", "RunSpec", "Setting", "Steps",
           "batches", "common", "get", "names", "search_path"]

BUILTIN = {
    "supervised": "lossmooth.settings.supervised",
    "pretrained_vision": "lossmooth.settings.pretrained_vision",
    "online_rl": "lossmooth.settings.online_rl",
    "offline_to_online": "lossmooth.settings.offline_to_online",
    "lm": "lossmooth.settings.lm",
}
ENV = "LOSSMOOTH_SETTINGS"
ENTRY_POINTS = "lossmooth.settings"
REGISTER = (f"a setting from outside is registered with {ENV}=module:SETTING (or path/to/file.py:SETTING) or an "
            f"entry point in the group '{ENTRY_POINTS}' (docs/extending.md)")
# every schedule's ramp length reads ``setting.smoothing_T`` (conf/schedule/*.yaml); a setting's config lacking it
NO_SMOOTHING_T = ("setting.smoothing_T: the setting's config sets no smoothing_T, the ramp's length in gradient updates "
                  "that every schedule's T reads; add `smoothing_T: <updates>` under `setting:` in its "
                  "setting/<name>.yaml (docs/extending.md)")


def _module(name: str):
    """The module ``name``, or the file ``name`` (a path ending in ``.py``) loaded as a module."""
    if not name.endswith(".py"):
        return importlib.import_module(name)
    path = os.path.abspath(name)
    if not os.path.isfile(path):
        raise ImportError(f"no file {path}")
    key = os.path.splitext(os.path.basename(path))[0]
    if getattr(sys.modules.get(key), "__file__", None) == path:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module  # (dataclasses look their module up while the file runs)
    spec.loader.exec_module(module)
    return module


def _load(ref: str, where: str) -> Setting:
    module, _, attr = ref.partition(":")
    try:
        obj = getattr(_module(module), attr or "SETTING")
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{where}: cannot load setting '{ref}' ({e}); give module:attribute of a Setting") from None
    return check_setting(obj)


@functools.lru_cache(maxsize=8)
def _entry_points(path: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``(name, value)`` of the installed packages' setting entry points, for one ``sys.path``: scanning
    every installed distribution's metadata takes tens of milliseconds, and composing one config asks
    for the plugins' config folders dozens of times (a new ``sys.path`` scans again)."""
    return tuple((ep.name, ep.value) for ep in importlib.metadata.entry_points(group=ENTRY_POINTS))


def _plugins() -> dict[str, str]:
    """``{name or reference: (reference, where)}`` of the settings from outside the project."""
    out = {}
    for ref in filter(None, (r.strip() for r in os.environ.get(ENV, "").split(","))):
        out[ref] = (ref, ENV)
    for name, value in _entry_points(tuple(sys.path)):
        out[value] = (value, f"entry point {name}")
    return out


def plugins() -> dict[str, Setting]:
    """Every setting from outside the project, by name."""
    found = {}
    for ref, where in _plugins().values():
        s = _load(ref, where)
        if s.name in BUILTIN:
            raise ConfigError(f"{where}: setting '{ref}' is named '{s.name}', a built-in setting; rename it")
        found[s.name] = s
    return found


def names() -> list[str]:
    """The names of every setting (built-in first)."""
    return list(BUILTIN) + [n for n in plugins() if n not in BUILTIN]


def get(name) -> Setting:
    """The setting called ``name`` (one-line error naming the known ones otherwise)."""
    if name in BUILTIN:
        return _load(f"{BUILTIN[name]}.setting:SETTING", f"setting {name}")
    found = plugins()
    if name not in found:
        raise ConfigError(f"setting: unknown setting '{name}'; choose one of {', '.join(names())}; {REGISTER}")
    return found[name]


def search_path() -> list[str]:
    """Config folders of the settings from outside the project (Hydra's ``hydra.searchpath``)."""
    return [os.path.abspath(s.conf_dir) for s in plugins().values() if s.conf_dir]
