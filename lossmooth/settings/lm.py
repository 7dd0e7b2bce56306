"""Setting 5: language-model fine-tuning with pretraining replay.

A pretrained causal LM (OLMo-1B on the paper path, SmolLM2-135M-Instruct here) is fine-tuned on a
target: the SFT loss on chat transcripts (Anthropic-HH / Tulu-v1; ShareGPT / Chit-Chat here). The source
objective is next-token loss on replay text standing in for the pretraining distribution (a Dolma
sample; Debian's KJV Bible, WordNet glosses and fortunes here). Every method trains

    L_t = lam_t * L_SFT(target rows) + (1 - lam_t) * L_LM(replay rows)

(:mod:`lossmooth.lm.train`): the hard switch (lam = 1), loss smoothing (a ramp over ``T`` updates) and
a constant replay mix. The switch is step 0: the pretrained model. Evaluation every
``steps_per_eval`` updates: the SFT loss on held-out target rows and the perplexity on held-out replay
text (forgetting); after training, a pairwise judge compares each run's responses on held-out
target prompts with those of the reference run (hard switch, the first seed, at the same learning
rate), both presentation orders.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from lossmooth.errors import ConfigError
from lossmooth.settings import common
from lossmooth.settings.common import _float, _int

SWEEPABLE = ("T", "lam0", "value", "lr")
MODEL_FORMATS = ("gguf", "hf")
TEMPLATES = ("chatml", "tulu")
TARGETS = ("sharegpt", "chitchat", "hh", "tulu_v1")
REPLAYS = ("debian", "dolma", "text_files")
LOSS_ON = ("assistant", "all")
JUDGE_KINDS = ("serve", "openai", "none")
REFERENCE_METHOD = "hard_switch"


@dataclass(frozen=True)
class Spec:
    num_seeds: int
    seed: int
    methods: dict
    sweep: dict
    model: dict          # name, format, path, hub_id, revision, allow_hub, template, dtype, remat
    target: dict         # name, path, allow_hub, loss_on, max_conversations
    replay: dict         # name, paths, max_documents
    budget: dict         # seq_len, micro_batch, accum, updates, warmup, lr, ... (validated numbers)
    judge: dict
    heldout_fraction: float
    cross_document_attention: bool
    split_salt: str
    gap_window: int
    raw: dict            # the resolved config (what a reference run from another directory must share)

    @property
    def n_chunks(self) -> int:
        return self.budget["updates"] // (self.budget["steps_per_eval"] * self.budget["evals_per_chunk"])


def _choice(section: dict, key: str, allowed: tuple, field: str):
    value = section.get(key)
    if value not in allowed:
        raise ConfigError(f"{field}: unknown value {value!r}; choose one of {', '.join(allowed)}")
    return value


def _optional_int(section: dict, key: str, field: str):
    return None if section.get(key) is None else _int(section, key, 1, field)


def parse(cfg: dict) -> Spec:
    """Validate the composed config (no data read, nothing loaded); one line per problem."""
    for group in ("lm_model", "lm_target", "lm_replay", "lm_budget", "judge"):
        if not isinstance(cfg.get(group), dict):
            raise ConfigError(f"{group}: missing; the lm setting needs the {group} group (e.g. {group}=...)")
    m, t, r, b, j = (cfg[g] for g in ("lm_model", "lm_target", "lm_replay", "lm_budget", "judge"))
    s = cfg["setting"]
    model = {"name": str(m.get("name")), "format": _choice(m, "format", MODEL_FORMATS, "lm_model.format"),
             "path": m.get("path"), "hub_id": m.get("hub_id"), "revision": m.get("revision"),
             "allow_hub": m.get("allow_hub", False), "template": _choice(m, "template", TEMPLATES, "lm_model.template"),
             "dtype": _choice(m, "dtype", ("float32", "bfloat16"), "lm_model.dtype"), "remat": m.get("remat", False)}
    for key in ("allow_hub", "remat"):
        if not isinstance(model[key], bool):
            raise ConfigError(f"lm_model.{key}: must be true or false, got {model[key]!r}")
    if model["format"] == "hf" and not model["path"] and not (model["allow_hub"] and model["hub_id"]):
        raise ConfigError("lm_model.path: a Hugging Face checkpoint folder is needed (config.json, *.safetensors, "
                          "tokenizer.json); set lm_model.path=<folder> (or lm_model.allow_hub=true to fetch "
                          "lm_model.hub_id at lm_model.revision)")
    target = {"name": _choice(t, "name", TARGETS, "lm_target.name"), "path": t.get("path"),
              "allow_hub": t.get("allow_hub", False), "loss_on": _choice(t, "loss_on", LOSS_ON, "lm_target.loss_on"),
              "max_conversations": _optional_int(t, "max_conversations", "lm_target.max_conversations")}
    if not isinstance(target["allow_hub"], bool):
        raise ConfigError(f"lm_target.allow_hub: must be true or false, got {target['allow_hub']!r}")
    replay = {"name": _choice(r, "name", REPLAYS, "lm_replay.name"), "paths": r.get("paths"),
              "max_documents": _optional_int(r, "max_documents", "lm_replay.max_documents")}
    if replay["name"] != "debian" and not replay["paths"]:
        raise ConfigError(f"lm_replay.paths: the {replay['name']} replay needs files; set lm_replay.paths=<file or "
                          "folder> (or lm_replay=debian for the installed Debian text)")
    f = lambda k: f"lm_budget.{k}"  # noqa: E731
    budget = {k: _int(b, k, 1, f(k)) for k in ("seq_len", "micro_batch", "accum", "updates", "steps_per_eval",
                                                "evals_per_chunk", "eval_rows", "eval_micro_batch")}
    budget["warmup"] = _int(b, "warmup", 0, f("warmup"))
    budget["lr"] = _float(b, "lr", 0.0, None, f("lr"), lo_open=True)
    budget["final_lr_fraction"] = _float(b, "final_lr_fraction", 0.0, 1.0, f("final_lr_fraction"))
    budget["weight_decay"] = _float(b, "weight_decay", 0.0, None, f("weight_decay"))
    budget["max_grad_norm"] = _float(b, "max_grad_norm", 0.0, None, f("max_grad_norm"))
    if budget["seq_len"] < 8:
        raise ConfigError(f"lm_budget.seq_len: {budget['seq_len']} is too short; use at least 8 tokens")
    per_chunk = budget["steps_per_eval"] * budget["evals_per_chunk"]
    if budget["updates"] % per_chunk:
        raise ConfigError(f"lm_budget.updates: {budget['updates']} is not a multiple of lm_budget.steps_per_eval x "
                          f"lm_budget.evals_per_chunk = {per_chunk}; make it one")
    if budget["eval_rows"] % budget["eval_micro_batch"]:
        raise ConfigError(f"lm_budget.eval_rows: {budget['eval_rows']} is not a multiple of "
                          f"lm_budget.eval_micro_batch={budget['eval_micro_batch']}; make it one")
    if budget["warmup"] >= budget["updates"]:
        raise ConfigError(f"lm_budget.warmup: {budget['warmup']} updates leave none of the "
                          f"{budget['updates']} for training; lower it")
    judge = _parse_judge(j)
    methods = common.parse_methods(cfg.get("method"))
    sweep = common.parse_sweep(cfg, SWEEPABLE)
    for v in sweep.get("lr", []):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise ConfigError(f"sweep.lr: bad value {v!r}; learning rates are positive numbers")
    if judge["enabled"] and not judge["reference_dir"] and REFERENCE_METHOD not in methods:
        raise ConfigError(f"method: the judge compares every run with the {REFERENCE_METHOD} reference; add "
                          f"{REFERENCE_METHOD} to method=[...] or turn the judge off with judge=none")
    if not isinstance(s.get("cross_document_attention", False), bool):
        raise ConfigError("setting.cross_document_attention: must be true or false")
    return Spec(num_seeds=_int(cfg, "num_seeds", 1), seed=_int(cfg, "seed", 0), methods=methods, sweep=sweep,
                model=model, target=target, replay=replay, budget=budget, judge=judge,
                heldout_fraction=_float(s, "heldout_fraction", 0.0, 0.5, "setting.heldout_fraction", lo_open=True),
                cross_document_attention=s.get("cross_document_attention", False),
                split_salt=str(s.get("split_salt", "lossmooth-heldout")),
                gap_window=_int(s, "gap_window", 1, "setting.gap_window"), raw=cfg)


def _parse_judge(j: dict) -> dict:
    kind = _choice(j, "kind", JUDGE_KINDS, "judge.kind")
    enabled = j.get("enabled", kind != "none")
    if not isinstance(enabled, bool):
        raise ConfigError(f"judge.enabled: must be true or false, got {enabled!r}")
    if kind == "none" or not enabled:
        return {"enabled": False, "kind": "none"}
    f = lambda k: f"judge.{k}"  # noqa: E731
    out = {"enabled": True, "kind": kind, "base_url": j.get("base_url"), "model": str(j.get("model") or ""),
           "api_key_env": str(j.get("api_key_env") or ""),
           **{k: _int(j, k, 1, f(k)) for k in ("prompts", "max_new_tokens", "prompt_tokens", "max_tokens",
                                                "max_response_chars")},
           "max_retries": _int(j, "max_retries", 1, f("max_retries")),
           "temperature": _float(j, "temperature", 0.0, 2.0, f("temperature")),
           "timeout_s": _float(j, "timeout_s", 0.0, None, f("timeout_s"), lo_open=True),
           "backoff_s": _float(j, "backoff_s", 0.0, None, f("backoff_s"))}
    guided = j.get("guided_choice", False)
    if not isinstance(guided, bool):
        raise ConfigError(f"judge.guided_choice: must be true or false, got {guided!r}")
    out["guided_choice"] = guided
    ref = j.get("reference_dir")
    if ref is not None and (not isinstance(ref, str) or not os.path.isdir(ref)):
        raise ConfigError(f"judge.reference_dir: {ref!r} is not a folder; point it at results/lm/<run id> of a "
                          "finished run, or null to use this run's own hard switch")
    out["reference_dir"] = ref
    for key in ("system_prompt", "user_template"):
        if j.get(key) is not None:
            out[key] = str(j[key])
    if kind == "openai" and not out["base_url"]:
        raise ConfigError("judge.base_url: the openai judge needs an endpoint, e.g. judge.base_url=http://127.0.0.1:8000/v1")
    if kind == "openai" and not out["model"]:
        raise ConfigError("judge.model: name the judge model the endpoint serves, e.g. judge.model=meta-llama/Meta-Llama-3-70B-Instruct")
    return out


def expand_runs(spec: Spec) -> list[dict]:
    """Every (method, swept numbers, seed) run; ``lr`` is per run (the paper's grid is a sweep axis)."""
    return common.expand_runs(spec.methods, spec.sweep, spec.num_seeds, spec.seed, lr=spec.budget["lr"])
