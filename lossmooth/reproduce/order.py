"""Whether an entry's plan was committed before its runs, read from git.

An entry's *plan* is what its claim rests on: its criteria (each criterion's row, metric, test and
bound: its name and a stated miss are commentary), its primary metrics and its family (``analysis``),
and its pilot flag. The plan is *pre-registered* when, for every run directory the entry uses, the
entry file at the commit that made the run (``meta.json``'s ``git.commit``) holds the same plan: the
plan existed, unchanged in meaning, in the tree the runs were made from (so at an ancestor of, or at,
their commit). Otherwise the entry's table says the plan was written after the runs, naming the first
commit where it holds, and nothing may call it pre-registered.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess

import yaml

from lossmooth.provenance import CONF_DIR

ROOT = os.path.dirname(CONF_DIR)


@dataclasses.dataclass(frozen=True)
class Order:
    """``state``: ``before`` (pre-registered), ``after`` (written after the runs), ``none`` (the entry
    has no plan) or ``unknown`` (no git history, or a run of unknown commit); ``text``: one sentence."""

    state: str
    text: str


def plan(body) -> str | None:
    """The canonical plan of an entry's YAML body (a JSON string; None where it has none)."""
    if not isinstance(body, dict):
        return None
    crit = [{k: c.get(k) for k in ("row", "metric", "above", "below", "at_least", "at_most", "max_halfwidth")
             if c.get(k) is not None} for c in (body.get("criteria") or []) if isinstance(c, dict)]
    analysis = body.get("analysis") or {}
    out = {"criteria": crit, "primary": analysis.get("primary"), "family": analysis.get("family") or {},
           "pilot": bool(body.get("pilot", False))}
    if not crit and not analysis:
        return None
    return json.dumps(out, sort_keys=True)


def _git(*args: str) -> str | None:
    try:
        r = subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


def _body(data, name: str):
    """An entry's body in a file: the file itself (``<name>.yaml``) or its mapping's ``name``."""
    if isinstance(data, dict) and "runs" not in data and isinstance(data.get(name), dict):
        return data[name]
    return data


def plan_at(commit: str, relpath: str, name: str) -> str | None:
    """The plan of entry ``name`` in the file ``relpath`` (relative to the repository) at ``commit``;
    None where the file or its plan did not exist then."""
    text = _git("show", f"{commit}:{relpath}")
    if text is None:
        return None
    try:
        return plan(_body(yaml.safe_load(text), name))
    except yaml.YAMLError:
        return None


def first_commit_with(relpath: str, name: str, wanted: str) -> str | None:
    """The oldest commit whose ``relpath`` holds the plan ``wanted`` (short hash)."""
    log = _git("log", "--reverse", "--format=%h", "--", relpath)
    for c in (log or "").split():
        if plan_at(c, relpath, name) == wanted:
            return c
    return None


def check(entry_path: str, name: str, commits: list[str]) -> Order:
    """Whether the plan of entry ``name`` in ``entry_path`` (now) was in the tree of each run commit in
    ``commits``."""
    with open(entry_path) as f:
        now = plan(_body(yaml.safe_load(f), name))
    if now is None:
        return Order("none", "No plan (criteria or analysis) is declared for this entry.")
    rel = os.path.relpath(os.path.abspath(entry_path), ROOT)
    if _git("rev-parse", "--git-dir") is None or rel.startswith(".."):
        return Order("unknown", "Plan order unverifiable: the entry is not in this repository's git history.")
    bad = [c for c in commits if c in ("", "unknown") or c.endswith("+dirty")]
    if bad:
        return Order("unknown", "Plan order unverifiable: a run's commit is unknown or dirty.")
    late = sorted({c for c in commits if plan_at(c, rel, name) != now})
    if not late:
        return Order("before", f"Plan committed before its runs: the criteria, primary metrics and family in "
                               f"force held in the tree of every run's commit ({', '.join(sorted(set(commits)))}).")
    first = first_commit_with(rel, name, now) or "uncommitted"
    return Order("after", f"Criteria written after the runs: the plan in force (first committed in {first}) was "
                          f"not in the tree of the runs' commit(s) {', '.join(late)}; not pre-registered.")
