"""Which runs of an entry already exist.

A point exists when a complete run directory (``summary.json`` present) under
``<results_dir>/<setting>/`` holds a ``config.yaml`` equal to the point's resolved config, the
host-only keys (``store.HOST_ONLY``) aside, whatever git commit made it: the registry names
results, and the commit that made them is reported, not required. Where several directories match,
the newest (run ids start with their time) is the one used.
"""
from __future__ import annotations

import dataclasses
import json
import os

import yaml

from lossmooth.core import yamlio
from lossmooth.reproduce.registry import Point, numbers_config
from lossmooth.results import store


@dataclasses.dataclass(frozen=True)
class Found:
    """A complete run directory, its config as stored, and the commit that made it (short hash,
    ``+dirty`` when made from a working tree with uncommitted changes, ``unknown`` if not recorded)."""

    path: str
    config: dict
    commit: str
    data: dict = dataclasses.field(default_factory=dict)  # the data identity its meta.json records


def complete_runs(results_dir: str, setting: str) -> list[Found]:
    """Every complete run directory of ``setting`` with a readable config, newest first."""
    out = []
    for _, _, path in store.run_dirs(results_dir, setting):
        if not store.is_complete(path):
            continue
        try:
            store.read_run(path)
            with open(os.path.join(path, "config.yaml")) as f:
                cfg = yamlio.load(f)
        except store.CorruptRun as e:
            store.warn(f"skipping {path}: {e}")
            continue
        except (OSError, yaml.YAMLError):
            store.warn(f"skipping {path}: config.yaml cannot be read")
            continue
        if isinstance(cfg, dict):
            out.append(Found(path=path, config=cfg, commit=_commit(path), data=_data(path)))
        else:
            store.warn(f"skipping {path}: config.yaml is not a config")
    return sorted(out, key=lambda r: os.path.basename(r.path), reverse=True)


def _data(path: str) -> dict:
    try:
        with open(os.path.join(path, "meta.json")) as f:
            return store.data_identity(json.load(f))
    except (OSError, ValueError):
        return {}


def data_differs(entry, found: list) -> list[str]:
    """One line per run of ``entry`` whose data identity differs from the committed runs' (the entry's
    ``data``): its numbers come from other data, so they are not the committed numbers."""
    lines = []
    for f in found:
        if f is None:
            continue
        for key, want in entry.data:
            want = json.loads(want)
            have = f.data.get(key)
            if have != want:
                lines.append(f"{entry.name}: {f.path} ran on data whose {key} is {have} where the committed "
                             f"run's is {want}: its numbers are not comparable with the committed ones "
                             "(datasets collected on other machines differ; README: Dataset identity)")
    return lines


def _commit(path: str) -> str:
    try:
        with open(os.path.join(path, "meta.json")) as f:
            git = json.load(f).get("git") or {}
    except (OSError, ValueError):
        return "unknown"
    if not git.get("commit"):
        return "unknown"
    return git["commit"][:7] + ("+dirty" if git.get("dirty") else "")


def find(points: list[Point], results_dir: str, setting: str) -> list[Found | None]:
    """For each point, its newest complete run directory under ``results_dir``, or None."""
    runs = complete_runs(results_dir, setting)
    out = []
    for p in points:
        want = numbers_config(p.config)
        out.append(next((r for r in runs if numbers_config(r.config) == want), None))
    return out
