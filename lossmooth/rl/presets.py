"""rejax's own preset hyperparameters (``configs/brax/<task>.yaml`` of the rejax 0.1.3 source
distribution), read from the files rather than retyped.

The wheel does not ship them; ``python scripts/prepare_rejax_presets.py`` takes the source
distribution from the package index (``pip download --no-binary :all: rejax==0.1.3``) and extracts
the preset folder to :func:`default_dir`. Nothing is downloaded at run time.
"""
from __future__ import annotations

import copy
import os

import yaml

from lossmooth.errors import ConfigError

REJAX_VERSION = "0.1.3"
PREPARE = "python scripts/prepare_rejax_presets.py"


def default_dir() -> str:
    """``$LOSSMOOTH_REJAX_PRESETS`` or ``~/.cache/lossmooth/rejax-<version>/configs``."""
    return os.environ.get("LOSSMOOTH_REJAX_PRESETS") or os.path.expanduser(
        f"~/.cache/lossmooth/rejax-{REJAX_VERSION}/configs")


def load(algo: str, task: str, presets_dir: str | None = None, family: str = "brax") -> dict:
    """The preset ``{key: value}`` rejax tuned for ``algo`` on ``<family>/<task>``.

    Raises a one-line :class:`ConfigError` when the folder, the task's file or the algorithm's entry
    is missing.
    """
    root = os.path.expanduser(presets_dir or default_dir())
    if not os.path.isdir(os.path.join(root, family)):
        raise ConfigError(f"rejax presets not found at {root}; run `{PREPARE}` "
                          "(or set algo presets_dir / LOSSMOOTH_REJAX_PRESETS)")
    path = os.path.join(root, family, f"{task}.yaml")
    if not os.path.isfile(path):
        have = sorted(f[:-5] for f in os.listdir(os.path.join(root, family)) if f.endswith(".yaml"))
        raise ConfigError(f"task.name: rejax has no preset for task '{task}' ({path} missing); "
                          f"tasks with presets: {', '.join(have)}")
    try:
        with open(path) as f:
            presets = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: unreadable rejax preset ({type(e).__name__}); re-run `{PREPARE}`")
    if algo not in presets:
        raise ConfigError(f"algo: rejax has no '{algo}' preset for task '{task}' in {path}; "
                          f"presets there: {', '.join(sorted(presets))}")
    return copy.deepcopy(presets[algo])
