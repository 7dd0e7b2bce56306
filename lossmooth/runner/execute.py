"""The shared runner: one experiment of any setting, end to end, from a resolved config to a complete
run directory (``<results_dir>/<setting>/<run id>/``, :mod:`lossmooth.results.store`).

1. parse and load: the setting validates its config and loads its data once (nothing is written
   before both succeed);
2. plan: every phase to run, with its run indices, labels, pair keys and checkpoint tags
   (:mod:`lossmooth.runner.plan`): per line of the setting (online RL: each algorithm) its source
   phase for every seed, then every batch of adaptation runs from those source models, through each
   switch of a sequence of shifts in turn (each run from its own model at the end of the last);
3. run: the run directory opens (a killed or preempted run of the same config resumes); each job's
   phase runs (:func:`lossmooth.runner.phase.run_phase`) with its hooks between chunks
   (:mod:`lossmooth.runner.hooks`: the chunk's metric rows to ``metrics.jsonl`` and the dashboards
   through :class:`lossmooth.runner.sink.RowSink`, the non-finite check, the progress bar); its
   result goes to the sink (the evaluation at its start, the dense evaluation) and to the row
   builders (:mod:`lossmooth.runner.rows`): a row per run and switch with its curves' summaries, and
   for a sequence one per run for the whole sequence (its k-task metrics);
4. finish: the setting's last work, ``runs.json`` and, last, ``summary.json``.
"""
from __future__ import annotations

import time

import jax
import numpy as np

from lossmooth import provenance
from lossmooth.core import engine
from lossmooth.results import aggregate as agg
from lossmooth.runner import ramps
from lossmooth.runner.hooks import recording
from lossmooth.runner.memory import PhasePeaks, return_freed_memory, trim_heap
from lossmooth.runner.phase import run_phase
from lossmooth.runner.plan import AdaptJob, Batch, LinePlan, Plan, SourceJob, line_facts, make_plan
from lossmooth.runner.records import progress_bar, record_run
from lossmooth.runner.rows import RowContext, adapt_rows, diverged_sources, first_eval, sequence_rows
from lossmooth.runner.sink import RowSink
from lossmooth.settings.contract import Context, Setting, batches

DIVERGE_FACTOR = 100.0


def lam_at_switch(runs: list[dict]) -> np.ndarray:
    """Each run's lam at t = 0 (its schedule at the switch), as the engine computes it."""
    methods = engine.stack_runs([r["method"] for r in runs])
    return np.asarray(jax.vmap(lambda m: m.schedule(0))(methods))


def execute(setting: Setting, cfg: dict, choices: dict, mesh=None, progress: bool = True,
            shard: int | str = "auto") -> str:
    """Run the experiment ``cfg`` describes with ``setting``; return its run directory. ``shard``: devices
    per run of a phase whose setting splits its batch, where runs are fewer than devices
    (:func:`lossmooth.core.sharding.mesh_shape`)."""
    t0 = time.time()
    spec = setting.parse(cfg)
    if setting.returns_memory:
        return_freed_memory()
    peaks = PhasePeaks()
    with peaks.phase("load"):
        loaded = setting.load(spec, cfg, choices)
    lines = setting.lines(spec, loaded)
    facts = {line: line_facts(setting, spec, loaded, line) for line in lines}
    ramps.check({line: f.updates for line, f in facts.items()}, spec)
    meta = provenance.metadata(cfg, choices, loaded.info)
    runs = setting.runs(spec, loaded)
    groups = batches(setting, runs)
    plan = make_plan(setting, cfg, spec, runs, groups, lines, facts)
    execution = Execution(setting, cfg, spec, loaded, runs, plan, meta, peaks,
                          mesh=mesh, progress=progress, shard=shard, started=t0)
    return record_run(cfg, setting.name, meta, execution, started=t0, line_key=setting.line_key)


