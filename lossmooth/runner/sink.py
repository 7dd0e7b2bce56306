"""Where a run's metric rows go: ``metrics.jsonl`` (:class:`lossmooth.results.store.RunStore`) and the
dashboards (:class:`lossmooth.runner.loggers.Loggers`).

A metric row is one run's (a source phase: one seed's) evaluation at one step: its identity fields
(``phase``, the line, ``run_index`` or ``seed``, ``method``, ...), ``step`` and one value per metric.
Rows of a chunk go out as the chunk ends; the evaluation at a phase's start (step 0) after the
phase's chunks; the dense evaluation's rows (phase ``adapt_dense``, updates 0..W after the switch)
after those, to ``metrics.jsonl`` only (a dashboard's steps only go forward). A resumed run keeps
the rows its newest checkpoint had seen: a start or dense row already in the file is not written
again (:func:`row_key` says which rows are the same).
"""
from __future__ import annotations

import os

from lossmooth.results import aggregate as agg
from lossmooth.results import plots, tables
from lossmooth.results import store
from lossmooth.results import tables


def row_key(row: dict, line_key: str | None) -> tuple:
    """What identifies a metric row: phase, line, run (or seed, in a source phase) and step."""
    return (row.get("phase"), row.get(line_key) if line_key else None, row.get("run_index", row.get("seed")),
            row.get("step"))


def value_rows(ids: list[dict], metrics: dict, column: int, step: int) -> list[dict]:
    """One row per run ``j``: ``ids[j]``, ``step`` and every metric's ``[j, column]`` as a float."""
    return [{**ids[j], "step": int(step), **{k: float(v[j, column]) for k, v in metrics.items()}}
            for j in range(len(ids))]


class RowSink:
    """The metric rows of one run directory ``rs`` and its ``loggers``; ``line_key``: the row field
    naming a run's line (:attr:`lossmooth.settings.contract.Setting.line_key`)."""

    def __init__(self, rs, loggers, line_key: str | None):
        self.rs, self.loggers, self.line_key = rs, loggers, line_key
        # rows already in metrics.jsonl (a resumed run keeps those its newest checkpoint had seen)
        self.present = ({row_key(r, line_key) for r in store.read_metrics(rs.path)} if rs.metric_rows() else set())

    def chunk(self, ids: list[dict], eval_every: int, c: int, m: dict) -> None:
        """Chunk ``c``'s rows: evaluation ``e`` of ``k`` in the chunk is at step ``(c k + e + 1) eval_every``."""
        k = next(iter(m.values())).shape[1]
        rows = []
        for e in range(k):
            rows += value_rows(ids, m, e, (c * k + e + 1) * eval_every)
        self.rs.append_metrics(rows)
        self.loggers.rows(rows)

    def opened(self, ids: list[dict], names: list[str]) -> None:
        """A batch of adaptation runs begins: their dashboards open (``names``: their labels)."""
        self.loggers.start(ids, names)

    def at_switch(self, ids: list[dict], values: dict) -> None:
        """The evaluation at the switch (``{metric: [runs]}``) to the dashboards, before the chunks'
        rows (to ``metrics.jsonl`` it goes after them: :meth:`start`)."""
        self.loggers.rows([{**x, "step": 0, **{k: float(a[j]) for k, a in values.items()}}
                           for j, x in enumerate(ids)])

    def start(self, ids: list[dict], result) -> None:
        """The evaluation at the phase's start (step 0) where the phase made one, once."""
        if result.steps[0] == 0:
            self.once(value_rows(ids, result.metrics, 0, 0))

    def dense(self, ids: list[dict], result) -> None:
        """The dense evaluation's rows (phase ``adapt_dense``, one per run and update 0..W), once;
        they stay out of the dashboards."""
        if result.dense is None:
            return
        width = len(next(iter(result.dense.values()))[0])
        self.once([{**ids[j], "phase": "adapt_dense", "step": k,
                    **{name: float(v[j, k]) for name, v in result.dense.items()}}
                   for j in range(len(ids)) for k in range(width)], dashboards=False)

    def once(self, rows: list[dict], dashboards: bool = True) -> None:
        """``rows`` not yet in metrics.jsonl to it (and to the dashboards)."""
        rows = [r for r in rows if row_key(r, self.line_key) not in self.present]
        if rows:
            self.rs.append_metrics(rows)
            if dashboards:
                self.loggers.rows(rows)
            self.present.update(row_key(r, self.line_key) for r in rows)

    def finish(self, rows: list[dict], meta: dict) -> None:
        """Each run's summaries to its dashboards, then the job's table and curves (:func:`publish`)."""
        self.loggers.finish(rows)
        publish(self.loggers, rows, self.rs.path, meta)


def publish(loggers, rows: list[dict], run_dir: str, meta: dict) -> None:
    """The job's table and curves (as ``lossmooth table`` and ``lossmooth plot`` build them) to the
    dashboards' summary run (nothing where wandb is off)."""
    if loggers.mode == "disabled":
        return
    tabled = [dict(r, run_dir=run_dir, stand_in=meta.get("stand_in", True)) for r in rows]
    groups, diffs, normalized = agg.tables(tabled, reps=1000)
    figure = os.path.join(run_dir, "wandb", "curves.png")
    os.makedirs(os.path.dirname(figure), exist_ok=True)
    plots.plot_curves(tabled, figure)
    table_rows = [dict(g, kind="aggregate") for g in groups] + [dict(d, kind="paired_diff") for d in diffs] + \
        [dict(e, kind="normalized_by_hard_switch") for e in normalized]
    for r in table_rows:  # a dashboard table's column holds one type: a sequence's switch (1, 2, ..., all) as text
        if "switch" in r:
            r["switch"] = str(r["switch"])
    loggers.job(table_rows, tables.markdown(groups, diffs, normalized=normalized), figure)
