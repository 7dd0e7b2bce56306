"""Run the offline-to-online experiment end to end: validate, load the dataset, TD3+BC offline for
every seed, online fine-tuning for every method, write the results store, return the run directory.

Nothing is written before the config, the dataset and the environment are validated.
"""
from __future__ import annotations

import time

import jax

from lossmooth import provenance
from lossmooth.core import engine
from lossmooth.offline import scores
from lossmooth.results.summaries import summarize_scores
from lossmooth.settings import offline_to_online as O
from lossmooth.settings import online_rl as R
from lossmooth.settings.common import groups_of
from lossmooth.settings.host import check_finite, progress_bar, record_run, run_label
from lossmooth.settings.online_rl_run import pair_key

SHIFT = "offline->online"


def execute(cfg: dict, choices: dict, mesh=None, progress: bool = True) -> str:
    t0 = time.time()
    spec = O.parse(cfg)
    data = O.load_dataset(spec)
    agents = O.build_agents(spec, data)  # checks the dataset against the environment
    ref = data.ref_scores
    own = spec.dataset["kind"] == "own"
    info = {"stand_in": own, "paper_data": spec.dataset["kind"] != "own",
            "data": f"{data.name} ({data.info.get('source')}, {len(data)} transitions)",
            "environment": O.env_name(spec, data), "ref_scores": list(ref),
            "dataset_info": {k: v for k, v in data.info.items() if isinstance(v, (str, int, float))},
            "offline_iterations": spec.offline_iterations, "online_timesteps": spec.adapt_timesteps["td3"],
            "td3": spec.algos["td3"], "bc_alpha": spec.bc_alpha}
    meta = provenance.metadata(cfg, choices, info)
    runs = O.expand_runs(spec)
    labels = [run_label(r, list(spec.sweep)) for r in runs]
    groups = groups_of(runs)

    def body(rs, loggers, ckpt):
        _, off_chunks = O.offline_chunking(spec)
        _, on_chunks = R._chunking(spec, agents, spec.adapt_timesteps["td3"])
        bar = progress_bar(off_chunks + len(groups) * on_chunks, progress)
        walls = {}
        rows, offline_final = _run(spec, cfg, agents, data, runs, labels, groups, rs, loggers, bar, mesh, walls,
                                   ckpt)
        bar.close()
        summary = {"run_id": rs.run_id, "setting": "offline_to_online", "complete": True, "runs": len(rows),
                   "task": spec.task, "dataset": data.name, "methods": list(spec.methods), "seeds": spec.num_seeds,
                   "stand_in": own, "offline_score_final": offline_final, "ref_scores": list(ref),
                   "wall_s": {**walls, "total": time.time() - t0},
                   "compiled_batches": {"offline": 1, "online": len(groups)}}
        return rows, summary

    return record_run(cfg, "offline_to_online", meta, body)


def _run(spec, cfg, agents, data, runs, labels, groups, rs, loggers, bar, mesh, walls, ckpt=None):
    ref = data.ref_scores
    buffer = O.dataset_buffer(data)
    every_off, _ = O.offline_chunking(spec)
    seed_labels = [f"offline/seed{spec.seed + i}" for i in range(spec.num_seeds)]

    def with_score(m):
        return {**m, "target_score": scores.normalized(m["target_return"], ref)}

    def offline_cb(c, state, m):
        if c == 0:  # the online programs compile on the spare core while TD3+BC trains
            src = jax.tree.map(lambda x: x[: spec.num_seeds], state)
            engine.compile_queue([p for g in groups for p in
                                  R.adapt_programs(agents, spec, [runs[i] for i in g], src, mesh, buffer)])
        m = with_score(m)
        rows = [{"phase": "offline", "seed": spec.seed + i, "step": int((c + 1) * every_off),
                 **{k: float(v[i, -1]) for k, v in m.items()}} for i in range(spec.num_seeds)]
        rs.append_metrics(rows)
        loggers.log((c + 1) * every_off, "offline", {k: v[: spec.num_seeds, -1] for k, v in m.items()}, seed_labels)
        check_finite(m, seed_labels, bar)
        bar.update(1)

    t = time.time()
    off_state, off_metrics = O.train_offline(agents, spec, data, buffer, mesh, [offline_cb], ckpt)
    walls["offline"] = time.time() - t
    off_score = scores.normalized(off_metrics["target_return"], ref)
    rs.append_metrics([{"phase": "offline", "seed": spec.seed + i, "step": 0,
                        "target_return": float(off_metrics["target_return"][i, 0]),
                        "target_score": float(off_score[i, 0])} for i in range(spec.num_seeds)])

    t = time.time()
    pkey = pair_key(cfg, "td3")
    out = []
    for gi, g in enumerate(groups):
        g_runs = [runs[i] for i in g]
        g_labels = [labels[i] for i in g]
        spe, _ = R._chunking(spec, agents, spec.adapt_timesteps["td3"])
        every = spe * agents.steps_per_iteration

        def online_cb(c, state, m, g=g, g_labels=g_labels, every=every):
            m = with_score(m)
            rows = [_metric_row(runs[i], i, (c + 1) * every, {k: float(v[j, -1]) for k, v in m.items()})
                    for j, i in enumerate(g)]
            rs.append_metrics(rows)
            loggers.log((c + 1) * every, "online", {k: v[: len(g), -1] for k, v in m.items()}, g_labels)
            check_finite(m, g_labels, bar)
            bar.update(1)

        _, metrics, diverged, steps = R.adapt_group(agents, spec, g_runs, off_state, mesh, [online_cb], data=buffer,
                                                     checkpoints=ckpt, tag=f"online{gi}")
        score = scores.normalized(metrics["target_return"], ref)
        at_switch = {k: metrics[k] for k in ("target_return", "lam", "target_success") if k in metrics}
        rs.append_metrics([_metric_row(runs[i], i, 0, {**{k: float(v[j, 0]) for k, v in at_switch.items()},
                                                       "target_score": float(score[j, 0])})
                           for j, i in enumerate(g)])
        for j, i in enumerate(g):
            r = runs[i]
            div = int(diverged[j])
            out.append({
                "run_index": i, "method": r["name"], "seed": r["seed"], "hparams": r["hparams"],
                "init": r["init"], "setting": "offline_to_online", "dataset": data.name, "model": "td3",
                "shift": SHIFT, "severity": 0.0, "pair_key": pkey,
                "diverged_step": int(steps[min(div + 1, len(steps) - 1)]) if div >= 0 else -1,
                "summary": summarize_scores(steps, score[j], spec.gap_window, metrics.get("target_success", [None] * len(g))[j]),
                "offline_score": float(score[j, 0]), "final_return": float(metrics["target_return"][j, -1]),
                "eval_episodes": spec.eval_episodes,
            })
    walls["online"] = time.time() - t
    return out, [float(x) for x in off_score[:, -1]]


def _metric_row(run: dict, index: int, step: int, values: dict) -> dict:
    return {"phase": "adapt", "algo": "td3", "run_index": index, "method": run["name"],
            "seed": run["seed"], "hparams": run["hparams"], "step": int(step), **values}
