"""What makes a registry entry a measurement: its ``criteria``, checked on its regenerated table.

A criterion is stated before looking at which method wins and never names a direction between methods:
it bounds one cell of the entry's CSV table (:func:`lossmooth.results.tables.csv_text`), for example
the hard switch's source performance at the switch (the source model is competent), the lower end of
the CI of its source drop (the switch shows the phenomenon), or the half-width of a paired difference's
CI (enough seeds). In an entry's YAML::

    criteria:
      - name: "(a) competent source: source accuracy at the switch >= 80%"
        row: kind=aggregate method=hard_switch     # selects one row, as in results/targets.csv
        metric: source_at_switch_mean              # a column of that row
        at_least: 0.8                              # or above / below (strict), at_most, max_halfwidth
        missed: "..."                              # optional: a criterion the entry is known to miss, and why

``max_halfwidth: h`` bounds ``(metric_hi - metric_lo) / 2``. ``lossmooth reproduce`` writes the results
under the table; ``--check`` fails on a criterion that is missed without a stated reason, and on one
whose stated miss no longer holds (the reason would be stale).
"""
from __future__ import annotations

import dataclasses
import math

from lossmooth.errors import ConfigError
from lossmooth.reproduce.targets import select_row, selector

TESTS = ("above", "below", "at_least", "at_most", "max_halfwidth")
_FIELDS = {"name", "row", "metric", "missed", *TESTS}


@dataclasses.dataclass(frozen=True)
class Criterion:
    name: str
    row: tuple[tuple[str, str], ...]
    metric: str
    test: str
    bound: float
    missed: str = ""


@dataclasses.dataclass(frozen=True)
class Result:
    criterion: Criterion
    value: float
    holds: bool

    @property
    def ok(self) -> bool:
        """As the entry states it: holds where no miss is stated, is missed where one is."""
        return self.holds != bool(self.criterion.missed)


def parse(raw, where: str) -> tuple[Criterion, ...]:
    """An entry's ``criteria`` list, validated (one-line :class:`ConfigError` starting with ``where``)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: criteria must be a list of mappings with name, row, metric and one of "
                          f"{', '.join(TESTS)}")
    out = []
    for i, c in enumerate(raw):
        at = f"{where}: criteria[{i}]"
        if not isinstance(c, dict) or set(c) - _FIELDS or not {"name", "row", "metric"} <= set(c):
            raise ConfigError(f"{at}: needs name, row, metric and one of {', '.join(TESTS)} (and optionally missed)")
        tests = [t for t in TESTS if t in c]
        if len(tests) != 1:
            raise ConfigError(f"{at}: give exactly one of {', '.join(TESTS)}")
        bound = c[tests[0]]
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
            raise ConfigError(f"{at}: {tests[0]} must be a finite number, got {bound!r}")
        out.append(Criterion(name=str(c["name"]), row=selector(str(c["row"]), at), metric=str(c["metric"]), test=tests[0],
                             bound=float(bound), missed=str(c.get("missed") or "")))
    return tuple(out)


def evaluate(criteria: tuple[Criterion, ...], rows: list[dict], entry: str) -> list[Result]:
    """Each criterion on the entry's table ``rows`` (the CSV's rows, as strings)."""
    out = []
    for c in criteria:
        row = select_row(rows, c.row, f"entry '{entry}': criterion '{c.name}'", entry)
        try:
            if c.test == "max_halfwidth":
                value = (float(row[f"{c.metric}_hi"]) - float(row[f"{c.metric}_lo"])) / 2.0
            else:
                value = float(row[c.metric])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"entry '{entry}': criterion '{c.name}': the row has no value for '{c.metric}'"
                              + (" (with _lo and _hi)" if c.test == "max_halfwidth" else "")) from None
        holds = math.isfinite(value) and {
            "above": value > c.bound, "below": value < c.bound, "at_least": value >= c.bound,
            "at_most": value <= c.bound, "max_halfwidth": value <= c.bound}[c.test]
        out.append(Result(c, value, holds))
    return out


_SHOWN = {"above": ">", "below": "<", "at_least": ">=", "at_most": "<=", "max_halfwidth": "CI half-width <="}


def shown(c: Criterion) -> str:
    """The criterion's bound as the tables show it (e.g. ``> 0``, ``CI half-width <= 0.02``)."""
    return f"{_SHOWN[c.test]} {c.bound:g}"


def report(results: list[Result]) -> str:
    """The criteria as a markdown section: each with its cell, value, bound and whether it holds."""
    if not results:
        return ""
    lines = ["**What makes this a measurement** (criteria stated before the comparison; none names a "
             "direction between methods):\n", "| criterion | cell | value | bound | holds |", "|---|---|---|---|---|"]
    for r in results:
        c = r.criterion
        cell = " ".join(f"{k}={v}" for k, v in c.row) + f" / {c.metric}"
        holds = "yes" if r.holds else ("no (known: " + c.missed + ")" if c.missed else "**no**")
        if r.holds and c.missed:
            holds = "yes (but stated as missed: the entry's reason is stale)"
        lines.append(f"| {c.name} | {cell} | {r.value:.4g} | {shown(c)} | {holds} |")
    return "\n".join(lines) + "\n"
