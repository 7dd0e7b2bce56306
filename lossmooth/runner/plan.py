"""The plan of a run: every phase the runner will run, in order, with everything it records them under,
computed once from the setting's answers before anything trains.

Per line (a setting's independent lines, online RL: its algorithms) ``l`` of ``L``: its source job
(run when the setting builds a source phase for the line), then per batch of runs (runs sharing one
compiled program) an adaptation job per switch ``s`` of ``S`` (one switch, or a sequence's). Run
``i`` of ``R`` (its position in the setting's runs) is numbered, at switch ``s`` of line ``l``,

    run_index = (s L + l) R + i,

so a sequence's switch ``s`` numbers its runs after switch ``s - 1``'s, and a sequence's rows for the
whole sequence (one per run, :class:`SequenceJob`) come after every switch's:
``(S L + l) R + i``. The progress bar counts chunks: per line its source phase's, plus one adaptation
per batch and switch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lossmooth.core.runs import run_label
from lossmooth.runner.records import pair_key


@dataclass(frozen=True)
class LineFacts:
    """What the setting says of one line before it runs: its chunks ``(source, adaptation per batch
    and switch)``, context columns, data identity (joins the pair key), switches and the gradient
    updates of its adaptation (a ramp longer than them is marked: :mod:`lossmooth.runner.ramps`)."""

    chunks: tuple
    context: dict
    identity: dict
    switches: list
    updates: int = 0


@dataclass(frozen=True)
class SourceJob:
    """The source phase of one line, for every seed: ``ids`` and ``names`` per seed."""

    line: str
    seeds: list
    ids: list
    names: list
    tag: str  # its checkpoints' tag
    wall: str  # its key in summary.json's wall_s


@dataclass(frozen=True)
class AdaptJob:
    """One batch of runs through one switch (``switch_index`` s; ``switch`` None for the one switch,
    else the sequence's switch dict, whose fields join the batch's runs.json rows)."""

    line: str
    batch: int
    runs: list  # the runs' dicts
    index: list  # their run_index values
    switch_index: int
    switch: dict | None
    ids: list  # each run's metric-row identity
    names: list  # each run's label
    pair_key: str
    tag: str


@dataclass(frozen=True)
class SequenceJob:
    """The whole-sequence rows of one batch (one per run): ``switch_runs[s][j]`` is run ``j``'s
    run_index at switch ``s``."""

    line: str
    runs: list
    index: list
    switch_runs: list
    switches: list
    pair_key: str


@dataclass(frozen=True)
class Batch:
    switches: list  # an AdaptJob per switch, in order
    sequence: SequenceJob | None  # where the line has more than one switch


@dataclass(frozen=True)
class LinePlan:
    line: str
    facts: LineFacts
    source: SourceJob
    batches: list
    wall: str  # the adaptation's key in summary.json's wall_s


@dataclass(frozen=True)
class Plan:
    lines: list = field(default_factory=list)  # a LinePlan per line
    total_chunks: int = 0  # the progress bar's total
    adapt_batches: int = 0  # compiled adaptation batches (summary.json's compiled_batches.adapt)


def run_index(switch: int, line: int, n_lines: int, n_runs: int, run: int) -> int:
    """Run ``run``'s index at switch ``switch`` of line ``line`` (``switch`` = the number of switches:
    the whole sequence's rows): ``(s L + l) R + i``."""
    return (switch * n_lines + line) * n_runs + run


def line_facts(setting, spec, loaded, line: str) -> LineFacts:
    """The one place the runner asks a setting about a line before running it."""
    d = setting.describe(spec, loaded, line)
    return LineFacts(chunks=d.chunks, context=d.context, identity=d.identity, switches=list(d.switches),
                     updates=int(d.adapt.n_updates))


def make_plan(setting, cfg: dict, spec, runs: list[dict], groups: list[list[int]], lines: list[str],
              facts: dict) -> Plan:
    """The run's plan (module docstring) from the setting's runs, their batches (``groups``: positions
    in ``runs``), its lines and what it says of each (``facts``: ``{line:`` :class:`LineFacts` ``}``).
    Of the setting it reads only its ``line_key`` and what :func:`lossmooth.runner.records.pair_key` reads."""
    labels = [run_label(r, list(spec.sweep)) for r in runs]
    out, total = [], 0
    for li, line in enumerate(lines):
        f = facts[line]
        total += f.chunks[0] + len(groups) * len(f.switches) * f.chunks[1]
        batches = [_batch(setting, cfg, line, li, len(lines), gi, g, runs, labels, f) for gi, g in enumerate(groups)]
        out.append(LinePlan(line=line, facts=f, source=_source(setting, spec, line, len(lines)), batches=batches,
                            wall=f"{_prefix(line, len(lines))}adapt"))
    return Plan(lines=out, total_chunks=total, adapt_batches=len(lines) * len(groups))


def _prefix(line: str, n_lines: int) -> str:
    """A label's line part: only where a run has several lines."""
    return f"{line}/" if n_lines > 1 else ""


def _fields(setting, line: str) -> dict:
    return {setting.line_key: line} if setting.line_key else {}


def _source(setting, spec, line: str, n_lines: int) -> SourceJob:
    prefix = _prefix(line, n_lines)
    seeds = [spec.seed + i for i in range(spec.num_seeds)]
    return SourceJob(line=line, seeds=seeds,
                     ids=[{"phase": "source", **_fields(setting, line), "seed": s} for s in seeds],
                     names=[f"{prefix}source/seed{s}" for s in seeds], tag=f"{line}-source" if line else "source",
                     wall=f"{prefix}source")


def _batch(setting, cfg, line, li, n_lines, gi, g, runs, labels, facts: LineFacts) -> Batch:
    """Batch ``gi`` (``g``: its runs' positions) of line ``li`` through every switch of the line."""
    g_runs = [runs[i] for i in g]
    jobs = []
    for si, sw in enumerate(facts.switches):
        at = {} if sw is None else {"switch": sw["switch"]}
        suffix = "" if sw is None else f"@switch{sw['switch']}"
        index = [run_index(si, li, n_lines, len(runs), i) for i in g]
        ids = [{"phase": "adapt", **_fields(setting, line), **at, "run_index": x, "method": r["name"],
                "seed": r["seed"], "hparams": r["hparams"]} for x, r in zip(index, g_runs)]
        jobs.append(AdaptJob(
            line=line, batch=gi, runs=g_runs, index=index, switch_index=si, switch=sw, ids=ids,
            names=[_prefix(line, n_lines) + labels[i] + suffix for i in g],
            pair_key=pair_key(cfg, setting, line, {**facts.identity, **at} if at else facts.identity),
            tag=(f"{line}-" if line else "") + f"adapt{gi}" + (f"-switch{sw['switch']}" if si else "")))
    sequence = None
    if len(facts.switches) > 1:
        sequence = SequenceJob(line=line, runs=g_runs,
                               index=[run_index(len(facts.switches), li, n_lines, len(runs), i) for i in g],
                               switch_runs=[job.index for job in jobs], switches=list(facts.switches),
                               pair_key=pair_key(cfg, setting, line, {**facts.identity, "switch": "all"}))
    return Batch(switches=jobs, sequence=sequence)
