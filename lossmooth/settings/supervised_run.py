"""Run the supervised-shift experiment end to end: validate, load data, train the source models,
adapt every method, write the results store, return the run directory.

Nothing is written before the config and the data are validated, so bad input leaves no run
directory behind.
"""
from __future__ import annotations

import time

import numpy as np

from lossmooth import provenance
from lossmooth.models import classifiers
from lossmooth.results import store
from lossmooth.results.summaries import summarize
from lossmooth.settings import supervised as S
from lossmooth.settings.common import groups_of
from lossmooth.settings.host import check_finite, progress_bar, record_run, run_label

# config keys that do not change what a source model and a data order are (pairing context)
_NOT_CONTEXT = store.HOST_ONLY + ("method", "schedule", "sweep", "num_seeds")


def pair_key(cfg: dict) -> str:
    ctx = {k: v for k, v in cfg.items() if k not in _NOT_CONTEXT}
    ctx["setting"] = {k: v for k, v in cfg["setting"].items() if k != "lr"}
    return store.config_hash(ctx)


def execute(cfg: dict, choices: dict, mesh=None, progress: bool = True) -> str:
    """Run the experiment the resolved config ``cfg`` describes; return its run directory."""
    t0 = time.time()
    setting = cfg["setting"]["name"]  # supervised, or pretrained_vision (domain pairs, pretrained models)
    spec = S.parse(cfg)
    data, info = S.build_data(spec)
    model = classifiers.build(spec.model_name, info["num_classes"], **spec.model_kwargs)
    meta = provenance.metadata(cfg, choices, info)
    runs = S.expand_runs(spec)
    swept = list(spec.sweep)
    labels = [run_label(r, swept) for r in runs]
    pkey = pair_key(cfg)

    def body(rs, loggers, ckpt):
        progs = S.Programs(spec, model, info["num_classes"])
        groups = groups_of(runs)
        n_chunks = (spec.source_steps // spec.steps_per_eval // spec.source_evals_per_chunk
                    + len(groups) * (spec.adapt_steps // spec.steps_per_eval // spec.evals_per_chunk))
        bar = progress_bar(n_chunks, progress)

        # -- source phase (every seed in one compiled batch)
        seed_labels = [f"source/seed{spec.seed + i}" for i in range(spec.num_seeds)]

        def source_cb(c, state, m):
            step = (c + 1) * spec.source_evals_per_chunk * spec.steps_per_eval
            rows = []
            for e in range(next(iter(m.values())).shape[1]):
                s = step - (spec.source_evals_per_chunk - 1 - e) * spec.steps_per_eval
                for i in range(spec.num_seeds):
                    rows.append({"phase": "source", "seed": spec.seed + i, "step": int(s),
                                 **{k: float(v[i, e]) for k, v in m.items()}})
            rs.append_metrics(rows)
            loggers.log(step, "source", {k: v[:, -1] for k, v in m.items()}, seed_labels)
            check_finite(m, seed_labels, bar)
            bar.update(1)

        ts = time.time()
        src_state, src_metrics = S.train_source(progs, data, spec, mesh, [source_cb], ckpt)
        src_params = src_state["params"]
        t_source = time.time() - ts

        # -- adaptation: one compiled batch per static structure
        ta = time.time()
        results = [None] * len(runs)
        for gi, g in enumerate(groups):
            g_runs = [runs[i] for i in g]
            g_labels = [labels[i] for i in g]

            def adapt_cb(c, state, m, g=g, g_labels=g_labels):
                step0 = c * spec.evals_per_chunk * spec.steps_per_eval
                rows = []
                for e in range(next(iter(m.values())).shape[1]):
                    for j, i in enumerate(g):
                        rows.append(_metric_row(runs[i], i, step0 + (e + 1) * spec.steps_per_eval,
                                                {k: float(v[j, e]) for k, v in m.items()}))
                rs.append_metrics(rows)
                loggers.log(step0 + spec.evals_per_chunk * spec.steps_per_eval, "adapt",
                            {k: v[: len(g), -1] for k, v in m.items()}, g_labels)
                check_finite(m, g_labels, bar)
                bar.update(1)

            _, metrics, diverged = S.adapt_group(progs, data, spec, g_runs, src_params, mesh, [adapt_cb],
                                                 ckpt, f"adapt{gi}")
            rs.append_metrics([_metric_row(runs[i], i, 0, {k: float(v[j, 0]) for k, v in metrics.items()})
                               for j, i in enumerate(g)])
            steps = np.arange(metrics["target_acc"].shape[1]) * spec.steps_per_eval
            for j, i in enumerate(g):
                results[i] = (metrics, j, int(diverged[j]), steps)
        t_adapt = time.time() - ta
        bar.close()

        rows = []
        for i, r in enumerate(runs):
            metrics, j, div, steps = results[i]
            rows.append({
                "run_index": i, "method": r["name"], "seed": r["seed"], "hparams": r["hparams"],
                "setting": setting, "dataset": info["dataset"], "model": spec.model_name,
                "shift": spec.shift, "severity": spec.severity, "pair_key": pkey,
                "diverged_step": int((div + 1) * spec.steps_per_eval) if div >= 0 else -1,
                "summary": summarize(steps, metrics["target_acc"][j], metrics["source_acc"][j],
                                     spec.gap_window),
                "source_acc_at_switch": float(metrics["source_acc"][j, 0]),
            })
        summary = {"run_id": rs.run_id, "setting": setting, "complete": True, "runs": len(rows),
                   "methods": list(spec.methods), "seeds": spec.num_seeds,
                   "stand_in": meta["stand_in"],
                   "source_acc_final": [float(x) for x in src_metrics["source_acc"][:, -1]],
                   "wall_s": {"source": t_source, "adapt": t_adapt, "total": time.time() - t0},
                   "compiled_batches": {"source": 1, "adapt": len(groups)}}
        return rows, summary

    return record_run(cfg, setting, meta, body)


def _metric_row(run: dict, index: int, step: int, values: dict) -> dict:
    return {"phase": "adapt", "run_index": index, "method": run["name"], "seed": run["seed"],
            "hparams": run["hparams"], "step": int(step), **values}
