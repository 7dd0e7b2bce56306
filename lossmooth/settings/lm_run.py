"""Run the LM fine-tuning experiment end to end: validate, load the model and data, fine-tune every
(method, learning rate, seed) run, generate each run's replies to the held-out prompts, judge them
against the reference run's, write the results store.

Runs share one compiled update (same shapes; the method, learning rate and data order are values)
and run one after another: a 135M-parameter model with AdamW moments per run is too large to batch
many on a CPU. The evaluation at the switch is the pretrained model's, the same for every run, so it
is computed once.
"""
from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from lossmooth import provenance
from lossmooth.core import engine
from lossmooth.lm import train as T
from lossmooth.results import store
from lossmooth.results.summaries import summarize_lm
from lossmooth.settings import lm as S
from lossmooth.settings import lm_data as D
from lossmooth.settings.host import check_finite, progress_bar, record_run, run_label

_NOT_CONTEXT = store.HOST_ONLY + ("method", "schedule", "sweep", "num_seeds")


def pair_key(cfg: dict) -> str:
    """What makes two runs comparable seed by seed (everything but the method and swept numbers)."""
    ctx = {k: v for k, v in cfg.items() if k not in _NOT_CONTEXT}
    ctx["lm_budget"] = {k: v for k, v in cfg.get("lm_budget", {}).items() if k != "lr"}
    return store.config_hash(ctx)


def train_spec(spec: S.Spec) -> T.TrainSpec:
    b = spec.budget
    return T.TrainSpec(micro_batch=b["micro_batch"], accum=b["accum"], updates=b["updates"], warmup=b["warmup"],
                       final_lr_fraction=b["final_lr_fraction"], weight_decay=b["weight_decay"],
                       max_grad_norm=b["max_grad_norm"], eval_micro_batch=b["eval_micro_batch"])


def reference_index(runs: list[dict]) -> int:
    """The judge's reference: the hard switch, first seed, smallest learning rate (the paper: lr 1e-5, seed 0)."""
    refs = [i for i, r in enumerate(runs) if r["name"] == S.REFERENCE_METHOD and r["seed_index"] == 0]
    return min(refs, key=lambda i: runs[i]["lr"])


