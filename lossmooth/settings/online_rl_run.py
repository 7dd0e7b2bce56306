"""Run the online RL experiment end to end: validate, build the tasks, train every algorithm on the
source task, adapt every method on the target task, write the results store, return the run directory.

Nothing is written before the config, the presets and the environments are validated.
"""
from __future__ import annotations

import time


from lossmooth import provenance
from lossmooth.results import store
from lossmooth.results.summaries import summarize
from lossmooth.settings import online_rl as R
from lossmooth.settings.common import groups_of
from lossmooth.settings.host import check_finite, progress_bar, record_run, run_label

_NOT_CONTEXT = store.HOST_ONLY + ("method", "schedule", "sweep", "num_seeds", "algo")


def pair_key(cfg: dict, algo: str) -> str:
    """Runs with equal keys adapt from the same source agents (same seeds): paired comparisons."""
    ctx = {k: v for k, v in cfg.items() if k not in _NOT_CONTEXT}
    if "algo" in cfg:  # online RL runs several algorithms in one run; each pairs with itself
        ctx["algo"] = {algo: cfg["algo"][algo]}
    return store.config_hash(ctx)


def execute(cfg: dict, choices: dict, mesh=None, progress: bool = True) -> str:
    t0 = time.time()
    spec = R.parse(cfg)
    agents = {name: R.build_agents(spec, name) for name in spec.algos}  # validates the tasks too
    # the environments are the paper's kind; a budget below rejax's presets makes it a stand-in run
    stand_in = choices.get("budget") != "preset"
    info = {"stand_in": stand_in, "paper_data": not stand_in, "data": "simulated environments (brax)",
            "task": spec.task, "backend": spec.backend, "shift": spec.shift.name,
            "budgets": {a: {"source_timesteps": spec.source_timesteps[a],
                            "adapt_timesteps": spec.adapt_timesteps[a]} for a in spec.algos},
            "rejax_presets": {a: spec.algos[a] for a in spec.algos}}
    meta = provenance.metadata(cfg, choices, info)
    runs = R.expand_runs(spec)
    labels = [run_label(r, list(spec.sweep)) for r in runs]
    groups = groups_of(runs)

    def body(rs, loggers, ckpt):
        n_chunks = sum(R._chunking(spec, ag, spec.source_timesteps[a])[1]
                       + len(groups) * R._chunking(spec, ag, spec.adapt_timesteps[a])[1]
                       for a, ag in agents.items())
        bar = progress_bar(n_chunks, progress)
        rows, walls, src_final = [], {}, {}
        for a, ag in agents.items():
            rows += _one_algo(spec, cfg, ag, runs, labels, groups, rs, loggers, bar, mesh, walls, src_final,
                              ckpt)
        bar.close()
        summary = {"run_id": rs.run_id, "setting": "online_rl", "complete": True, "runs": len(rows),
                   "algos": list(spec.algos), "task": spec.task, "methods": list(spec.methods),
                   "seeds": spec.num_seeds, "stand_in": stand_in, "source_return_final": src_final,
                   "wall_s": {**walls, "total": time.time() - t0},
                   "compiled_batches": {"source": len(agents), "adapt": len(agents) * len(groups)}}
        return rows, summary

    return record_run(cfg, "online_rl", meta, body)


def _one_algo(spec, cfg, ag, runs, labels, groups, rs, loggers, bar, mesh, walls, src_final, ckpt=None):
    a = ag.name
    off = list(spec.algos).index(a) * len(runs)  # run_index is unique across algorithms
    spe, _ = R._chunking(spec, ag, spec.source_timesteps[a])
    every = spe * ag.steps_per_iteration
    seed_labels = [f"{a}/source/seed{spec.seed + i}" for i in range(spec.num_seeds)]

    def source_cb(c, state, m):
        rows = []
        for e in range(next(iter(m.values())).shape[1]):
            step = (c + e + 1) * every
            for i in range(spec.num_seeds):
                rows.append({"phase": "source", "algo": a, "seed": spec.seed + i, "step": int(step),
                             **{k: float(v[i, e]) for k, v in m.items()}})
        rs.append_metrics(rows)
        loggers.log((c + 1) * every, f"{a}/source", {k: v[:, -1] for k, v in m.items()}, seed_labels)
        check_finite(m, seed_labels, bar)
        bar.update(1)

    ts = time.time()
    src_state, src_metrics = R.train_source(ag, spec, mesh, [source_cb], ckpt, f"{a}-source")
    walls[f"{a}/source"] = time.time() - ts
    src_final[a] = [float(x) for x in src_metrics["source_return"][:, -1]]

    ta = time.time()
    pkey = pair_key(cfg, a)
    out = []
    for gi, g in enumerate(groups):
        g_runs = [runs[i] for i in g]
        g_labels = [f"{a}/{labels[i]}" for i in g]
        spe_a, _ = R._chunking(spec, ag, spec.adapt_timesteps[a])
        every_a = spe_a * ag.steps_per_iteration

        def adapt_cb(c, state, m, g=g, g_labels=g_labels, every_a=every_a):
            rows = []
            for e in range(next(iter(m.values())).shape[1]):
                step = (c + e + 1) * every_a
                rows += [_metric_row(a, runs[i], off + i, step, {k: float(v[j, e]) for k, v in m.items()})
                         for j, i in enumerate(g)]
            rs.append_metrics(rows)
            loggers.log((c + 1) * every_a, f"{a}/adapt", {k: v[: len(g), -1] for k, v in m.items()},
                        g_labels)
            check_finite(m, g_labels, bar)
            bar.update(1)

        _, metrics, diverged, steps = R.adapt_group(ag, spec, g_runs, src_state, mesh, [adapt_cb],
                                                     checkpoints=ckpt, tag=f"{a}-adapt{gi}")
        rs.append_metrics([_metric_row(a, runs[i], off + i, 0, {k: float(v[j, 0]) for k, v in metrics.items()})
                           for j, i in enumerate(g)])
        for j, i in enumerate(g):
            r = runs[i]
            div = int(diverged[j])
            out.append({
                "run_index": off + i, "method": r["name"], "seed": r["seed"], "hparams": r["hparams"],
                "init": r["init"], "setting": "online_rl", "dataset": spec.task, "model": a,
                "shift": spec.shift.name, "severity": spec.shift.severity, "pair_key": pkey,
                "diverged_step": int(steps[min(div + 1, len(steps) - 1)]) if div >= 0 else -1,
                "summary": summarize(steps, metrics["target_return"][j], metrics["source_return"][j],
                                     spec.gap_window, unit="return"),
                "target_return_at_switch": float(metrics["target_return"][j, 0]),
                "source_return_at_switch": float(metrics["source_return"][j, 0]),
                "eval_episodes": spec.eval_episodes,
            })
    walls[f"{a}/adapt"] = time.time() - ta
    return out


def _metric_row(algo: str, run: dict, index: int, step: int, values: dict) -> dict:
    return {"phase": "adapt", "algo": algo, "run_index": index, "method": run["name"],
            "seed": run["seed"], "hparams": run["hparams"], "step": int(step), **values}