class Execution:
    """A run's :class:`~lossmooth.runner.plan.Plan` carried out in its open run directory: called as
    ``record_run``'s body, ``(rs, loggers, checkpoints) -> (runs.json rows, summary.json)``. Every
    call into the setting's phases and its work after a batch and at the end is here."""

    def __init__(self, setting: Setting, cfg: dict, spec, loaded, runs: list[dict], plan: Plan, meta: dict,
                 peaks: PhasePeaks, mesh=None, progress: bool = True, shard: int | str = "auto",
                 started: float | None = None):
        self.setting, self.cfg, self.spec, self.loaded, self.runs, self.plan = setting, cfg, spec, loaded, runs, plan
        self.meta, self.peaks = meta, peaks
        self.mesh, self.progress, self.shard = mesh, progress, shard
        self.started = time.time() if started is None else started
        self.factor = cfg.get("diverge_factor", DIVERGE_FACTOR)
        self.diverge = (setting.diverge_on, self.factor)
        self.window, self.lca_beta = agg.summary_params(cfg)
        self.bad_sources: dict = {}  # line -> {seed: step its source phase diverged at}
        self.sources: dict = {}  # line -> its source phase's result

    def __call__(self, rs, loggers, checkpoints) -> tuple[list[dict], dict]:
        self.rs, self.checkpoints = rs, checkpoints
        self.ctx = Context(spec=self.spec, loaded=self.loaded, mesh=self.mesh, run_dir=rs.path, cfg=self.cfg,
                           runs=self.runs)
        self.sink = RowSink(rs, loggers, self.setting.line_key)
        self.bar = progress_bar(self.plan.total_chunks, self.progress,
                                done=checkpoints.chunks_done() if checkpoints is not None else 0)
        rows, walls = [], {}
        for lp in self.plan.lines:
            rows += self.line(lp, walls)
        self.bar.close()
        rows.sort(key=lambda r: r["run_index"])
        return rows, self.summary(rows, walls)

    def line(self, lp: LinePlan, walls: dict) -> list[dict]:
        """One line: its source phase, then every batch through every switch; ``walls`` gets their times."""
        source = self.source(lp.source)
        if source is not None:
            walls[lp.source.wall] = source.seconds
        rc = RowContext(setting=self.setting, spec=self.spec, loaded=self.loaded, window=self.window,
                        lca_beta=self.lca_beta, context=lp.facts.context, updates=lp.facts.updates,
                        bad_seeds=self.bad_sources.get(lp.line, {}))
        t_adapt, rows = time.time(), []
        for batch in lp.batches:
            rows += self.batch(batch, source, rc)
        walls[lp.wall] = time.time() - t_adapt
        return rows

    def source(self, job: SourceJob):
        """The line's source phase for every seed (None where the setting has none: a pretrained model)."""
        phase = self.setting.source_phase(self.ctx, job.line)
        if phase is None:
            return None
        hooks = recording(self.sink, job.ids, job.names, phase.eval_every, self.bar)
        with self.peaks.phase("source"):
            res = run_phase(phase, self.mesh, hooks, self.checkpoints, job.tag, shard=self.shard,
                            lanes=self.setting.lanes, diverge=self.diverge)
        self.bad_sources[job.line] = diverged_sources(res, job.seeds)
        names = dict(zip(job.seeds, job.names))
        for s, step in self.bad_sources[job.line].items():
            self.bar.write(f"lossmooth: warning: {names[s]} diverged at step {step} (a non-finite metric or a loss "
                           f"over {self.factor:g}x its start); its adaptation runs are marked source_diverged")
        self.sink.start(job.ids, res)
        self.sources[job.line] = res
        return res

    def batch(self, batch: Batch, source, rc: RowContext) -> list[dict]:
        """One batch through every switch of its line, each switch from the last one's models; its rows
        (and, for a sequence, the whole sequence's). Its results are dropped on return."""
        rows, prev, chain = [], source, []
        for job in batch.switches:
            res = self.adapt(job, prev)
            rows += adapt_rows(rc, job, res)
            if batch.sequence is not None:
                chain.append(res)
            prev = res
        if batch.sequence is not None:
            rows += sequence_rows(rc, batch.sequence, chain)
        return rows

    def adapt(self, job: AdaptJob, prev):
        """One batch of runs through one switch from ``prev`` (the source phase's result, or the same
        runs' at the previous switch): its metric rows recorded, the setting's work after it done."""
        setting = self.setting
        phase = setting.adapt_phase(self.ctx, job.line, job.runs, prev,
                                    **({"switch": job.switch_index} if job.switch_index else {}))
        self.sink.opened(job.ids, job.names)
        hooks = recording(self.sink, job.ids, job.names, phase.eval_every, self.bar)
        with self.peaks.phase("adapt"):
            res = run_phase(phase, self.mesh, hooks, self.checkpoints, job.tag, lam0=lam_at_switch(job.runs),
                            shard=self.shard, trim=setting.returns_memory, lanes=setting.lanes,
                            on_start=lambda values: self.sink.at_switch(job.ids, values),  # the dashboards' step 0
                            diverge=self.diverge)
        for j in np.flatnonzero(res.blown_up):  # non-finite metrics were reported chunk by chunk
            step = int(res.steps[res.diverged_at[j] + first_eval(res)])
            self.bar.write(f"lossmooth: warning: {job.names[j]}'s loss exceeds {self.factor:g}x its value at the "
                           f"switch from step {step} (marked diverged)")
        self.sink.start(job.ids, res)
        self.sink.dense(job.ids, res)
        if setting.returns_memory:
            trim_heap()
        with self.peaks.phase("after_group"):  # the setting's work on a trained batch (LM: generation)
            setting.after_group(self.ctx, job.line, job.index, job.runs, res)
        return res

    def summary(self, rows: list[dict], walls: dict) -> dict:
        """The setting's last work (it may add fields to ``rows``), the dashboards' end, and
        ``summary.json``'s contents."""
        with self.peaks.phase("finish"):  # the setting's last work (LM: generation and judging)
            extra = self.setting.finish(self.ctx, rows, self.sources)
        spec, rs = self.spec, self.rs
        summary = {"run_id": rs.run_id, "setting": self.setting.name, "complete": True, "runs": len(rows),
                   "methods": list(spec.methods), "seeds": spec.num_seeds, "stand_in": self.meta["stand_in"],
                   "step_unit": self.setting.step_unit,
                   "compiled_batches": {"source": len(self.sources), "adapt": self.plan.adapt_batches}}
        summary.update({k: v for k, v in extra.items() if k != "wall_s"})
        if any(self.bad_sources.values()):  # absent where none did, so a sound run's summary is as before
            summary["source_diverged"] = {line: {str(s): step for s, step in bad.items()}
                                          for line, bad in self.bad_sources.items() if bad}
        summary.update(self.peaks.record())  # this process's peaks (a resumed run: since it resumed)
        self.sink.finish(rows, self.meta)
        # the total covers every process of a resumed run (the earlier ones up to their last checkpoint)
        now = time.time()
        summary["wall_s"] = {**walls, **extra.get("wall_s", {}), "this_process": now - self.started,
                             "total": rs.previous_wall_s + now - self.started}
        return summary