def execute(cfg: dict, choices: dict, mesh=None, progress: bool = True) -> str:
    del mesh  # runs go one at a time (see the module docstring)
    t0 = time.time()
    spec = S.parse(cfg)
    b = spec.budget
    if spec.judge["enabled"] and spec.judge["kind"] == "openai":  # before hours of training, not after
        _external_judge_ready(spec)
    max_len = max(b["seq_len"], spec.judge.get("prompt_tokens", 0) + spec.judge.get("max_new_tokens", 0) + 64)
    model_cfg, base_params, tokenizer = D.load_model(spec.model, max_len)
    data = D.build(spec, tokenizer, model_cfg)
    arrays = D.as_arrays(data)
    meta = provenance.metadata(cfg, choices, data.info)
    meta["lm_data"] = data.info
    runs = S.expand_runs(spec)
    labels = [run_label(r, list(spec.sweep)) for r in runs]
    pkey = pair_key(cfg)
    tspec = train_spec(spec)

    def body(rs, loggers, ckpt):
        chunk = engine.make_chunk(T.make_step(model_cfg, tspec), T.make_eval(model_cfg, tspec),
                                  b["steps_per_eval"], b["evals_per_chunk"])
        bar = progress_bar(len(runs) * spec.n_chunks, progress)
        te = time.time()
        initial = engine.stack_runs([T.init_state(base_params, tspec)])
        at_switch = {k: float(v[0]) for k, v in jax.device_get(
            engine.make_eval(T.make_eval(model_cfg, tspec))(initial, {}, arrays)).items()}
        t_eval0 = time.time() - te
        del initial  # AdamW's zero moments of the whole model: not needed past the switch
        if rs.metric_rows() == 0:  # a resumed run kept these rows (they precede every checkpoint)
            rs.append_metrics([{"phase": "adapt", "run_index": i, "method": r["name"], "seed": r["seed"],
                                "hparams": r["hparams"], "step": 0, **at_switch} for i, r in enumerate(runs)])
        curves, replies, train_s = {}, {}, {}
        for i, r in enumerate(runs):
            def cb(c, state, m, i=i, r=r):
                step0 = c * b["evals_per_chunk"] * b["steps_per_eval"]
                rows = [{"phase": "adapt", "run_index": i, "method": r["name"], "seed": r["seed"],
                         "hparams": r["hparams"], "step": step0 + (e + 1) * b["steps_per_eval"],
                         **{k: float(v[0, e]) for k, v in m.items()}}
                        for e in range(next(iter(m.values())).shape[1])]
                rs.append_metrics(rows)
                loggers.log(rows[-1]["step"], "adapt", {k: v[:, -1] for k, v in m.items()}, [labels[i]])
                check_finite(m, [labels[i]], bar)
                bar.update(1)

            hp = engine.stack_runs([{"method": r["method"], "lr": np.float32(r["lr"]),
                                     **D.orders(data, spec, r["seed"])}])
            tr = time.time()
            result = engine.run_loop(chunk, engine.stack_runs([T.init_state(base_params, tspec)]), hp, arrays,
                                     spec.n_chunks, [cb], checkpoints=ckpt, tag=f"run{i}")
            train_s[i] = time.time() - tr
            curves[i] = (result.metrics, int(result.diverged_at[0]))
            if spec.judge["enabled"]:
                params = jax.tree.map(lambda x: x[0], result.state["params"])
                replies[i] = _replies(rs.path, i, spec, model_cfg, params, tokenizer, data.prompts)
            del result
        bar.close()

        judged, t_judge = {}, 0.0
        if spec.judge["enabled"]:
            tj = time.time()
            judged = _judge(rs.path, spec, runs, replies, data.prompts, model_cfg, base_params, tokenizer)
            t_judge = time.time() - tj

        rows = []
        for i, r in enumerate(runs):
            metrics, div = curves[i]
            steps = np.arange(metrics["target_loss"].shape[1] + 1) * b["steps_per_eval"]
            target = np.concatenate([[at_switch["target_loss"]], metrics["target_loss"][0]])
            replay = np.concatenate([[at_switch["replay_ppl"]], metrics["replay_ppl"][0]])
            summary = summarize_lm(steps, target, replay, spec.gap_window)
            row = {"run_index": i, "method": r["name"], "seed": r["seed"], "hparams": r["hparams"], "setting": "lm",
                   "dataset": spec.target["name"], "model": spec.model["name"], "shift": f"replay:{spec.replay['name']}",
                   "severity": 0.0, "pair_key": pkey, "stand_in": meta["stand_in"],
                   "diverged_step": int((div + 1) * b["steps_per_eval"]) if div >= 0 else -1,
                   "summary": summary, "train_s": round(train_s[i], 1)}
            if i in judged:
                row["judge"] = judged[i]
                summary["judge_win_rate"] = judged[i]["win_rate"]
            rows.append(row)
        summary = {"run_id": rs.run_id, "setting": "lm", "complete": True, "runs": len(rows),
                   "methods": list(spec.methods), "seeds": spec.num_seeds, "stand_in": meta["stand_in"],
                   "at_switch": at_switch, "judge_reference": (spec.judge.get("reference_dir") or (judged and labels[reference_index(runs)])),
                   "wall_s": {"eval_at_switch": t_eval0, "train": float(sum(train_s.values())), "judge": t_judge,
                              "total": time.time() - t0}}
        return rows, summary

    return record_run(cfg, "lm", meta, body)


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
    os.replace(tmp, path)


