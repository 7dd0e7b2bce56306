"""``lossmooth table``: the complete runs of a results folder as one table per setting (their units and
summaries differ: accuracy, return, score, loss): per method the mean over seeds with a 95% Student-t
CI (or the IQM), then each method minus the hard switch paired by seed, its CI and an exact sign-flip
p-value; with ``primary`` summaries, their paired p-values Holm-adjusted over every paired row."""
from __future__ import annotations

from lossmooth.app import folders
from lossmooth.errors import ConfigError
from lossmooth.results import aggregate as agg
from lossmooth.results import metrics, tables
from lossmooth.results.store import atomic_write


def primary_metrics(text: str | None) -> list[str]:
    """``--primary m1,m2`` as known summary names (one line naming any other)."""
    primary = [m for m in (text or "").split(",") if m]
    unknown = [m for m in primary if not metrics.is_summary_name(m)]
    if unknown or (text is not None and not primary):
        raise ConfigError(f"--primary: unknown metric(s) {', '.join(unknown) or repr(text)}; give summary "
                          "names separated by commas, e.g. final_target_acc,min_acc")
    return primary


def family_of(name: str, diffs: list[dict], primary: list[str]):
    """The Holm-adjusted family of one setting's paired rows (None without primary summaries)."""
    if not primary:
        return None
    absent = [m for m in primary if not any(f"{m}_diff" in d for d in diffs)]
    few = [d for d in diffs if d["n_pairs"] < 2]
    if absent or few or not diffs:
        raise ConfigError(f"--primary: {name}'s paired rows " + (
            f"have no {', '.join(absent)}" if absent and diffs else
            "hold one pair only (n = 1): nothing to test; run more seeds" if few else
            "do not exist (no method beside the hard switch)"))
    return agg.adjust_family(diffs, primary)


def table(results_dir: str, setting: str | None = None, where: list[str] = (), stat: str = "mean",
          reps: int = 2000, markdown: str | None = None, csv: str | None = None, primary: str | None = None) -> str:
    """Print the tables (and write ``markdown``/``csv``); every input is checked before anything is
    printed or written."""
    folders.reading_folder("table", results_dir)
    if reps < 1:
        raise ConfigError(f"--reps: must be at least 1 bootstrap resample, got {reps}")
    wanted = primary_metrics(primary)
    folders.output_path("--markdown", markdown)
    folders.output_path("--csv", csv)
    rows = agg.collect(results_dir, setting, folders.where(where), progress=folders.progress(results_dir))
    if not rows:
        raise folders.no_runs(results_dir, list(where))
    by_setting: dict[str, list] = {}
    for r in rows:
        by_setting.setdefault(r["setting"], []).append(r)
    parts, csv_parts = [], [[], [], []]
    for name, rs in sorted(by_setting.items()):
        groups, diffs, normalized = agg.tables(rs, reps=reps)
        md = tables.markdown(groups, diffs, stat, normalized, family_of(name, diffs, wanted))
        parts.append(md if len(by_setting) == 1 else f"## {name}\n\n{md}")
        for acc, part in zip(csv_parts, (groups, diffs, normalized)):
            acc += part
    md = "\n".join(parts)
    print(md)
    if markdown:
        atomic_write(markdown, md)
    if csv:
        atomic_write(csv, tables.csv_text(*csv_parts))
    return md
