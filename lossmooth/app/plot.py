"""``lossmooth plot``: the learning curves around the switch (source and target against the step, 0 at
the switch; the mean over seeds with a band) of the complete runs of a results folder, one line per
method, to an image file."""
from __future__ import annotations

import os

from lossmooth.app import folders
from lossmooth.errors import ConfigError
from lossmooth.results import aggregate as agg
from lossmooth.results import plots


def has_rows(run_dir: str) -> bool:
    """The run directory's metrics.jsonl holds something (a whole last line is checked by the store)."""
    try:
        return os.path.getsize(os.path.join(run_dir, "metrics.jsonl")) > 0
    except OSError:
        return False


def plot(results_dir: str, out: str, setting: str | None = None, where: list[str] = (),
         title: str | None = None) -> None:
    """Draw the curves to ``out``; every input is checked before anything is written."""
    folders.reading_folder("plot", results_dir)
    rows = agg.collect(results_dir, setting, folders.where(where))
    if not rows:
        raise folders.no_runs(results_dir, list(where))
    if not any(has_rows(d) for d in {r["run_dir"] for r in rows}):
        raise ConfigError(f"nothing to draw: the complete runs under {results_dir} matching "
                          f"{list(where) or 'the filter'} hold no metric rows (empty metrics.jsonl); run them again")
    folders.output_path("--out", out)
    plots.plot_curves(rows, out, title)
    print(f"wrote {out}")
