"""What ``lossmooth reproduce`` does with an entry: the ``lossmooth run`` commands for its missing
runs, and its table (markdown, CSV) and plot built from exactly its runs with the one aggregation
(:mod:`lossmooth.results.aggregate`), table (:mod:`lossmooth.results.tables`) and plot
(:mod:`lossmooth.results.plots`) code.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys

from lossmooth.errors import ConfigError
from lossmooth.reproduce import criteria, existing, order, targets
from lossmooth.reproduce.existing import Found
from lossmooth.reproduce.registry import Entry, Point, config_value, resolve
from lossmooth.results import aggregate as agg
from lossmooth.results.metrics import kind_of
from lossmooth.results.plots import plot_curves, plot_map
from lossmooth.results.tables import csv_text, map_markdown, markdown
from lossmooth.results.store import atomic_write


def commands(entry: Entry, points: list[Point], found: list[Found | None], results_dir: str,
             launcher: str | None = None, host: tuple[str, ...] = ()) -> list[list[str]]:
    """The ``lossmooth`` arguments that make the missing points, one list per command.

    Locally every missing point is its own ``lossmooth run``. Through a launcher a run of the entry
    whose points are all missing goes as one multirun (its sweep intact: one job per point); the
    missing points of a partly done run go one multirun each, so no existing run is redone.
    ``host`` (host-only and ``hydra.`` overrides) is passed to every command.
    """
    tail = [f"results_dir={results_dir}", *host]
    out = []
    for i in range(len(entry.runs)):
        mine = [(p, f) for p, f in zip(points, found) if p.run == i]
        todo = [p for p, f in mine if f is None]
        if not todo:
            continue
        if launcher is None:
            out += [["run", *p.overrides, *tail] for p in todo]
        elif len(todo) == len(mine):
            out.append(["run", "-m", f"hydra/launcher={launcher}", *entry.run_overrides(i), *tail])
        else:
            out += [["run", "-m", f"hydra/launcher={launcher}", *p.overrides, *tail] for p in todo]
    return out


def shown(args: list[str]) -> str:
    """A command as a user would type it."""
    return "lossmooth " + shlex.join(args)


def execute(args: list[str]) -> int:
    """Run ``lossmooth <args>`` in a child process (its output goes straight to ours); its exit status."""
    return subprocess.run([sys.executable, "-m", "lossmooth.cli", *args]).returncode


def rows_of(entry: Entry, runs: list[Found], results_dir: str) -> list[dict]:
    """The table rows (one per method, numbers and seed) of exactly ``runs``, filtered by the entry's
    ``where``, with its ``label_by`` config values added to each row's numbers."""
    configs = {r.path: r.config for r in runs}
    rows = agg.collect(results_dir, entry.setting, dict(entry.where), run_dirs=set(configs))
    if not rows:
        raise ConfigError(f"entry '{entry.name}': aggregate.where {dict(entry.where)} leaves no rows of its runs")
    for r in rows:
        for key in entry.label_by:
            name = key.rsplit(".", 1)[-1]
            if name in r["hparams"]:
                raise ConfigError(f"entry '{entry.name}': aggregate.label_by '{key}' clashes with the "
                                  f"row number '{name}'")
            r["hparams"] = {**r["hparams"],
                            name: config_value(configs[r["run_dir"]], key, f"entry '{entry.name}': label_by")}
    return rows


@dataclasses.dataclass(frozen=True)
class Table:
    """An entry's regenerated table: markdown, CSV (every aggregated number) and the rows it is built from."""

    markdown: str
    csv: str
    rows: list
    diffs: list = dataclasses.field(default_factory=list)
    pct: bool = False
    criteria: list = dataclasses.field(default_factory=list)  # criteria.Result per criterion of the entry
    order: object = None  # order.Order: whether the entry's plan was committed before its runs


