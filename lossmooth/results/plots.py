"""Plots (PNG, or PDF/SVG by the file's name) built from runs and aggregated runs: the learning curves
around the switch (every task through a sequence of switches) and the maps of paired differences whose
grids :mod:`lossmooth.results.tables` builds."""
from __future__ import annotations

import dataclasses

import numpy as np

from lossmooth.results import store
from lossmooth.results.aggregate import usable
from lossmooth.results.metrics import QUANTITY, STANDARD, kind_of
from lossmooth.results.tables import Q_LEVEL, col_label, hparams_text, map_cells, map_title, resolved

def _curves(rows: list[dict], metric: str, phase: str = "adapt") -> dict[str, dict[int, list[float]]]:
    """label -> step -> values over seeds, from the metrics.jsonl of each row's run directory (``phase``
    ``adapt_dense``: the dense evaluation after the switch)."""
    curves: dict[str, dict] = {}
    by_dir: dict[str, dict] = {}
    for r in rows:
        if usable(r):
            by_dir.setdefault(r["run_dir"], {})[r["run_index"]] = r
    for d, wanted in by_dir.items():
        try:
            rows = store.read_metrics(d)
        except store.CorruptRun as e:
            store.warn(f"skipping {d} in the plot: {e}")
            continue
        for m in rows:
            if m.get("phase") == phase and m["run_index"] in wanted:
                r = wanted[m["run_index"]]
                label = r["method"] + (f" ({hparams_text(r['hparams'])})" if hparams_text(r["hparams"]) else "")
                if r.get("setting") != "supervised" and r.get("model"):
                    label = f"{r['model']}: {label}"
                if metric in m:
                    curves.setdefault(label, {}).setdefault(m["step"], []).append(m[metric])
    return curves


def _band(ax, curve: dict, label: str) -> None:
    """A curve (x -> values over seeds): the mean, with a band from min to max."""
    xs = np.array(sorted(curve))
    vals = [np.asarray(curve[x]) for x in xs]
    ax.plot(xs, [v.mean() for v in vals], label=label)
    ax.fill_between(xs, [v.min() for v in vals], [v.max() for v in vals], alpha=0.2)


def _finish(fig, axes, rows: list[dict], title: str, out_png: str) -> None:
    """The legend, the title (marked where any run is on stand-in data) and the file."""
    axes[0, 0].legend(fontsize=7)
    stand_in = any(r.get("stand_in", True) for r in rows)
    fig.suptitle(title + (" [stand-in data]" if stand_in else ""))
    fig.tight_layout()
    _save(fig, out_png)


def _save(fig, out_png: str) -> None:
    import os

    import matplotlib.pyplot as plt

    ext = os.path.splitext(out_png)[1] or ".png"
    tmp = out_png + ".tmp" + ext  # the format follows the name (png, pdf, svg)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out_png)


