"""The LM setting's config (``conf/setting/lm.yaml`` with the ``lm_model``, ``lm_target``,
``lm_replay``, ``lm_budget`` and ``judge`` groups), validated into a :class:`Spec`: each field's type and
bounds from the schema (``schema.py``), then the rules that involve several fields; reads no data.

Budget keys, shared by name with every setting, count *updates* (optimizer steps, each of
``lm_budget.accum`` micro-batches): ``setting.adapt_steps``, ``setting.eval_every``,
``setting.evals_per_chunk``, ``setting.smoothing_T`` and ``setting.gap_window``. There is no source
phase: the model arrives pretrained. The ``lm_budget`` group sets them with the shapes of an update.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from lossmooth.core.config import choice, integer, number, optional_integer, parse_methods, parse_sweep, validate
from lossmooth import settings
from lossmooth.errors import ConfigError
from lossmooth.settings.contract import RunSpec
from lossmooth.settings.lm.schema import LMBudget, LMSetting

SWEEPABLE = ("T", "lam0", "value", "lr")
MODEL_FORMATS = ("gguf", "hf")
TEMPLATES = ("chatml", "tulu")
TARGETS = ("sharegpt", "chitchat", "hh", "tulu_v1")
REPLAYS = ("debian", "dolma", "text_files", "pretraining")
LOSS_ON = ("assistant", "all")
JUDGE_KINDS = ("serve", "openai", "none")
REFERENCE_METHOD = "hard_switch"


@dataclass(frozen=True, kw_only=True)  # (RunSpec's fields have defaults)
class Spec(RunSpec):
    model: dict          # name, format, path, hub_id, revision, allow_hub, template, dtype, remat
    target: dict         # name, path, allow_hub, loss_on, max_conversations
    replay: dict         # name, paths, max_documents
    budget: dict         # seq_len, micro_batch, accum, adapt_steps, eval_every, warmup, lr, ... (validated numbers)
    judge: dict
    heldout_fraction: float
    cross_document_attention: bool
    split_salt: str
    raw: dict            # the resolved config (what a reference run from another directory must share)

    @property
    def n_chunks(self) -> int:
        return self.budget["adapt_steps"] // (self.budget["eval_every"] * self.budget["evals_per_chunk"])


def parse(cfg: dict) -> Spec:
    """Validate the composed config (no data read, nothing loaded); one line per problem."""
    for group in ("lm_model", "lm_target", "lm_replay", "lm_budget", "judge"):
        if not isinstance(cfg.get(group), dict):
            raise ConfigError(f"{group}: missing; the lm setting needs the {group} group (e.g. {group}=...)")
    m, t, r, b, j = (cfg[g] for g in ("lm_model", "lm_target", "lm_replay", "lm_budget", "judge"))
    s = cfg["setting"]
    model = {"name": str(m.get("name")), "format": choice(m, "format", MODEL_FORMATS, "lm_model.format"),
             "path": m.get("path") or own_checkpoint(m), "root": m.get("root"), "hub_id": m.get("hub_id"), "revision": m.get("revision"),
             "allow_hub": m.get("allow_hub", False), "template": choice(m, "template", TEMPLATES, "lm_model.template"),
             "dtype": choice(m, "dtype", ("float32", "bfloat16"), "lm_model.dtype"), "remat": m.get("remat", False)}
    for key in ("allow_hub", "remat"):
        if not isinstance(model[key], bool):
            raise ConfigError(f"lm_model.{key}: must be true or false, got {model[key]!r}")
    if model["format"] == "hf" and not model["path"] and not (model["allow_hub"] and model["hub_id"]):
        raise ConfigError("lm_model.path: a Hugging Face checkpoint folder is needed (config.json, *.safetensors, "
                          "tokenizer.json); set lm_model.path=<folder> (or lm_model.allow_hub=true to fetch "
                          "lm_model.hub_id at lm_model.revision)")
    target = {"name": choice(t, "name", TARGETS, "lm_target.name"), "path": t.get("path"),
              "allow_hub": t.get("allow_hub", False), "loss_on": choice(t, "loss_on", LOSS_ON, "lm_target.loss_on"),
              "max_conversations": optional_integer(t, "max_conversations", field="lm_target.max_conversations")}
    if not isinstance(target["allow_hub"], bool):
        raise ConfigError(f"lm_target.allow_hub: must be true or false, got {target['allow_hub']!r}")
    replay = {"name": choice(r, "name", REPLAYS, "lm_replay.name"), "paths": r.get("paths"),
              "max_documents": optional_integer(r, "max_documents", field="lm_replay.max_documents")}
    if replay["name"] == "pretraining" and model["format"] != "hf":
        raise ConfigError("lm_replay: exact replay reads the pretraining manifest of a checkpoint made by "
                          "`lossmooth lm pretrain`; use lm_model=own (or another lm_replay)")
    if replay["name"] not in ("debian", "pretraining") and not replay["paths"]:
        raise ConfigError(f"lm_replay.paths: the {replay['name']} replay needs files; set lm_replay.paths=<file or "
                          "folder> (or lm_replay=debian for the installed Debian text)")
    lb = validate(b, LMBudget, "lm_budget")  # each field's type and bounds (schema.py)
    fields = validate(s, LMSetting, "setting")
    budget = {k: lb[k] for k in ("seq_len", "micro_batch", "accum", "eval_rows", "eval_micro_batch")}
    budget.update({k: fields[k] for k in ("adapt_steps", "eval_every", "evals_per_chunk")})
    budget.update({k: lb[k] for k in ("warmup", "lr", "final_lr_fraction", "weight_decay", "max_grad_norm")})
    per_chunk = budget["eval_every"] * budget["evals_per_chunk"]
    if budget["adapt_steps"] % per_chunk:
        raise ConfigError(f"setting.adapt_steps: {budget['adapt_steps']} is not a multiple of setting.eval_every x "
                          f"setting.evals_per_chunk = {per_chunk}; make it one")
    if budget["eval_rows"] % budget["eval_micro_batch"]:
        raise ConfigError(f"lm_budget.eval_rows: {budget['eval_rows']} is not a multiple of "
                          f"lm_budget.eval_micro_batch={budget['eval_micro_batch']}; make it one")
    if budget["warmup"] >= budget["adapt_steps"]:
        raise ConfigError(f"lm_budget.warmup: {budget['warmup']} updates leave none of the "
                          f"{budget['adapt_steps']} for training; lower it")
    judge = _parse_judge(j)
    methods = parse_methods(cfg.get("method"), offers=settings.get(s["name"]))
    sweep = parse_sweep(cfg, SWEEPABLE)
    if judge["enabled"] and not judge["reference_dir"] and REFERENCE_METHOD not in methods:
        raise ConfigError(f"method: the judge compares every run with the {REFERENCE_METHOD} reference; add "
                          f"{REFERENCE_METHOD} to method=[...] or turn the judge off with judge=none")
    return Spec(num_seeds=integer(cfg, "num_seeds", 1), seed=integer(cfg, "seed", 0), methods=methods, sweep=sweep,
                lr=budget["lr"], model=model, target=target, replay=replay, budget=budget, judge=judge,
                heldout_fraction=fields["heldout_fraction"], cross_document_attention=fields["cross_document_attention"],
                split_salt=fields["split_salt"], gap_window=fields["gap_window"], raw=cfg)


def own_checkpoint(m: dict) -> str | None:
    """``<root>/<name>/<revision>``: a checkpoint of ``lossmooth lm pretrain`` (``lm_model=own``), else None."""
    if not m.get("root"):
        return None
    if not m.get("revision"):
        raise ConfigError("lm_model.revision: name the pretraining budget, e.g. lm_model.revision=step001536-tokens6291456")
    return os.path.join(os.path.expanduser(str(m["root"])), str(m["name"]), str(m["revision"]))


def _parse_judge(j: dict) -> dict:
    kind = choice(j, "kind", JUDGE_KINDS, "judge.kind")
    enabled = j.get("enabled", kind != "none")
    if not isinstance(enabled, bool):
        raise ConfigError(f"judge.enabled: must be true or false, got {enabled!r}")
    if kind == "none" or not enabled:
        return {"enabled": False, "kind": "none"}
    f = lambda k: f"judge.{k}"  # noqa: E731
    out = {"enabled": True, "kind": kind, "base_url": j.get("base_url"), "model": str(j.get("model") or ""),
           "api_key_env": str(j.get("api_key_env") or ""),
           **{k: integer(j, k, 1, f(k)) for k in ("prompts", "max_new_tokens", "prompt_tokens", "max_tokens",
                                                "max_response_chars")},
           "max_retries": integer(j, "max_retries", 1, f("max_retries")),
           "temperature": number(j, "temperature", 0.0, 2.0, f("temperature")),
           "timeout_s": number(j, "timeout_s", 0.0, None, f("timeout_s"), lo_open=True),
           "backoff_s": number(j, "backoff_s", 0.0, None, f("backoff_s"))}
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
