"""The three forms of ``lossmooth reproduce`` (see :mod:`lossmooth.cli`), printing as they go and
returning the exit status; bad input raises a one-line :class:`ConfigError` before anything is run or
written (a targets row is checked against the regenerated table before the table is written).
"""
from __future__ import annotations

import dataclasses
import os
import sys

from lossmooth.errors import ConfigError
from lossmooth.reproduce import build, existing, seeds, targets
from lossmooth.reproduce.registry import Entry, resolve
from lossmooth.results import store


def host_overrides(overrides: list[str]) -> tuple[str, ...]:
    """Extra overrides for every run command: only ``hydra.`` keys and host-only keys, which change
    how and where runs execute, never which configs they are."""
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if "=" not in o or key == "results_dir" or not (key.startswith("hydra.") or key in store.HOST_ONLY):
            raise ConfigError(f"reproduce: '{o}' would change the entry's runs; only hydra.* and host-only keys "
                              f"({', '.join(k for k in store.HOST_ONLY if k != 'results_dir')}) may be added "
                              "(the results folder is --results-dir)")
    return tuple(overrides)


def list_entries(entries: dict[str, Entry], results_dir: str) -> int:
    """Print every entry: setting, runs, how many exist, the commits that made them, its outputs."""
    print("| entry | setting | runs | exist | commits | outputs |")
    print("|---|---|---|---|---|---|")
    for e in entries.values():
        points = resolve(e)
        found = [f for f in existing.find(points, results_dir, e.setting) if f is not None]
        commits = ", ".join(sorted({f.commit for f in found})) or "-"
        out = e.outputs(results_dir)
        built = "built" if all(os.path.exists(p) for p in out.values()) else "not built"
        print(f"| {e.name} | {e.setting} | {len(points)} | {len(found)} | {commits} | "
              f"{os.path.splitext(out['md'])[0]}.{{md,csv,png}} ({built}) |")
    print()
    for e in entries.values():
        print(f"- {e.name}: {e.description}")
    return 0


def clean_provenance(entry: Entry, found: list, allow_dirty: bool = False) -> None:
    """Numbers checked against targets come from runs of committed code: a run made from a working
    tree with uncommitted changes (or of unknown commit) is refused, unless ``allow_dirty``."""
    if allow_dirty:
        return
    for f in found:
        if f is not None and (f.commit.endswith("+dirty") or f.commit == "unknown"):
            raise ConfigError(f"reproduce --check: '{entry.name}' uses {f.path}, made from "
                              f"{'uncommitted changes' if f.commit != 'unknown' else 'an unknown commit'} "
                              f"({f.commit}); re-run it from a clean commit (or pass --allow-dirty)")


def reproduce(entry: Entry, results_dir: str, checks: list[targets.Target] | None = None,
              launcher: str | None = None, host: tuple[str, ...] = (), dry_run: bool = False,
              allow_dirty: bool = False, entries: dict[str, Entry] | None = None) -> int:
    """Run the entry's missing runs, rebuild its table and plot, and (``checks``) compare with targets.
    0: done (every check passed); 1: a check failed or a run did not finish; 2: bad input."""
    points = resolve(entry)
    found = existing.find(points, results_dir, entry.setting)
    todo = build.commands(entry, points, found, results_dir, launcher, host)
    have = sum(f is not None for f in found)
    print(f"lossmooth: reproduce {entry.name}: {have} of {len(points)} run(s) exist under {results_dir}"
          + (f"; {len(todo)} command(s) make the rest" if todo else ""), flush=True)
    if dry_run:
        for args in todo:
            print(build.shown(args))
        return 0
    for args in todo:
        print(build.shown(args), flush=True)
        rc = build.execute(args)
        if rc == 2:  # the run refused its input and said why in one line
            return 2
        if rc != 0:
            print(f"lossmooth: error: reproduce {entry.name}: `{build.shown(args)}` exited with status {rc}",
                  file=sys.stderr)
            return 1
    found = existing.find(points, results_dir, entry.setting)
    lost = [p for p, f in zip(points, found) if f is None]
    if lost:
        print(f"lossmooth: error: reproduce {entry.name}: the runs finished but no complete run directory "
              f"under {results_dir}/{entry.setting} has the config of `{' '.join(lost[0].overrides)}` (if another "
              "process is running it, run this command again once it is done)",
              file=sys.stderr)
        return 1
    if checks is not None:
        clean_provenance(entry, found, allow_dirty)
    if entries is not None:
        build.not_a_pilot(entry, found, build.pilot_runs(entries, results_dir))
    for line in existing.data_differs(entry, found):
        print(f"lossmooth: warning: {line}", file=sys.stderr)
    table, status = with_seed_plan(entry, build.tables(entry, points, found, results_dir), entries, results_dir,
                                   found)
    cells = targets.check(checks, targets.table_rows(table.csv)) if checks is not None else None
    build.write(entry, table, results_dir)
    print(table.markdown)
    print("wrote " + ", ".join(entry.outputs(results_dir).values()))
    if cells is None:
        return 0
    print("\n" + targets.report(cells))
    held, planned = criteria_hold(entry, table), say(entry, status)  # both print their lines
    return 0 if all(c.passed for c in cells) and held and planned else 1


