"""The shared runner: one experiment of any setting, end to end, from a resolved config to a complete
run directory (``<results_dir>/<setting>/<run id>/``, :mod:`lossmooth.results.store`).

1. the setting validates its config and loads its data once (nothing is written before both succeed);
2. the run directory opens (a killed or preempted run of the same config resumes);
3. per line of the setting (online RL: each algorithm): the source phase for every seed, then every
   batch of adaptation runs from those source models (:func:`lossmooth.runner.phase.run_phase`); for
   a sequence of shifts (:meth:`Setting.switches`) each batch goes through every switch in turn, each
   run from its own model at the end of the last, with a row per run and switch and one per run for
   the whole sequence (its k-task metrics, :func:`lossmooth.results.summaries.sequence_summaries`);
   between chunks a metric row per run and evaluation goes to ``metrics.jsonl``, the loggers and
   the progress bar get the chunk's last evaluation, and a run turning non-finite is reported;
4. each run's curves are summarized (:mod:`lossmooth.results.summaries`, from the setting's
   :class:`~lossmooth.settings.contract.Curves`) into ``runs.json``; ``summary.json`` comes last.
"""
from __future__ import annotations

import os
import time

import jax
import numpy as np

from lossmooth import provenance
from lossmooth.core import engine
from lossmooth.core.runs import run_label
from lossmooth.results import aggregate as agg
from lossmooth.results import report
from lossmooth.results import store
from lossmooth.results import summaries
from lossmooth.results.summaries import dense_summaries, summarize_curves
from lossmooth.runner import ramps
from lossmooth.runner.memory import PhasePeaks, return_freed_memory, trim_heap
from lossmooth.runner.phase import run_phase
from lossmooth.runner.records import check_finite, pair_key, progress_bar, record_run
from lossmooth.settings.contract import Context, Setting


DIVERGE_FACTOR = 100.0


def row_key(row: dict, line_key: str | None) -> tuple:
    """What identifies a metric row: phase, line, run (or seed, in a source phase) and step."""
    return (row.get("phase"), row.get(line_key) if line_key else None, row.get("run_index", row.get("seed")),
            row.get("step"))