def plot_sequence(rows: list[dict], out_png: str, title: str | None = None) -> None:
    """A sequence of switches: every task's accuracy (RL: return) over the whole sequence (a panel per
    task, the switches as dashed lines), per method (and algorithm or model, where a run has several)
    the mean over seeds, band = min..max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    switch_rows = [r for r in rows if isinstance(r.get("switch"), int) and usable(r)]
    unit = kind_of(switch_rows)
    several = len({r.get("model") for r in switch_rows}) > 1
    tasks = max(len(r["sequence"]["tasks"]) for r in rows if r.get("sequence"))
    names = next(r["sequence"]["tasks"] for r in rows if r.get("sequence"))
    curves: dict[int, dict[str, dict[int, list]]] = {j: {} for j in range(tasks)}
    by_dir: dict[str, dict] = {}
    for r in switch_rows:
        by_dir.setdefault(r["run_dir"], {})[r["run_index"]] = r
    read = {}
    for d, wanted in by_dir.items():
        try:
            read[d] = [m for m in store.read_metrics(d) if m.get("phase") == "adapt" and m.get("run_index") in wanted]
        except store.CorruptRun as e:
            store.warn(f"skipping {d} in the plot: {e}")
    spans = {}  # every switch of a line (algorithm, model) has the same length; lines may differ (RL budgets)
    for d, metrics in read.items():
        for m in metrics:
            line = (d, by_dir[d][m["run_index"]].get("model"))
            spans[line] = max(spans.get(line, 0), m["step"])
    scaled = len(set(spans.values())) > 1  # then each switch spans 1 on the x axis
    length = 1 if scaled else max(spans.values(), default=0)
    for d, metrics in read.items():
        for m in metrics:
            r = by_dir[d][m["run_index"]]
            label = (f"{r.get('model')}/" if several else "") + r["method"] + (
                f" ({hparams_text(r['hparams'])})" if hparams_text(r["hparams"]) else "")
            span = spans[(d, r.get("model"))]
            x = (m["switch"] - 1) + m["step"] / max(span, 1) if scaled else (m["switch"] - 1) * span + m["step"]
            for j in range(tasks):
                if f"task{j}_{unit}" in m:
                    curves[j].setdefault(label, {}).setdefault(x, []).append(m[f"task{j}_{unit}"])
    cols = 2
    fig, axes = plt.subplots(-(-tasks // cols), cols, figsize=(11, 3.6 * -(-tasks // cols)), squeeze=False)
    for j, ax in enumerate(axes.ravel()):
        if j >= tasks:
            ax.axis("off")
            continue
        for label, c in sorted(curves[j].items()):
            _band(ax, c, label)
        for i in range(tasks - 1):
            ax.axvline(i * length, color="k", lw=0.8, ls="--")
        task = names[j] if j < len(names) else {}
        ax.set_title(f"task {j}: " + (f"{task.get('shift')}({task.get('severity'):g})" if j else "unshifted"), fontsize=9)
        ax.set_xlabel("switches since the first (each switch's steps scaled to 1)" if scaled else
                      ("update" if unit == "acc" else "target-task env step") + " since the first switch (dashed: switches)")
        ax.set_ylabel(QUANTITY[unit])
        ax.grid(alpha=0.3)
    _finish(fig, axes, rows, title or "every task through the sequence", out_png)


def plot_curves(rows: list[dict], out_png: str, title: str | None = None) -> None:
    """Target and source accuracy (return, RL) around the switch: mean over seeds, band = min..max;
    for a sequence of switches every task through it (:func:`plot_sequence`)."""
    if any(r.get("sequence") for r in rows):
        return plot_sequence(rows, out_png, title)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = kind_of(rows)
    # the setting's own curve names (runs made before they were recorded: the kind's standard ones); one task
    # (offline-to-online): the episode return recorded beside the score in the second panel
    named = next((r["curves"] for r in rows if r.get("curves")), None) or dataclasses.asdict(STANDARD[unit])
    curves = (named["target"], named.get("source") or named["target"].replace("score", "return"))
    dense = {m: _curves(rows, m, "adapt_dense") for m in curves}
    panels = [("adapt", m, None) for m in curves]
    if any(dense.values()):  # the first updates after the switch on their own axis
        panels += [("adapt_dense", m, dense[m]) for m in curves]
    fig, axes = plt.subplots(len(panels) // 2, 2, figsize=(11, 4 * (len(panels) // 2)), squeeze=False)
    for ax, (phase, metric, got) in zip(axes.ravel(), panels):
        for label, c in sorted((got if got is not None else _curves(rows, metric)).items()):
            _band(ax, c, label)
        ax.axvline(0, color="k", lw=0.8, ls="--")
        ax.set_xlabel({"acc": "adaptation step (0 = switch)", "return": "target-task env steps (0 = switch)",
                       "score": "online env steps (0 = switch)", "loss": "updates (0 = switch)"}[unit]
                      + (", every update (dense evaluation)" if phase == "adapt_dense" else ""))
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
    _finish(fig, axes, rows, title or "learning curves around the switch", out_png)


def plot_map(diffs: list[dict], out_png: str, rows: tuple, col: str, metrics: tuple, pct: bool,
             title: str | None = None, style: str = "heat") -> None:
    """Heatmaps of :func:`map_markdown`'s grids, one per metric, centred on 0 (blue: smoothing above the
    hard switch, red: below; for a lower-is-better metric read the sign accordingly); cells whose
    Benjamini-Hochberg q-value is below 0.05 are outlined and their numbers bold. ``style="lines"``: per metric, the paired
    difference with its 95% CI across the rows in order (e.g. pretraining budgets), a line per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    grids = [(m, *map_cells(diffs, rows, col, m)) for m in metrics]
    grids = [g for g in grids if g[3]]
    if not grids:
        return
    scale = 100.0 if pct else 1.0
    if style == "lines":
        _plot_map_lines(grids, out_png, col, scale, pct, title)
        return
    fig, axes = plt.subplots(1, len(grids), figsize=(4.2 * len(grids) + 1, 0.45 * len(grids[0][1]) + 2), squeeze=False)
    for ax, (m, labels, cols, cells) in zip(axes[0], grids):
        z = np.full((len(labels), len(cols)), np.nan)
        for (label, c), v in cells.items():
            z[labels.index(label), cols.index(c)] = v[0] * scale
        lim = np.nanmax(np.abs(z)) or 1.0
        ax.imshow(z, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        for (label, c), v in cells.items():
            i, j = labels.index(label), cols.index(c)
            sig = resolved(v)
            ax.text(j, i, f"{v[0] * scale:+.1f}" if pct else f"{v[0]:+.2g}", ha="center", va="center", fontsize=7,
                    fontweight="bold" if sig else "normal")
            if sig:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.5, ec="k"))
        ax.set_xticks(range(len(cols)), [col_label(c) for c in cols], fontsize=7 if col == "method" else None)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel(col)
        ax.set_title(m.replace("_", " ") + (" (pp)" if pct else ""), fontsize=9)
    fig.suptitle((title or map_title(col)) + f" (outlined: BH q < {Q_LEVEL:g})", fontsize=10)
    fig.tight_layout()
    _save(fig, out_png)