def seed_plan(entry: Entry, results_dir: str, metric: str, halfwidth, effect, power: float = 0.8,
              family: int = 1, n: int | None = None) -> str:
    """:mod:`lossmooth.reproduce.seeds`' answer for ``metric`` from the entry's committed runs (all must exist)."""
    found = existing.find(resolve(entry), results_dir, entry.setting)
    if any(f is None for f in found):
        raise ConfigError(f"seeds: '{entry.name}' has runs missing under {results_dir}; run `lossmooth reproduce "
                          f"{entry.name}` first")
    clean_provenance(entry, found)
    rows = build.rows_of(entry, found, results_dir)
    if n is not None:
        return seeds.sensitivity(rows, metric, n, power, family)
    return seeds.text(entry.name, metric, seeds.plan(rows, metric, halfwidth, effect, power, family),
                      halfwidth, effect, power, family)


def seed_status(entry: Entry, entries: dict[str, Entry], results_dir: str, n_pairs: int | None,
                run_seeds: int | None) -> tuple[bool, str]:
    """Whether an entry's recorded seed plan holds, and the sentence its table states. The plan's ``n`` must
    still follow from its committed pilot, and runs made for the plan (``run_seeds`` >= n) must keep n
    pairs; runs that predate the plan (fewer seeds than it needs) are stated as awaiting the planned
    re-run: the order a plan asks for is plan first, then runs, so a committed plan may wait for them."""
    block = seeds.recorded(entry)
    pilot = entries.get(block["pilot"])
    if pilot is None:
        raise ConfigError(f"entry '{entry.name}': seeds.pilot '{block['pilot']}' is not an entry")
    found = existing.find(resolve(pilot), results_dir, pilot.setting)
    if any(f is None for f in found):
        raise ConfigError(f"entry '{entry.name}': its pilot '{pilot.name}' has runs missing under {results_dir}")
    plans = seeds.plan(build.rows_of(pilot, found, results_dir), block["metric"], block.get("halfwidth"),
                       block.get("effect"), block.get("power", 0.8), block.get("family", 1))
    n = seeds.answer(plans, block.get("halfwidth"), block.get("effect"))
    asked = "; ".join(f"{k} {block[k]:g}" for k in ("halfwidth", "effect") if k in block)
    plan = (f"Seed plan: n = {block['n']} from the pilot {pilot.name} ({block['metric']}: {asked}, power "
            f"{block.get('power', 0.8):g}, family {block.get('family', 1)}; `lossmooth seeds` recomputes it)")
    if n != block["n"]:
        return False, (f"lossmooth: {entry.name}: its seed plan records n = {block['n']}, but its pilot '{pilot.name}' "
                       f"now gives {n}: rerun `lossmooth seeds {pilot.name}` and record the answer")
    if n_pairs is None or n_pairs >= n:
        return True, f"{plan}: these runs have {n_pairs} pairs."
    if run_seeds is not None and run_seeds < n:
        return True, (f"{plan}: these runs have {run_seeds} seeds and predate the plan; the planned re-run is "
                      "pending, and nothing here rests on it yet.")
    return False, f"lossmooth: {entry.name}: {n_pairs} pairs, fewer than the {n} its seed plan needs"