def diverged_sources(source, seeds: list[int]) -> dict:
    """``{seed: step}`` of the seeds whose source phase diverged (a non-finite metric, or a loss over
    the divergence factor times its start: :func:`lossmooth.runner.phase.run_phase`), at the step of
    the first diverged evaluation. Every adaptation run from such a source is marked
    ``source_diverged`` in ``runs.json``."""
    first = 1 if source.steps[0] == 0 else 0
    return {s: int(source.steps[int(d) + first]) for s, d in zip(seeds, source.diverged_at) if d >= 0}


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
    updates = ramps.check(setting, spec, loaded)
    meta = provenance.metadata(cfg, choices, loaded.info)
    runs = setting.runs(spec, loaded)
    groups = setting.groups(spec, runs)
    lines = setting.lines(spec, loaded)
    swept = list(spec.sweep)
    labels = [run_label(r, swept) for r in runs]
    window, lca_beta = agg.summary_params(cfg)

    def body(rs, loggers, ckpt):
        ctx = Context(spec=spec, loaded=loaded, mesh=mesh, run_dir=rs.path, cfg=cfg, runs=runs)
        counts = {line: setting.chunks(spec, loaded, line) for line in lines}
        bar = progress_bar(sum(s + len(groups) * len(setting.switches(spec, loaded, line)) * a
                               for line, (s, a) in counts.items()), progress)
        rows, sources, walls = [], {}, {}
        bad_sources = {}  # line -> {seed: step its source phase diverged at}
        n_source = 0

        def writer(ids, names, eval_every):
            """The callback that records a chunk: a metric row per run and evaluation, the loggers,
            the non-finite check, the progress bar."""
            def cb(c, state, m):
                n = len(ids)
                k = next(iter(m.values())).shape[1]
                out = []
                for e in range(k):
                    step = (c * k + e + 1) * eval_every
                    out += [{**ids[j], "step": int(step), **{key: float(v[j, e]) for key, v in m.items()}}
                            for j in range(n)]
                rs.append_metrics(out)
                loggers.rows(out)
                check_finite(m, names, bar)
                bar.update(1)
            return cb

        # rows already in metrics.jsonl (a resumed run keeps those its newest checkpoint had seen)
        present = ({row_key(r, setting.line_key) for r in store.read_metrics(rs.path)} if rs.metric_rows() else set())

        def start_rows(ids, result):
            """The evaluation at the phase's start, after its chunks' rows; a resumed run whose file
            already holds them (written before a later checkpoint) does not write them again."""
            if result.steps[0] != 0:
                return
            write_once([{**ids[j], "step": 0, **{k: float(v[j, 0]) for k, v in result.metrics.items()}}
                        for j in range(len(ids))])

        def write_once(rows, dashboards=True):
            """``rows`` not yet in metrics.jsonl to it (and to the dashboards)."""
            rows = [r for r in rows if row_key(r, setting.line_key) not in present]
            if rows:
                rs.append_metrics(rows)
                if dashboards:
                    loggers.rows(rows)
                present.update(row_key(r, setting.line_key) for r in rows)

        def dense_rows(ids, result):
            """The dense evaluation's rows (phase ``adapt_dense``, one per run and update 0..W), once;
            they stay out of the dashboards, whose steps only go forward."""
            if result.dense is None:
                return
            width = len(next(iter(result.dense.values()))[0])
            write_once([{**ids[j], "phase": "adapt_dense", "step": k,
                         **{name: float(v[j, k]) for name, v in result.dense.items()}}
                        for j in range(len(ids)) for k in range(width)], dashboards=False)

        def adapt_group(li, line, gi, g, g_runs, index, prev, si, sw, identity, context):
            """One batch of runs through one switch (``si``: its index; ``sw``: None for the one
            switch, or the sequence's switch): its rows recorded, its result returned for the next."""
            prefix = f"{line}/" if len(lines) > 1 else ""
            tag = f"{line}-" if line else ""
            fields = {setting.line_key: line} if setting.line_key else {}
            at = {} if sw is None else {"switch": sw["switch"]}
            suffix = "" if sw is None else f"@switch{sw['switch']}"
            pkey = pair_key(cfg, setting, line, {**identity, **at} if at else identity)
            names = [prefix + labels[i] + suffix for i in g]
            ids = [{"phase": "adapt", **fields, **at, "run_index": x, "method": r["name"], "seed": r["seed"],
                    "hparams": r["hparams"]} for x, r in zip(index, g_runs)]
            phase = (setting.adapt_phase(ctx, line, g_runs, prev, switch=si) if si
                     else setting.adapt_phase(ctx, line, g_runs, prev))
            loggers.start(ids, names)
            cb = writer(ids, names, phase.eval_every)
            with peaks.phase("adapt"):
                res = run_phase(phase, mesh, [cb], ckpt, f"{tag}adapt{gi}" + (f"-switch{sw['switch']}" if si else ""),
                                lam0=lam_at_switch(g_runs), shard=shard, trim=setting.returns_memory,
                                lanes=setting.lanes,
                                on_start=lambda v, ids=ids: loggers.rows(  # the dashboards' step 0, first
                                    [{**x, "step": 0, **{k: float(a[j]) for k, a in v.items()}}
                                     for j, x in enumerate(ids)]),
                                diverge=(setting.diverge_on, cfg.get("diverge_factor", DIVERGE_FACTOR)))
            for j in np.flatnonzero(res.blown_up):  # non-finite metrics were reported chunk by chunk
                step = int(res.steps[res.diverged_at[j] + (1 if res.steps[0] == 0 else 0)])
                bar.write(f"lossmooth: warning: {names[j]}'s loss exceeds "
                          f"{cfg.get('diverge_factor', DIVERGE_FACTOR):g}x its value at the switch from step "
                          f"{step} (marked diverged)")
            start_rows(ids, res)
            dense_rows(ids, res)
            if setting.returns_memory:
                trim_heap()
            with peaks.phase("after_group"):  # the setting's work on a trained batch (LM: generation)
                setting.after_group(ctx, line, index, g_runs, res)
            out = []
            where = {} if sw is None else dict(sw)
            for j, (x, r) in enumerate(zip(index, g_runs)):
                curves = {k: v[j] for k, v in res.metrics.items()}
                div = int(res.diverged_at[j])  # an index into the chunks' evaluations
                first = 1 if res.steps[0] == 0 else 0
                out.append({
                    "run_index": x, "method": r["name"], "seed": r["seed"], "hparams": r["hparams"],
                    "setting": setting.name, **context, **where, "pair_key": pkey,
                    "diverged_step": int(res.steps[div + first]) if div >= 0 else -1,
                    "summary": {**summarize_curves(setting.curves, res.steps, curves, spec.gap_window,
                                                   window, lca_beta),
                                **({} if res.dense is None else dense_summaries(
                                    setting.curves, {k: v[j] for k, v in res.dense.items()}, window))},
                    "summary_params": {"window": window, "lca_beta": lca_beta},
                    "curves": {"target": setting.curves.target, "source": setting.curves.source,
                               **({"source_perplexity": True} if setting.curves.source_perplexity else {})},
                    **({"ramp_unfinished": True} if ramps.unfinished(r["method"], updates[line]) else {}),
                    **({"source_diverged": True} if r["seed"] in bad_sources.get(line, {}) else {}),
                    **setting.run_fields(spec, loaded, line, r, curves),
                })
            return res, out

        def sequence_rows(li, line, g, g_runs, chain, switches, identity, context):
            """A row per run for the whole sequence: the k-task summaries
            (:func:`lossmooth.results.summaries.sequence_summaries`) from every task's curve over all
            its switches (each switch's evaluation at its start is the previous one's last, kept once)."""
            kind = setting.curves.kind
            steps = [res.steps for _, res in chain]
            ends, total = [0], 0
            for st in steps:
                total += len(st) - (1 if st[0] == 0 else 0)
                ends.append(total)
            pkey = pair_key(cfg, setting, line, {**identity, "switch": "all"})
            out = []
            for j, r in enumerate(g_runs):
                tasks = [np.concatenate([res.metrics[f"task{t}_{kind}"][j][(1 if si and res.steps[0] == 0 else 0):]
                                         for si, (_, res) in enumerate(chain)]) for t in range(len(chain) + 1)]
                diverged, offset = -1, 0
                for (_, res), sw in zip(chain, switches):
                    div = int(res.diverged_at[j])
                    if div >= 0 and diverged < 0:
                        diverged = offset + int(res.steps[div + (1 if res.steps[0] == 0 else 0)])
                    offset += int(res.steps[-1])
                out.append({
                    "run_index": (len(switches) * len(lines) + li) * len(runs) + g[j], "method": r["name"],
                    "seed": r["seed"], "hparams": r["hparams"], "setting": setting.name, **context,
                    "shift": " > ".join(sw["shift"] for sw in switches), "severity": None, "switch": "all",
                    "sequence": {"switch_runs": [index[j] for index, _ in chain],
                                 "tasks": [{"shift": "none", "severity": 0.0}] +
                                          [{"shift": sw["shift"], "severity": sw["severity"]} for sw in switches]},
                    "pair_key": pkey, "diverged_step": diverged,
                    **({"source_diverged": True} if r["seed"] in bad_sources.get(line, {}) else {}),
                    "summary": summaries.sequence_summaries(tasks, ends),
                })
            return out

        for li, line in enumerate(lines):
            prefix = f"{line}/" if len(lines) > 1 else ""
            tag = f"{line}-" if line else ""
            fields = {setting.line_key: line} if setting.line_key else {}
            source = None
            phase = setting.source_phase(ctx, line)
            if phase is not None:
                n_source += 1
                seeds = [spec.seed + i for i in range(spec.num_seeds)]
                ids = [{"phase": "source", **fields, "seed": s} for s in seeds]
                cb = writer(ids, [f"{prefix}source/seed{s}" for s in seeds], phase.eval_every)
                with peaks.phase("source"):
                    source = run_phase(phase, mesh, [cb], ckpt, f"{tag}source", shard=shard, lanes=setting.lanes,
                                       diverge=(setting.diverge_on, cfg.get("diverge_factor", DIVERGE_FACTOR)))
                bad_sources[line] = diverged_sources(source, seeds)
                for s, step in bad_sources[line].items():
                    bar.write(f"lossmooth: warning: {prefix}source/seed{s} diverged at step {step} (a non-finite "
                              f"metric or a loss over {cfg.get('diverge_factor', DIVERGE_FACTOR):g}x its start); "
                              "its adaptation runs are marked source_diverged")
                start_rows(ids, source)
                sources[line] = source
                walls[f"{prefix}source"] = source.seconds
            identity = setting.data_identity(spec, loaded, line)
            context = setting.context(spec, loaded, line)
            switches = setting.switches(spec, loaded, line)
            t_adapt = time.time()
            for gi, g in enumerate(groups):
                g_runs = [runs[i] for i in g]
                prev, chain = source, []
                for si, sw in enumerate(switches):
                    # a sequence's switch s numbers its runs after switch s - 1's
                    index = [(si * len(lines) + li) * len(runs) + i for i in g]
                    res, seq_rows = adapt_group(li, line, gi, g, g_runs, index, prev, si, sw, identity, context)
                    rows += seq_rows
                    if len(switches) > 1:
                        chain.append((index, res))
                    prev = res
                    del res
                if chain:
                    rows += sequence_rows(li, line, g, g_runs, chain, switches, identity, context)
                del prev, chain
            walls[f"{prefix}adapt"] = time.time() - t_adapt
        bar.close()
        rows.sort(key=lambda r: r["run_index"])
        with peaks.phase("finish"):  # the setting's last work (LM: generation and judging)
            extra = setting.finish(ctx, rows, sources)
        summary = {"run_id": rs.run_id, "setting": setting.name, "complete": True, "runs": len(rows),
                   "methods": list(spec.methods), "seeds": spec.num_seeds, "stand_in": meta["stand_in"],
                   "step_unit": setting.step_unit,
                   "compiled_batches": {"source": n_source, "adapt": len(lines) * len(groups)}}
        summary.update({k: v for k, v in extra.items() if k != "wall_s"})
        if any(bad_sources.values()):  # absent where none did, so a sound run's summary is as before
            summary["source_diverged"] = {line: {str(s): step for s, step in bad.items()}
                                          for line, bad in bad_sources.items() if bad}
        summary.update(peaks.record())  # this process's peaks (a resumed run: since it resumed)
        loggers.finish(rows)
        publish(loggers, rows, rs.path, meta)
        # the total covers every process of a resumed run (the earlier ones up to their last checkpoint)
        summary["wall_s"] = {**walls, **extra.get("wall_s", {}), "this_process": time.time() - t0,
                             "total": rs.previous_wall_s + time.time() - t0}
        return rows, summary

    return record_run(cfg, setting.name, meta, body, started=t0, line_key=setting.line_key)


def publish(loggers, rows: list[dict], run_dir: str, meta: dict) -> None:
    """The job's table and curves (as ``lossmooth table`` and ``lossmooth plot`` build them) to the
    dashboards' summary run (nothing where wandb is off)."""
    if loggers.mode == "disabled":
        return
    tabled = [dict(r, run_dir=run_dir, stand_in=meta.get("stand_in", True)) for r in rows]
    groups, diffs, normalized = agg.tables(tabled, reps=1000)
    figure = os.path.join(run_dir, "wandb", "curves.png")
    os.makedirs(os.path.dirname(figure), exist_ok=True)
    report.plot_curves(tabled, figure)
    table_rows = [dict(g, kind="aggregate") for g in groups] + [dict(d, kind="paired_diff") for d in diffs] + \
        [dict(e, kind="normalized_by_hard_switch") for e in normalized]
    for r in table_rows:  # a dashboard table's column holds one type: a sequence's switch (1, 2, ..., all) as text
        if "switch" in r:
            r["switch"] = str(r["switch"])
    loggers.job(table_rows, report.markdown(groups, diffs, normalized=normalized), figure)
