"""The records of ``runs.json``: one per adaptation run and switch, with its curves' summaries
(:func:`lossmooth.results.summaries.summarize_curves`), and for a sequence of shifts one more per run
for the whole sequence (:func:`lossmooth.results.summaries.sequence_summaries`).

An evaluation's index ``d`` among a phase's chunks' evaluations is at step ``steps[d + f]``, where
``f = 1`` if the phase evaluated its start (``steps[0] == 0``), else 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lossmooth.results import summaries
from lossmooth.results.summaries import dense_summaries, summarize_curves
from lossmooth.runner import ramps


def first_eval(result) -> int:
    """1 where the phase evaluated its start (its curves' column 0 is step 0), else 0."""
    return 1 if result.steps[0] == 0 else 0


def diverged_sources(source, seeds: list[int]) -> dict:
    """``{seed: step}`` of the seeds whose source phase diverged (a non-finite metric, or a loss over
    the divergence factor times its start: :func:`lossmooth.runner.phase.run_phase`), at the step of
    the first diverged evaluation. Every adaptation run from such a source is marked
    ``source_diverged`` in ``runs.json``."""
    first = first_eval(source)
    return {s: int(source.steps[int(d) + first]) for s, d in zip(seeds, source.diverged_at) if d >= 0}


@dataclass(frozen=True)
class RowContext:
    """What every record of one line shares: the setting, the spec, the summary parameters
    (``window``, ``lca_beta``: :func:`lossmooth.results.aggregate.summary_params`), the line's
    context columns, its adaptation's gradient updates (a ramp longer is unfinished) and the seeds
    whose source phase diverged."""

    setting: object
    spec: object
    loaded: object
    window: int
    lca_beta: float
    context: dict
    updates: int
    bad_seeds: dict

    def marks(self, run: dict) -> dict:
        return {"source_diverged": True} if run["seed"] in self.bad_seeds else {}


def adapt_rows(rc: RowContext, job, res) -> list[dict]:
    """A record per run of one batch through one switch (``job``: :class:`lossmooth.runner.plan.AdaptJob`)."""
    setting, where = rc.setting, ({} if job.switch is None else dict(job.switch))
    out = []
    for j, (x, r) in enumerate(zip(job.index, job.runs)):
        curves = {k: v[j] for k, v in res.metrics.items()}
        div = int(res.diverged_at[j])  # an index into the chunks' evaluations
        out.append({
            "run_index": x, "method": r["name"], "seed": r["seed"], "hparams": r["hparams"],
            "setting": setting.name, **rc.context, **where, "pair_key": job.pair_key,
            "diverged_step": int(res.steps[div + first_eval(res)]) if div >= 0 else -1,
            "summary": _summary(rc, res, j, curves),
            "summary_params": {"window": rc.window, "lca_beta": rc.lca_beta},
            "curves": {"target": setting.curves.target, "source": setting.curves.source,
                       **({"source_perplexity": True} if setting.curves.source_perplexity else {})},
            **({"ramp_unfinished": True} if ramps.unfinished(r["method"], rc.updates) else {}),
            **rc.marks(r),
            **setting.run_fields(rc.spec, rc.loaded, job.line, r, curves),
        })
    return out


def _summary(rc: RowContext, res, j: int, curves: dict) -> dict:
    """Run ``j``'s summaries: of its curves, and of its dense evaluation where the phase had one."""
    out = summarize_curves(rc.setting.curves, res.steps, curves, rc.spec.gap_window, rc.window, rc.lca_beta)
    if res.dense is None:
        return {**out}
    return {**out, **dense_summaries(rc.setting.curves, {k: v[j] for k, v in res.dense.items()}, rc.window)}


def sequence_rows(rc: RowContext, job, chain: list) -> list[dict]:
    """A record per run for the whole sequence (``job``: :class:`lossmooth.runner.plan.SequenceJob`;
    ``chain``: each switch's result): the k-task summaries from every task's curve over all its
    switches (each switch's evaluation at its start is the previous one's last, kept once); its
    diverged step counts from the first switch, each switch adding the last's steps."""
    kind = rc.setting.curves.kind
    ends, total = [0], 0
    for res in chain:
        total += len(res.steps) - first_eval(res)
        ends.append(total)
    out = []
    for j, r in enumerate(job.runs):
        tasks = [np.concatenate([res.metrics[f"task{t}_{kind}"][j][(first_eval(res) if si else 0):]
                                 for si, res in enumerate(chain)]) for t in range(len(chain) + 1)]
        out.append({
            "run_index": job.index[j], "method": r["name"], "seed": r["seed"], "hparams": r["hparams"],
            "setting": rc.setting.name, **rc.context,
            "shift": " > ".join(sw["shift"] for sw in job.switches), "severity": None, "switch": "all",
            "sequence": {"switch_runs": [index[j] for index in job.switch_runs],
                         "tasks": [{"shift": "none", "severity": 0.0}] +
                                  [{"shift": sw["shift"], "severity": sw["severity"]} for sw in job.switches]},
            "pair_key": job.pair_key, "diverged_step": _sequence_diverged(chain, j),
            **rc.marks(r),
            "summary": summaries.sequence_summaries(tasks, ends),
        })
    return out


def _sequence_diverged(chain: list, j: int) -> int:
    """Run ``j``'s first diverged step over the whole sequence (-1: none)."""
    offset = 0
    for res in chain:
        div = int(res.diverged_at[j])
        if div >= 0:
            return offset + int(res.steps[div + first_eval(res)])
        offset += int(res.steps[-1])
    return -1
