"""How a result was made: versions, commit, devices, and every ``# assumed:`` config value used.

Assumed values are read from the ``conf/`` files the run composed: a field whose line carries a
``# assumed: ...`` comment is listed with its final value (after overrides) and the reason, so a
user with the paper's full text can correct any of them with one override.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
import time

PACKAGES = ("lossmooth", "jax", "jaxlib", "flax", "optax", "numpy", "hydra-core", "orbax-checkpoint",
            "tensorflow-datasets", "wandb", "tensorboardX", "rliable")
CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")
_LINE = re.compile(r"^(\s*)([A-Za-z_][\w-]*)\s*:(.*)$")
_ITEM = re.compile(r"^(\s*)-\s+(.*)$")  # a list entry (e.g. a sequence's shifts, one per line)


def versions() -> dict:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = None
    return out


def git_commit() -> dict:
    root = os.path.dirname(CONF_DIR)
    try:
        sha = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        sha, dirty = None, None
    return {"commit": sha, "dirty": dirty}


def devices() -> dict:
    import jax

    devs = jax.devices()
    return {"backend": jax.default_backend(), "count": len(devs),
            "kinds": sorted({d.device_kind for d in devs}), "host": platform.node(), "cpu": cpu()}


# the vector extensions XLA's CPU code generation picks from: two machines that differ in them (or in the
# CPU model) round reductions differently, so a run repeats bit for bit only on the same kind of CPU
_VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "asimd", "sve")


def cpu() -> dict:
    """``{"model": ..., "machine": ..., "vector": [...]}`` of this host's CPU (from /proc/cpuinfo where there is one)."""
    model, flags = platform.processor() or "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "machine": platform.machine(), "vector": [f for f in _VECTOR_FLAGS if f in flags]}


def assumed_fields(choices: dict, cfg: dict, conf_dir: str = CONF_DIR, primary: str = "config.yaml") -> dict:
    """``{dotted.key: {"value": final value, "why": reason, "file": conf file}}`` for every
    ``# assumed:`` line in the primary config (``config.yaml``; a preparation step's own, e.g.
    ``pretrain.yaml``) and the chosen option of each group."""
    files = [(primary, "")]
    for group, opts in choices.items():
        if group.startswith("hydra") or opts is None:
            continue
        if isinstance(opts, str) and opts.startswith("["):
            opts = [o.strip() for o in opts.strip("[]").split(",") if o.strip()]
        for o in ([opts] if isinstance(opts, str) else list(opts)):
            files.append((os.path.join(group, f"{o}.yaml"), group.replace("/", ".")))
    out = {}
    for rel, default_pkg in files:
        path = os.path.join(conf_dir, rel)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            lines = f.read().splitlines()
        pkg = default_pkg
        for ln in lines[:3]:
            m = re.match(r"#\s*@package\s+(\S+)", ln)
            if m:
                pkg = "" if m.group(1) == "_global_" else m.group(1).replace("_group_", default_pkg)
        stack: list[tuple[int, str]] = []
        items: dict[str, int] = {}  # entries seen so far per list
        for ln in lines:
            m, item = _LINE.match(ln), _ITEM.match(ln)
            if ln.lstrip().startswith("#") or not (m or item):
                continue
            if item:  # entry i of the list under the last key, named ``key[i]``
                indent, rest = len(item.group(1)), item.group(2)
                while stack and stack[-1][0] > indent:  # a list may sit at its key's own indent
                    stack.pop()
                if not stack:
                    continue
                path = [k for _, k in stack]
                i = items[".".join(path)] = items.get(".".join(path), -1) + 1
                why = _assumed(rest)
                if why is not None:
                    dotted = ".".join(([pkg] if pkg else []) + path[:-1] + [f"{path[-1]}[{i}]"])
                    out[dotted] = {"value": _lookup(cfg, dotted), "why": why, "file": rel}
                continue
            indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, key))
            why = _assumed(rest)
            if why is not None:
                dotted = ".".join(([pkg] if pkg else []) + [k for _, k in stack])
                out[dotted] = {"value": _lookup(cfg, dotted), "why": why, "file": rel}
    return out


_ASSUMED = re.compile(r"#\s*assumed(?::(.*)|\s*$)")


def _assumed(rest: str) -> str | None:
    """The reason of a ``# assumed: why`` marker (``""`` for a bare ``# assumed``), else None."""
    m = _ASSUMED.search(rest)
    return None if m is None else (m.group(1) or "").strip()


def _lookup(cfg, dotted: str):
    cur = cfg
    for part in dotted.split("."):
        name, _, index = part.partition("[")
        if not isinstance(cur, dict) or name not in cur:
            return None
        cur = cur[name]
        if index:  # ``key[i]``: entry i of a list
            i = int(index.rstrip("]"))
            if not isinstance(cur, list) or i >= len(cur):
                return None
            cur = cur[i]
    return cur


def metadata(cfg: dict, choices: dict, data_info: dict) -> dict:
    """Everything ``meta.json`` records about how a run was made."""
    stand_in = not data_info.get("paper_data", False)
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
        "versions": versions(),
        "git": git_commit(),
        "devices": devices(),
        "data": data_info,
        "stand_in": stand_in,
        "stand_in_note": ("results on stand-in data (not the paper's datasets)" if stand_in else None),
        "assumed": assumed_fields(choices, cfg),
        "choices": {k: v for k, v in choices.items() if not k.startswith("hydra")},
    }
