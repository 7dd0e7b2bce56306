"""The LM setting's evaluation by a judge: each run's greedy replies to held-out target prompts, judged
pairwise against the reference run's replies (the hard switch, first seed, smallest learning rate; or
another run directory's, as the paper judged every pretraining budget against the 1874B checkpoint's),
both presentation orders, every judgment cached so a failed evaluation resumes where it stopped.
"""
from __future__ import annotations

import json
import os

import yaml

from lossmooth.errors import ConfigError
from lossmooth.lm.judge.client import JudgeClient, JudgeConfig, JudgeError, judge_pairs
from lossmooth.lm.judge.respond import ChatModel
from lossmooth.lm.judge.server import ChatServer
from lossmooth.settings.lm.config import REFERENCE_METHOD
from lossmooth.settings.lm.data import instruction_text


def reference_index(runs: list[dict]) -> int:
    """The judge's reference: the hard switch, first seed, smallest learning rate (the paper: lr 1e-5, seed 0)."""
    refs = [i for i, r in enumerate(runs) if r["name"] == REFERENCE_METHOD and r["seed_index"] == 0]
    return min(refs, key=lambda i: runs[i]["lr"])


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
    os.replace(tmp, path)


def read_replies(run_dir: str, i: int) -> list[str]:
    """Run ``i``'s replies as :func:`replies` kept them."""
    with open(os.path.join(run_dir, "replies", f"run{i}.json")) as f:
        return json.load(f)["replies"]


def replies(run_dir: str, i: int, spec, cfg, params, tokenizer, prompts) -> list[str]:
    """Run ``i``'s greedy replies to the held-out prompts (kept in ``replies/run<i>.json``; a resumed
    run reads them back instead of generating again)."""
    path = os.path.join(run_dir, "replies", f"run{i}.json")
    if os.path.exists(path):
        return read_replies(run_dir, i)
    j = spec.judge
    model = ChatModel(cfg, params, tokenizer, spec.model["template"], max_prompt_tokens=j["prompt_tokens"])
    texts = [t for t, _, _ in model.reply(prompts, j["max_new_tokens"])]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _write_json(path, {"run_index": i, "replies": texts})
    return texts


def _judge_config(spec, base_url: str, model: str, guided: bool, cache_path: str | None):
    j = spec.judge
    fields = {k: j[k] for k in ("temperature", "max_tokens", "max_response_chars", "timeout_s", "max_retries",
                                "backoff_s", "api_key_env", "system_prompt", "user_template") if k in j}
    return JudgeConfig(base_url=base_url, model=model, cache_path=cache_path, guided_choice=guided, **fields)


def external_judge_ready(spec) -> None:
    """An external judge endpoint answers (checked before any training, not after)."""
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
    refs = [r for r in rows if r["method"] == REFERENCE_METHOD]
    if not refs:
        raise ConfigError(f"judge.reference_dir: {reference_dir} has no {REFERENCE_METHOD} run to serve as "
                          "the reference")
    ref = min(refs, key=lambda r: (r["seed"], r["hparams"].get("lr", 0.0)))
    with open(os.path.join(reference_dir, "replies", f"run{ref['run_index']}.json")) as f:
        return json.load(f)["replies"]


def judge(run_dir, spec, runs, answers, prompts, cfg, base_params, tokenizer) -> dict:
    """``{run index: judge summary}``: every run judged against the reference's replies on the same
    prompts, both orders, judgments cached in ``judge_cache.jsonl`` (a resumed run asks again only what it
    has not asked). The reference is this run's own (hard switch, first seed, smallest lr), or with
    ``judge.reference_dir`` another run directory's; the paper judged every pretraining budget
    against the 1874B checkpoint's hard switch."""
    j = spec.judge
    if j.get("reference_dir"):
        ref, reference = None, external_reference(j["reference_dir"], spec.raw)
    else:
        ref = reference_index(runs)
        reference = answers[ref]
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
            items = [(f"{k}", instruction_text(p), answers[i][k], reference[k]) for k, p in enumerate(prompts)]
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
    # serve: the pretrained model itself as the judge, behind the same API on loopback; the model under
    # study judging its own fine-tuned copies checks the pipeline, its verdicts are not a result
    judge_model = ChatModel(cfg, base_params, tokenizer, spec.model["template"],
                            max_prompt_tokens=_judge_prompt_tokens(spec))
    with ChatServer(judge_model.respond, j["model"] or "judge") as server:
        out = judge_all(server.base_url, j["model"] or "judge", j["guided_choice"])
    return {i: {**v, "pipeline_check": True} for i, v in out.items()}


def _judge_prompt_tokens(spec) -> int:
    """Room for the judge prompt: the instruction, both replies (at most max_new_tokens each) and the
    template's wording."""
    j = spec.judge
    return j["prompt_tokens"] + 2 * j["max_new_tokens"] + 192

