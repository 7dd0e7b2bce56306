"""Target numbers for the regenerated tables, as data (``results/targets.csv``), and the check of a
table against them.

Columns: ``entry,row,metric,target,tolerance,note``.

- ``entry``: a registry entry;
- ``row``: space-separated ``key=value`` pairs that select exactly one row of the entry's CSV table
  (:func:`lossmooth.results.tables.csv_text`): keys are its columns (``kind`` = aggregate /
  paired_diff / normalized_by_hard_switch, ``dataset``, ``model`` (the algorithm in RL), ``shift``,
  ``method``, ...) or ``hparams.<name>`` (a method's numbers, e.g. ``hparams.T=50``); values compare
  as numbers where both sides are numbers;
- ``metric``: a column of that table, e.g. ``final_target_acc_mean`` or ``stability_gap_diff``;
- a cell passes when ``|value - target| <= tolerance`` (absolute, in the metric's own unit: accuracies
  as fractions, returns and scores as recorded).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os

from lossmooth.errors import ConfigError
from lossmooth.provenance import CONF_DIR

COLUMNS = ("entry", "row", "metric", "target", "tolerance", "note")
TARGETS = os.path.join(os.path.dirname(CONF_DIR), "results", "targets.csv")


@dataclasses.dataclass(frozen=True)
class Target:
    """One targeted cell; ``line`` is its line in the targets file (for error messages)."""

    entry: str
    row: tuple[tuple[str, str], ...]
    metric: str
    target: float
    tolerance: float
    note: str
    line: int

    @property
    def cell(self) -> str:
        return f"{self.entry}: {' '.join(f'{k}={v}' for k, v in self.row)} / {self.metric}"


@dataclasses.dataclass(frozen=True)
class Cell:
    """A targeted cell with its regenerated value and whether it is within tolerance."""

    target: Target
    value: float
    passed: bool


def read(path: str, entries) -> list[Target]:
    """Every target in the CSV file at ``path``; each must name one of ``entries`` (one-line error
    naming the file and line otherwise)."""
    try:
        with open(path, newline="") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"--targets: cannot read {path} ({e.strerror or e})") from None
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        lines = list(reader)
    except csv.Error as e:
        raise ConfigError(f"--targets: {path} is not valid CSV ({e})") from None
    missing = [c for c in COLUMNS[:-1] if c not in header]
    if missing:
        raise ConfigError(f"--targets: {path} lacks column(s) {', '.join(missing)}; "
                          f"the header must be {','.join(COLUMNS)}")
    out = []
    for n, raw in enumerate(lines, start=2):
        where = f"--targets: {path} line {n}"
        if None in raw or any(raw.get(c) is None for c in COLUMNS[:-1]):
            raise ConfigError(f"{where}: expected the {len(header)} columns {','.join(header)}")
        if raw["entry"] not in entries:
            raise ConfigError(f"{where}: unknown entry '{raw['entry']}'; choose one of {', '.join(entries)}")
        nums = {}
        for c in ("target", "tolerance"):
            try:
                nums[c] = float(raw[c])
            except ValueError:
                nums[c] = float("nan")
            if not math.isfinite(nums[c]) or (c == "tolerance" and nums[c] < 0):
                raise ConfigError(f"{where}: {c} must be a finite number{' >= 0' if c == 'tolerance' else ''}, "
                                  f"got {raw[c]!r}")
        if not raw["metric"].strip():
            raise ConfigError(f"{where}: metric is empty; name a column of the entry's CSV table")
        out.append(Target(entry=raw["entry"], row=selector(raw["row"], where), metric=raw["metric"].strip(),
                          target=nums["target"], tolerance=nums["tolerance"], note=raw.get("note") or "", line=n))
    return out


def selector(text: str, where: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{where}: row must be key=value pairs separated by spaces, got {text!r}")
        pairs.append((key, value))
    if not pairs:
        raise ConfigError(f"{where}: row is empty; select a row, e.g. kind=aggregate method=hard_switch")
    return tuple(pairs)


def table_rows(csv_text: str) -> list[dict]:
    """The rows of a table's CSV text (:func:`lossmooth.results.tables.csv_text`), as strings."""
    return list(csv.DictReader(io.StringIO(csv_text)))


