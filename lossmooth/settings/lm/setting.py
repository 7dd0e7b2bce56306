"""Setting 5, LM fine-tuning with pretraining replay, behind the setting contract.

There is no source phase: the pretrained model is the model at the switch (step 0), the same for every
run, so its evaluation is computed once. Runs share one compiled update (same shapes; the method, the
learning rate and the data order are values) and run one after another, each its own batch: a model
with AdamW moments per run is too large to batch many on a CPU. With several devices a run is spread
over all of them (its rows data-parallel, its weights and AdamW moments FSDP-style: ``shard``). After a run's training, its greedy
replies to the held-out prompts are kept beside the results; at the end a pairwise judge compares
every run's replies with the reference run's (:mod:`.judge`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import jax
import numpy as np

from lossmooth.core import engine
from lossmooth.core.runs import run_label
from lossmooth.lm.models import train as T
from lossmooth.lm.models.load import load_model
from lossmooth.settings.contract import Context, Curves, Line, Phase, PhaseResult, Policy, Setting
from lossmooth.settings.lm import judge as J
from lossmooth.settings.lm.config import Spec, parse
from lossmooth.settings.lm.data import LMData, as_arrays, build, orders
from lossmooth.settings.lm.objective import make_eval, make_step


@dataclass
class Loaded:
    model_cfg: object
    base_params: dict
    tokenizer: object
    data: LMData
    arrays: dict
    tspec: T.TrainSpec
    chunk: object  # the compiled update chunk, shared by every run
    evaluate: object  # the compiled evaluation
    info: dict
    init: object = None  # the compiled state at the switch: a run's own copy of the weights, fresh moments
    at_switch: dict = field(default_factory=dict)  # the pretrained model's evaluation, once computed


def train_spec(spec: Spec) -> T.TrainSpec:
    b = spec.budget
    return T.TrainSpec(micro_batch=b["micro_batch"], accum=b["accum"], updates=b["adapt_steps"], warmup=b["warmup"],
                       final_lr_fraction=b["final_lr_fraction"], weight_decay=b["weight_decay"],
                       max_grad_norm=b["max_grad_norm"], eval_micro_batch=b["eval_micro_batch"])


class LM(Setting):
    """A pretrained causal LM fine-tuned on chat transcripts while replaying pretraining text."""

    name = "lm"
    curves = Curves(kind="loss", target="target_loss", source="replay_ppl", source_perplexity=True)
    step_unit = "updates"
    lr_key = "lm_budget.lr"
    diverge_on = ("target_loss", "loss_target")
    one_run_batches = True  # a model with AdamW moments per run is too large to batch many on a CPU
    lanes = 1  # every batch holds one run (one-run programs): nothing beside it to depend on
    returns_memory = True  # weights, moments and generation caches of hundreds of MB, made and freed per run
    # XLA's CPU scheduler orders a program's work for concurrency by default, which keeps activations
    # (those remat would free too) alive longer; this order minimizes memory instead (measured on the
    # default's update, remat on: 1.64 -> 1.34 GiB of temporaries, training-step peak 3514 -> 3182 MiB)
    xla_flags = ("--xla_cpu_enable_concurrency_optimized_scheduler=false",)

    parse = staticmethod(parse)  # the config, validated (config.py)

    def load(self, spec: Spec, cfg: dict, choices: dict) -> Loaded:
        if spec.judge["enabled"] and spec.judge["kind"] == "openai":  # before hours of training, not after
            J.external_judge_ready(spec)
        b = spec.budget
        max_len = max(b["seq_len"], spec.judge.get("prompt_tokens", 0) + spec.judge.get("max_new_tokens", 0) + 64)
        model_cfg, base_params, tokenizer = load_model(spec.model, max_len)
        data = build(spec, tokenizer, model_cfg)
        tspec = train_spec(spec)
        # donated: a run's state is its own copy (stack_runs), so each update writes its weights and
        # AdamW moments over the old ones instead of beside them
        # one run per batch (groups): the per-run program itself, not a vmapped batch of one (run_vmap)
        chunk = engine.make_chunk(make_step(model_cfg, tspec), make_eval(model_cfg, tspec),
                                  b["eval_every"], b["evals_per_chunk"], donate=True, one_run=True)
        # one compiled program makes a run's state with its run axis: the AdamW moments are born
        # stacked, not made once and copied (a transient the process's allocator would keep)
        init = jax.jit(lambda params: engine.stack_runs([T.init_state(params, tspec)]))
        return Loaded(model_cfg, base_params, tokenizer, data, as_arrays(data), tspec, chunk,
                      engine.make_eval(make_eval(model_cfg, tspec), one_run=True), data.info, init)

    def describe(self, spec: Spec, loaded, line: str) -> Line:
        """The model column names the checkpoint: ``name@revision`` where a revision is set (a
        pretraining budget, as OLMo's ``step330000-tokens1383B``). Exact replay reads text installed on
        this machine: its hash names it (README: Dataset identity). No source phase; steps count updates."""
        b, sha = spec.budget, loaded.info.get("dataset_sha256")
        model = spec.model["name"] + (f"@{spec.model['revision']}" if spec.model.get("revision") else "")
        return Line(dataset=spec.target["name"], model=model, shift=f"replay:{spec.replay['name']}", severity=0.0,
                    adapt=Policy(b["adapt_steps"], b["eval_every"], b["evals_per_chunk"]),
                    identity={"dataset_sha256": sha} if sha else {})

    def adapt_phase(self, ctx: Context, line: str, runs: list[dict], source: PhaseResult | None) -> Phase:
        spec, ld = ctx.spec, ctx.loaded
        (r,) = runs
        hp = engine.stack_runs([{"method": r["method"], "lr": np.float32(r["lr"]), **orders(ld.data, spec, r["seed"])}])

        def at_switch(state, hp, data):
            """The pretrained model's evaluation: the same for every run, computed once."""
            if not ld.at_switch:
                out = engine.to_host(ld.evaluate(state, {}, data))
                ld.at_switch.update({k: float(v[0]) for k, v in out.items()})
            return {k: np.asarray([v], np.float32) for k, v in ld.at_switch.items()}

        return Phase(state=ld.init(ld.base_params), hp=hp, chunk=ld.chunk,
                     data=ld.arrays, n_chunks=spec.n_chunks, eval_every=spec.budget["eval_every"],
                     evals_per_chunk=spec.budget["evals_per_chunk"], evaluate=at_switch, shard=False, split=True)

    def after_group(self, ctx: Context, line: str, index: list[int], runs: list[dict], result: PhaseResult) -> None:
        spec, ld = ctx.spec, ctx.loaded
        if spec.judge["enabled"]:  # the run's replies from its trained weights, kept beside the results
            params = jax.tree.map(lambda x: x[0], result.state["params"])
            J.replies(ctx.run_dir, index[0], spec, ld.model_cfg, params, ld.tokenizer, ld.data.prompts)

    def finish(self, ctx: Context, rows: list[dict], sources: dict) -> dict:
        spec, ld, runs = ctx.spec, ctx.loaded, ctx.runs
        out = {"at_switch": dict(ld.at_switch), "judge_reference": None}
        if not spec.judge["enabled"]:
            return out
        t = time.time()
        answers = {i: J.read_replies(ctx.run_dir, i) for i in range(len(runs))}
        judged = J.judge(ctx.run_dir, spec, runs, answers, ld.data.prompts, ld.model_cfg, ld.base_params,
                         ld.tokenizer)
        for row in rows:
            if row["run_index"] in judged:
                row["judge"] = judged[row["run_index"]]
                row["summary"]["judge_win_rate"] = judged[row["run_index"]]["win_rate"]
        out["judge_reference"] = (spec.judge.get("reference_dir")
                                  or run_label(runs[J.reference_index(runs)], list(spec.sweep)))
        out["wall_s"] = {"judge": time.time() - t}
        return out


SETTING = LM()