def _replies(run_dir: str, i: int, spec, cfg, params, tokenizer, prompts) -> list[str]:
    """Run ``i``'s greedy replies to the held-out prompts (kept in ``replies/run<i>.json``; a resumed
    run reads them back instead of generating again)."""
    from lossmooth.lm.respond import ChatModel

    path = os.path.join(run_dir, "replies", f"run{i}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)["replies"]
    j = spec.judge
    model = ChatModel(cfg, params, tokenizer, spec.model["template"], max_prompt_tokens=j["prompt_tokens"])
    texts = [t for t, _, _ in model.reply(prompts, j["max_new_tokens"])]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _write_json(path, {"run_index": i, "replies": texts})
    return texts


def _judge_config(spec, base_url: str, model: str, guided: bool, cache_path: str | None):
    from lossmooth.lm.judge import JudgeConfig

    j = spec.judge
    fields = {k: j[k] for k in ("temperature", "max_tokens", "max_response_chars", "timeout_s", "max_retries",
                                "backoff_s", "api_key_env", "system_prompt", "user_template") if k in j}
    return JudgeConfig(base_url=base_url, model=model, cache_path=cache_path, guided_choice=guided, **fields)


def _external_judge_ready(spec) -> None:
    from lossmooth.lm.judge import JudgeClient

    j = spec.judge
    with JudgeClient(_judge_config(spec, j["base_url"], j["model"], j["guided_choice"], None)) as client:
        client.check_reachable()


# the config that fixes which held-out prompts a run answers: a reference from another run directory
# must share it, or its replies answer other prompts
_PROMPT_CONTEXT = (("lm_target",), ("setting", "heldout_fraction"), ("setting", "split_salt"),
                   ("judge", "prompts"), ("judge", "prompt_tokens"), ("lm_model", "template"))


def _get(cfg: dict, path: tuple):
    for key in path:
        cfg = cfg.get(key) if isinstance(cfg, dict) else None
    return cfg


def external_reference(reference_dir: str, cfg: dict) -> list[str]:
    """The replies of the reference run (hard switch, first seed, smallest learning rate) of another
    complete run directory, e.g. the 1874B-token checkpoint's for every pretraining budget (the paper).
    Its prompts must be this run's: the fields of ``_PROMPT_CONTEXT`` must agree."""
    import yaml

    from lossmooth.errors import ConfigError

    paths = {n: os.path.join(reference_dir, n) for n in ("config.yaml", "runs.json", "summary.json")}
    missing = [n for n, p in paths.items() if not os.path.exists(p)]
    if missing:
        raise ConfigError(f"judge.reference_dir: {reference_dir} is not a complete lm run directory (no "
                          f"{', '.join(missing)}); point it at results/lm/<run id> of a finished run")
    with open(paths["config.yaml"]) as f:
        other = yaml.safe_load(f)
    differ = [".".join(k) for k in _PROMPT_CONTEXT if _get(other, k) != _get(cfg, k)]
    if differ:
        raise ConfigError(f"judge.reference_dir: {reference_dir} answered other prompts ({', '.join(differ)} "
                          "differ); use a reference run with the same target, split and judge prompts")
    with open(paths["runs.json"]) as f:
        rows = json.load(f)
    refs = [r for r in rows if r["method"] == S.REFERENCE_METHOD]
    if not refs:
        raise ConfigError(f"judge.reference_dir: {reference_dir} has no {S.REFERENCE_METHOD} run to serve as "
                          "the reference")
    ref = min(refs, key=lambda r: (r["seed"], r["hparams"].get("lr", 0.0)))
    with open(os.path.join(reference_dir, "replies", f"run{ref['run_index']}.json")) as f:
        return json.load(f)["replies"]


def _judge(run_dir, spec, runs, replies, prompts, cfg, base_params, tokenizer) -> dict:
    """``{run index: judge summary}``: every run judged against the reference's replies on the same
    prompts, both orders, judgments cached in ``judge_cache.jsonl`` (a resumed run asks again only what it
    has not asked). The reference is this run's own (hard switch, first seed, smallest lr), or with
    ``judge.reference_dir`` another run directory's; the paper judged every pretraining budget
    against the 1874B checkpoint's hard switch."""
    from lossmooth.lm.judge import JudgeError, judge_pairs

    j = spec.judge
    if j.get("reference_dir"):
        ref, reference = None, external_reference(j["reference_dir"], spec.raw)
    else:
        ref = reference_index(runs)
        reference = replies[ref]
    cache = os.path.join(run_dir, "judge_cache.jsonl")

    def judge_all(base_url: str, model: str, guided: bool) -> dict:
        jc = _judge_config(spec, base_url, model, guided, cache)
        out = {}
        if ref is not None:
            # the reference against itself: both orders show the same pair, so whatever the judge answers,
            # one order's win is the other's loss (or both tie): exactly 0.5, no request needed
            out[ref] = {"reference_run": ref, "win_rate": 0.5, "ci": [0.5, 0.5], "wins": 0,
                        "ties": len(prompts), "losses": 0, "inconsistent": 0, "n": len(prompts), "self": True}
        for i in range(len(runs)):
            if i == ref:
                continue
            items = [(f"{k}", D.instruction_text(p), replies[i][k], reference[k]) for k, p in enumerate(prompts)]
            try:
                s = judge_pairs(items, jc).to_dict()
            except JudgeError as e:
                raise JudgeError(e.endpoint, e.reason, f"{e.fix}; the run is kept in {run_dir} with its judgments so "
                                 "far: the same command resumes it", e.tries) from None
            out[i] = {"reference_run": j.get("reference_dir") or ref, "win_rate": s["win_rate"],
                      "ci": [s["ci_low"], s["ci_high"]], "wins": s["wins"], "ties": s["ties"],
                      "losses": s["losses"], "inconsistent": s["inconsistent"], "n": s["n"]}
        return out

    if j["kind"] == "openai":
        return judge_all(j["base_url"], j["model"], j["guided_choice"])
    # serve: the pretrained model itself as the judge, behind the same API on loopback
    from lossmooth.lm.respond import ChatModel
    from lossmooth.lm.serve import ChatServer

    judge_model = ChatModel(cfg, base_params, tokenizer, spec.model["template"],
                            max_prompt_tokens=_judge_prompt_tokens(spec))
    with ChatServer(judge_model.respond, j["model"] or "judge") as server:
        return judge_all(server.base_url, j["model"] or "judge", j["guided_choice"])


def _judge_prompt_tokens(spec) -> int:
    """Room for the judge prompt: the instruction, both replies (at most max_new_tokens each) and the
    template's wording."""
    j = spec.judge
    return j["prompt_tokens"] + 2 * j["max_new_tokens"] + 192

