"""``lossmooth status``: the state of every run directory of a results folder (complete, incomplete
and whether it resumes, diverged, corrupt), with its runs and methods, as a markdown table."""
from __future__ import annotations

import os

from lossmooth.app import folders
from lossmooth.errors import ConfigError
from lossmooth.results import store

HEADER = ("| setting | run | state | runs | diverged | on a diverged source | methods |\n"
          "|---|---|---|---|---|---|---|")


def note(r: dict) -> str:
    """What a run directory's row says beside its methods."""
    if r["state"] == "incomplete" and r.get("unsummarized"):
        return "finished, but summary.json is missing: run the same config again to rebuild it"
    if r["state"] == "incomplete":
        return f"{r.get('metric_rows', 0)} metric rows so far" + (
            "" if r.get("resumable") else ", no checkpoint: moved aside and started anew if run again")
    if r["state"] == "corrupt":
        return r["reason"]
    if r.get("pending"):
        return "finish pending (the folder takes no writes; a command with write access settles it); "
    return ""


def status(results_dir: str, setting: str | None = None) -> list[dict]:
    """Print the table and a count per state; return the rows (a corrupt directory: one warning line
    on stderr)."""
    folders.reading_folder("status", results_dir)
    if setting is not None:
        from lossmooth import settings  # only for a named setting: the registry's plugins load here

        known = settings.names()
        if setting not in known and not os.path.isdir(os.path.join(results_dir, setting)):
            raise ConfigError(f"--setting: unknown setting '{setting}'; choose one of {', '.join(known)}")
    rows = store.run_states(results_dir, setting)
    print(HEADER)
    for r in rows:
        runs = "" if r["runs"] is None else str(r["runs"])
        print(f"| {r['setting']} | {r['run_id']} | {r['state']} | {runs} | {r['diverged']} | {r['source_diverged']} | "
              f"{note(r)}{', '.join(r.get('methods', []))} |")
    counts = {k: sum(1 for r in rows if r["state"] == k) for k in ("complete", "diverged", "incomplete", "corrupt")}
    on_bad = sum(r["source_diverged"] for r in rows)
    print(f"\n{len(rows)} run directories: " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + f"; {on_bad} runs built on a diverged source")
    return rows