def tables(entry: Entry, points: list[Point], runs: list[Found], results_dir: str) -> Table:
    """The entry's table built from ``runs`` (one per point, in order); nothing is written."""
    rows = rows_of(entry, runs, results_dir)
    groups, diffs, normalized = agg.tables(rows, reps=entry.reps)
    family = analysis(entry, diffs)
    if entry.map:
        agg.adjust_map(diffs, entry.map[1], entry.map[2])
    text = csv_text(groups, diffs, normalized)
    results = criteria.evaluate(entry.criteria, targets.table_rows(text), entry.name)
    plan_order = order.check(entry.source, entry.name, [r.commit for r in runs]) if entry.source else None
    md = _header(entry, points, runs, results_dir, plan_order) + markdown(groups, diffs, entry.stat,
                                                                        normalized, family)
    if entry.map:
        md += map_markdown(diffs, *entry.map[:3], pct=kind_of(groups) == "acc")
    if results:
        md += "\n" + criteria.report(results)
    return Table(markdown=md, csv=text, rows=rows, criteria=results, diffs=diffs,
                 pct=kind_of(groups) == "acc", order=plan_order)


def pilot_runs(entries: dict[str, Entry], results_dir: str) -> dict[str, str]:
    """Run directory -> the pilot entry that uses it, over every pilot entry's existing runs."""
    out = {}
    for e in entries.values():
        if e.pilot:
            for f in existing.find(resolve(e), results_dir, e.setting):
                if f is not None:
                    out[f.path] = e.name
    return out


def not_a_pilot(entry: Entry, found: list, pilots: dict[str, str]) -> None:
    """A result entry may not use a pilot's runs (one line naming both)."""
    if entry.pilot:
        return
    for f in found:
        if f is not None and f.path in pilots:
            raise ConfigError(f"entry '{entry.name}' would use {f.path}, a run of the pilot entry "
                              f"'{pilots[f.path]}': a pilot is never a result; give the result its own runs "
                              "(e.g. more seeds, or another run directory made after the plan)")


def analysis(entry: Entry, diffs: list[dict]) -> dict | None:
    """Holm-adjust the entry's primary family (:func:`lossmooth.results.aggregate.adjust_family`); a
    primary metric that no paired row of its family has is bad input (one line)."""
    if not entry.primary:
        return None
    where = dict(entry.family)
    rows = [d for d in diffs if agg.matches(d, where)]
    if diffs and not rows:
        raise ConfigError(f"entry '{entry.name}': analysis.family {where} selects none of its paired rows")
    absent = [m for m in entry.primary if rows and not any(f"{m}_diff" in d for d in rows)]
    if absent:
        have = sorted({k[:-len("_diff")] for d in rows for k in d if k.endswith("_diff")})
        raise ConfigError(f"entry '{entry.name}': analysis.primary {', '.join(absent)} is not a summary of its "
                          f"runs (they have {', '.join(have)})")
    return agg.adjust_family(diffs, entry.primary, where)


def write(entry: Entry, table: Table, results_dir: str) -> None:
    """Write the table (markdown, CSV) and the plot of its rows to :meth:`Entry.outputs`, each file
    atomically."""
    out = entry.outputs(results_dir)
    os.makedirs(os.path.dirname(out["md"]), exist_ok=True)
    atomic_write(out["md"], table.markdown)
    atomic_write(out["csv"], table.csv)
    plot_curves(table.rows, out["png"], entry.title)
    if entry.map:
        plot_map(table.diffs, out["map"], *entry.map[:3], pct=table.pct, title=entry.title, style=entry.map[3])


def _header(entry: Entry, points: list[Point], runs: list[Found], results_dir: str, plan_order=None) -> str:
    lines = [f"# {entry.name}", "", entry.description, "",
             f"Rebuilt by `lossmooth reproduce {entry.name}` from {len(runs)} run(s):", "",
             "| run directory | commit | overrides |" + (" data |" if any(r.data for r in runs) else ""),
             "|---|---|---|" + ("---|" if any(r.data for r in runs) else "")]
    for p, r in zip(points, runs):
        data = ("; ".join(f"{k} {v[:12] if isinstance(v, str) else v}" for k, v in r.data.items()) + " |") \
            if any(x.data for x in runs) else ""
        lines.append(f"| {os.path.relpath(r.path, results_dir)} | {r.commit} | `{shlex.join(p.overrides)}` |{data}")
    if entry.pilot:
        lines += ["", "**Pilot**: a regime choice, never a result (no result entry may use its runs)."]
    if plan_order is not None:
        lines += ["", plan_order.text]
    return "\n".join(lines) + "\n\n"