def seeds_hold(entry: Entry, entries: dict[str, Entry], results_dir: str, n_pairs: int | None,
               run_seeds: int | None = None) -> bool:
    """:func:`seed_status`'s verdict, printing a line for a plan that does not hold or awaits its re-run."""
    return say(entry, seed_status(entry, entries, results_dir, n_pairs, run_seeds))


def say(entry: Entry, status: tuple[bool, str] | None) -> bool:
    """Print a seed plan's line where it does not hold or awaits its re-run; return whether it holds (no
    plan: True)."""
    if status is None:
        return True
    ok, line = status
    if not ok or "pending" in line:
        print(line if not ok else f"lossmooth: {entry.name}: {line}")
    return ok


def run_seeds(found: list) -> int | None:
    """The most seeds any of the runs was made with (their stored configs)."""
    ns = [f.config.get("num_seeds") for f in found if f is not None and isinstance(f.config.get("num_seeds"), int)]
    return max(ns) if ns else None


def with_seed_plan(entry: Entry, table, entries: dict[str, Entry] | None, results_dir: str, found: list):
    """``(table, status)``: the entry's seed plan checked once (:func:`seed_status`; None without a plan)
    and its sentence put under the table's plan-order line where the plan holds or awaits its re-run."""
    if not entry.seeds or entries is None:
        return table, None
    n_pairs = min((d["n_pairs"] for d in table.diffs), default=None)
    status = seed_status(entry, entries, results_dir, n_pairs, run_seeds(found))
    ok, line = status
    if not ok:
        return table, status
    anchor = table.order.text if table.order is not None else None
    md = (table.markdown.replace(anchor, f"{anchor}\n\n{line}", 1) if anchor and anchor in table.markdown
          else table.markdown + f"\n{line}\n")
    return dataclasses.replace(table, markdown=md), status


def criteria_hold(entry: Entry, table) -> bool:
    """Whether the entry's criteria are as it states them (each holds, or is a stated miss); a line
    per criterion that is not."""
    for r in table.criteria:
        if not r.ok:
            why = ("is missed without a stated reason" if not r.holds else
                   "holds, but the entry states it as missed (remove its 'missed')")
            print(f"lossmooth: {entry.name}: criterion '{r.criterion.name}' {why} (value {r.value:.4g})")
    return all(r.ok for r in table.criteria)


def check_all(entries: dict[str, Entry], checks: list[targets.Target], results_dir: str,
              allow_dirty: bool = False) -> int:
    """Rebuild every entry named in ``checks`` from the runs already there (running nothing) and
    compare; an entry with missing runs is an error naming the command that makes them."""
    names = list(dict.fromkeys(t.entry for t in checks))
    pilots = build.pilot_runs(entries, results_dir)
    built = []
    for name in names:
        entry = entries[name]
        points = resolve(entry)
        found = existing.find(points, results_dir, entry.setting)
        missing = sum(f is None for f in found)
        if missing:
            raise ConfigError(f"reproduce --check: '{name}' has {missing} of {len(points)} run(s) missing under "
                              f"{results_dir}; run `lossmooth reproduce {name}` first")
        clean_provenance(entry, found, allow_dirty)
        build.not_a_pilot(entry, found, pilots)
        for line in existing.data_differs(entry, found):
            print(f"lossmooth: warning: {line}", file=sys.stderr)
        built.append((entry, points, found))
    cells, tables = [], []
    for entry, points, found in built:
        table, status = with_seed_plan(entry, build.tables(entry, points, found, results_dir), entries,
                                       results_dir, found)
        cells += targets.check([t for t in checks if t.entry == entry.name], targets.table_rows(table.csv))
        tables.append((entry, table, status))
    ok = True
    for entry, table, status in tables:
        build.write(entry, table, results_dir)
        print(f"rebuilt {entry.name}: wrote " + ", ".join(entry.outputs(results_dir).values()))
        if table.criteria:
            held = sum(r.ok for r in table.criteria)
            print(f"  criteria: {held} of {len(table.criteria)} as stated "
                  f"({sum(r.holds for r in table.criteria)} hold, {sum(bool(r.criterion.missed) for r in table.criteria)} stated as missed)")
        if table.order is not None:
            print(f"  plan: {table.order.text}")
        held, planned = criteria_hold(entry, table), say(entry, status)  # both print their lines
        ok = held and planned and ok
    print("\n" + targets.report(cells))
    return 0 if all(c.passed for c in cells) and ok else 1