def check(targets: list[Target], rows: list[dict]) -> list[Cell]:
    """Each target against the table ``rows`` of its entry (a row selector that matches no row or
    several, or a metric the row does not have, is a one-line error)."""
    out = []
    for t in targets:
        row = _select(t, rows)
        raw = row.get(t.metric)
        if raw is None:
            metrics = [c for c in rows[0] if c.endswith(("_mean", "_iqm", "_diff")) or c in ("mean", "iqm")]
            raise ConfigError(f"--targets line {t.line}: metric '{t.metric}' is not a column of the table "
                              f"of '{t.entry}'; its metrics: {', '.join(metrics)}")
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"--targets line {t.line}: the row {t.cell} has no value for "
                              f"'{t.metric}' (another kind of row has it)") from None
        out.append(Cell(target=t, value=value,
                        passed=math.isfinite(value) and abs(value - t.target) <= t.tolerance))
    return out


def _select(t: Target, rows: list[dict]) -> dict:
    return select_row(rows, t.row, f"--targets line {t.line}", t.entry)


def select_row(rows: list[dict], selector: tuple, where: str, entry: str) -> dict:
    """The one row of an entry's table ``rows`` that ``selector`` (``(key, value)`` pairs) picks; a
    one-line error (starting with ``where``) when it picks none or several."""
    columns = set(rows[0]) if rows else set()
    for key, _ in selector:
        if key not in columns and not key.startswith("hparams."):
            raise ConfigError(f"{where}: row key '{key}' is not a column of the table of "
                              f"'{entry}'; use one of {', '.join(sorted(columns))} or hparams.<name>")
    hits = [r for r in rows if all(_same(_field(r, k), v) for k, v in selector)]
    if len(hits) != 1:
        labels = sorted({f"kind={r.get('kind')} model={r.get('model')} method={r.get('method')} "
                         f"hparams={r.get('hparams')}" for r in rows})
        raise ConfigError(f"{where}: row '{' '.join(f'{k}={v}' for k, v in selector)}' matches "
                          f"{len(hits)} rows of the table of '{entry}' (needs exactly 1); its rows: "
                          + "; ".join(labels))
    return hits[0]


def matches(row: dict, selector) -> bool:
    """Whether a table row (CSV strings) has every ``(key, value)`` of ``selector`` (``hparams.<name>``
    reads a number)."""
    return all(_same(_field(row, k), v) for k, v in selector)


def _field(row: dict, key: str):
    if key.startswith("hparams."):
        hp = json.loads(row.get("hparams") or "{}")
        return hp.get(key.split(".", 1)[1])
    return row.get(key)


def _same(have, want: str) -> bool:
    """A selector value picks a cell equal to it, or whose first word it is (a dataset's id before
    the identity note the tables add: ``lossmooth/halfcheetah-random-v0 (sha256 ...)``)."""
    if have is None:
        return False
    if str(have) == want or str(have).split(" ", 1)[0] == want:
        return True
    try:
        return float(have) == float(want)
    except (TypeError, ValueError):
        return False


def report(cells: list[Cell]) -> str:
    """A markdown table of the checked cells and one line with the count that passed."""
    lines = ["| cell | regenerated | target | tolerance | result |", "|---|---|---|---|---|"]
    for c in cells:
        lines.append(f"| {c.target.cell} | {c.value:.6g} | {c.target.target:.6g} | {c.target.tolerance:.3g} | "
                     f"{'pass' if c.passed else 'FAIL'} |")
    n = sum(c.passed for c in cells)
    lines.append(f"\n{n} of {len(cells)} cells pass (pass: |regenerated - target| <= tolerance)")
    return "\n".join(lines) + "\n"
