"""Numbers quoted in the docs' prose, filled from the committed tables: a page writes

    <!-- cell ENTRY ROW COLUMN -->84.0 [83.4, 84.7]<!-- /cell -->

and ``scripts/build_findings.py`` rewrites the text between the markers from
``<results_dir>/reproduce/ENTRY.csv``: ``ROW`` selects one row as ``lossmooth reproduce --check``'s
targets do (``key=value`` pairs, joined by commas here: ``kind=paired_diff,method=loss_smoothing``),
``COLUMN`` is one of its columns (``min_acc_diff``, ``final_target_acc_mean``, ...), shown with its
95% CI (the columns ``COLUMN_lo`` and ``COLUMN_hi``) where the table has one. Accuracies are shown in
percent (points for a difference), as the tables show them; a difference carries its sign; a p-value or
q-value (``COLUMN`` ending in ``_p``, ``_p_holm``, ``_q``) is shown as the probability it is. A test
fails when a page's quote differs from what the committed table gives, or when a page states a number
with a CI outside such a quote.
"""
from __future__ import annotations

import math
import os
import re

from lossmooth.errors import ConfigError
from lossmooth.reproduce import targets
from lossmooth.reproduce.registry import Entry
from lossmooth.results.metrics import kind_of

CELL = re.compile(r"<!-- cell (\S+) (\S+) (\S+) -->(.*?)<!-- /cell -->", re.S)
# a number with a CI as the tables write it: 84.0 [83.4, 84.7], -0.4 [-1.0, 0.1]
# p-values and q-values: probabilities, shown as they are (never in percent, never signed)
PROBABILITY = ("_p", "_p_holm", "_q")
WITH_CI = re.compile(r"[-+−]?\d[\d.]*\s*\[[-+−]?\d[\d.]*, [-+−]?\d[\d.]*\]")


def _number(x: float, pct: bool, signed: bool) -> str:
    if pct:
        x = 100 * x
        return f"{x:+.1f}" if signed else f"{x:.1f}"
    if abs(x) >= 1000:
        return f"{x:+.0f}" if signed else f"{x:.0f}"
    return f"{x:+.3g}" if signed else f"{x:.3g}"


def cell(entry: Entry, csv_text: str, row: str, column: str) -> str:
    """The text of one quoted cell: its value and, where the table has one, its 95% CI."""
    where = f"docs: cell {entry.name} {row} {column}"
    rows = targets.table_rows(csv_text)
    hit = targets.select_row(rows, targets.selector(row.replace(",", " "), where), where, entry.name)
    if hit.get(column, "") == "":
        raise ConfigError(f"{where}: the row has no value for '{column}'")
    value = float(hit[column])
    if column.endswith(PROBABILITY):
        return f"{value:.2g}"
    pct = kind_of([r for r in rows if r.get("kind") == "aggregate"]) == "acc" and not column.startswith("n")
    signed = "_diff" in column
    text = _number(value, pct, signed)
    lo, hi = hit.get(f"{column}_lo", ""), hit.get(f"{column}_hi", "")
    if lo != "" and hi != "" and not math.isnan(float(lo)):
        text += f" [{_number(float(lo), pct, False)}, {_number(float(hi), pct, False)}]"
    return text


def fill(text: str, entries: dict[str, Entry], results_dir: str) -> str:
    """``text`` with every quoted cell rewritten from the committed tables."""
    cache: dict[str, str] = {}

    def one(m: re.Match) -> str:
        name, row, column = m.group(1), m.group(2), m.group(3)
        if name not in entries:
            raise ConfigError(f"docs: cell names unknown entry '{name}'")
        if name not in cache:
            path = entries[name].outputs(results_dir)["csv"]
            if not os.path.exists(path):
                raise ConfigError(f"docs: cell {name}: its table {path} is missing")
            with open(path) as f:
                cache[name] = f.read()
        return f"<!-- cell {name} {row} {column} -->{cell(entries[name], cache[name], row, column)}<!-- /cell -->"

    return CELL.sub(one, text)


def unquoted(text: str) -> list[str]:
    """The numbers with a CI that ``text`` states outside quoted cells and generated blocks."""
    text = CELL.sub("", text)
    text = re.sub(r"<!-- (\w+):begin.*?<!-- \1:end -->", "", text, flags=re.S)
    return WITH_CI.findall(text)