def _plot_map_lines(grids: list, out_png: str, col: str, scale: float, pct: bool, title: str | None) -> None:
    """The ``lines`` figure of :func:`plot_map`: x = the map's rows in order, y = the paired difference."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(grids), figsize=(3.6 * len(grids) + 1, 3.4), squeeze=False)
    for ax, (m, labels, cols, cells) in zip(axes[0], grids):
        for k, c in enumerate(cols):
            xs = [i + (k - (len(cols) - 1) / 2) * 0.06 for i, label in enumerate(labels) if (label, c) in cells]
            vals = [cells[(label, c)] for label in labels if (label, c) in cells]
            y = np.asarray([v[0] for v in vals]) * scale
            err = np.abs(np.asarray([[v[1] for v in vals], [v[2] for v in vals]]) * scale - y)
            ax.errorbar(xs, y, yerr=err, marker="o", ms=3, lw=1, capsize=2,
                        label=c if col == "method" else f"{col}={col_label(c)}")
        ax.axhline(0, color="grey", lw=0.6)
        short = [label.split("@", 1)[-1] for label in labels]
        ax.set_xticks(range(len(labels)), short, fontsize=6, rotation=20, ha="right")
        ax.set_title(m.replace("_", " ") + (" (pp)" if pct else ""), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(map_title(col))
    axes[0][0].legend(fontsize=7)
    fig.suptitle((title or map_title(col)) + " (paired mean, 95% t CI)", fontsize=10)
    fig.tight_layout()
    _save(fig, out_png)
