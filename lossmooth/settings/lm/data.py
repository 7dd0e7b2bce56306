"""The LM setting's data: the packed target and replay rows, the held-out evaluation rows and the
judge's prompts (validated config and a tokenizer in, arrays out; the model: :mod:`lossmooth.lm.models.load`).

Subsets and held-out parts are chosen by content hashes (:func:`lossmooth.lm.text.corpora.content_unit`),
never by a seed: every run and every seed sees the same training pool and the same held-out text;
the data-order seed only changes the order in which rows are drawn (:func:`lossmooth.lm.text.packing.batches`).
"""
from __future__ import annotations

from dataclasses import dataclass

from lossmooth.errors import ConfigError
from lossmooth.lm.models.decoder import DecoderConfig
from lossmooth.lm.models.train import as_rows
from lossmooth.lm.text import chat, corpora, packing, pretraining

TARGET_SOURCE = {"sharegpt": "sharegpt", "chitchat": "chitchat", "hh": "hh", "tulu_v1": "tulu"}
DEBIAN_REPLAY = ("kjv", "wordnet", "fortunes")
PAPER_TARGETS = ("hh", "tulu_v1")


@dataclass
class LMData:
    target: packing.Packed
    replay: packing.Packed
    eval_target: packing.Packed
    eval_replay: packing.Packed
    prompts: list          # held-out conversations cut before their first assistant turn
    info: dict


def _subset(items: list, limit: int | None, salt: str) -> list:
    """At most ``limit`` items, the ones with the smallest content hash (seed-independent)."""
    if limit is None or len(items) <= limit:
        return items
    keyed = sorted(range(len(items)), key=lambda i: corpora.content_unit(items[i], salt + "-subset"))
    return [items[i] for i in sorted(keyed[:limit])]


def _conversations(spec) -> list:
    t = spec.target
    name = TARGET_SOURCE[t["name"]]
    kwargs = {"path": t["path"]}
    if name in ("hh", "tulu"):
        kwargs["allow_hub"] = t["allow_hub"]
    return corpora.load_conversations(name, **kwargs)


def _documents(spec) -> list:
    r = spec.replay
    if r["name"] == "debian":
        docs = []
        for name in DEBIAN_REPLAY:
            docs += corpora.load_documents(name)
        return docs
    return corpora.load_documents("dolma" if r["name"] == "dolma" else "text", r["paths"])


def pretraining_split(checkpoint: str) -> tuple[list, list]:
    """Exact replay: ``(the documents the checkpoint was pretrained on, those pretraining held out)``,
    made again from its manifest, and checked against the manifest's hashes of both."""
    manifest = pretraining.read_manifest(checkpoint)
    train, held = pretraining.split(manifest["corpus"])
    want = manifest["corpus_info"]["sha256"]
    if pretraining.text_sha256(train) != want["train"] or pretraining.text_sha256(held) != want["heldout"]:
        raise ConfigError(f"lm_replay: the pretraining text found here differs from what {checkpoint} was trained on "
                          "(another version of its sources); install the same texts or run `lossmooth lm pretrain` again")
    return train, held


def pretrain_sha(checkpoint: str) -> str:
    """The SHA-256 of the documents a checkpoint of ``lossmooth lm pretrain`` was trained on (the
    exact replay's data identity: Debian's texts may differ between machines)."""
    return pretraining.read_manifest(checkpoint)["corpus_info"]["sha256"]["train"]


def _prompt(conv: list) -> list | None:
    """The conversation up to (not including) its first assistant turn, if that has a user turn."""
    first = next((k for k, m in enumerate(conv) if m["role"] == "assistant"), None)
    if first is None or not any(m["role"] == "user" for m in conv[:first]):
        return None
    return conv[:first]


def _eval_rows(packed: packing.Packed, n: int, what: str, field: str) -> packing.Packed:
    if packed.num_rows < n:
        raise ConfigError(f"lm_budget.eval_rows: the held-out {what} fills only {packed.num_rows} rows of "
                          f"{packed.seq_len} tokens, fewer than {n}; lower lm_budget.eval_rows or raise {field}")
    return packing.Packed(**{**packed.__dict__, **{k: getattr(packed, k)[:n] for k in
                                                  ("tokens", "loss_mask", "segment_ids", "positions")}})


def _judge_prompts(spec, held_convs: list, tokenizer, template: str, salt: str) -> list:
    """The judge's prompts: held-out conversations' first user turns in a salted order, those whose
    encoding fits ``judge.prompt_tokens``, ``judge.prompts`` of them (none where the judge is off)."""
    prompts = []
    if not spec.judge["enabled"]:
        return prompts
    limit = spec.judge["prompt_tokens"]
    ranked = sorted(held_convs, key=lambda c: corpora.content_unit(c, salt + "-prompts"))
    for conv in ranked:
        p = _prompt(conv)
        if p is not None and len(chat.encode_prompt(p, tokenizer, template)) <= limit:
            prompts.append(p)
        if len(prompts) == spec.judge["prompts"]:
            break
    if len(prompts) < spec.judge["prompts"]:
        raise ConfigError(f"judge.prompts: only {len(prompts)} held-out prompts fit judge.prompt_tokens={limit}; "
                          "lower judge.prompts, raise judge.prompt_tokens or setting.heldout_fraction")
    return prompts


def build(spec, tokenizer, cfg: DecoderConfig) -> LMData:
    """Load, split, subset, encode and pack the target and replay text (see the module docstring)."""
    b, salt = spec.budget, spec.split_salt
    template = spec.model["template"]
    convs = _conversations(spec)
    train_convs, held_convs = corpora.split_heldout(convs, spec.heldout_fraction, salt=salt)
    train_convs = _subset(train_convs, spec.target["max_conversations"], salt)
    if not train_convs or not held_convs:
        raise ConfigError(f"setting.heldout_fraction: {spec.heldout_fraction} leaves "
                          f"{len(train_convs)} training and {len(held_convs)} held-out conversations of "
                          f"{spec.target['name']}; both must be non-empty")
    # the replay text is read before any encoding: a missing or empty replay source fails in seconds
    if spec.replay["name"] == "pretraining":
        train_texts, held_texts = pretraining_split(spec.model["path"])
    else:
        train_texts, held_texts = corpora.split_heldout(_documents(spec), spec.heldout_fraction, salt=salt)
    train_texts = _subset(train_texts, spec.replay["max_documents"], salt)
    if not train_texts or not held_texts:
        raise ConfigError(f"setting.heldout_fraction: {spec.heldout_fraction} leaves {len(train_texts)} training "
                          f"and {len(held_texts)} held-out {spec.replay['name']} replay documents; both must be non-empty")
    # the held-out replay text is cut to what the evaluation reads (a long corpus would only cost time)
    held_texts = _subset(held_texts, 4 * b["eval_rows"], salt)
    docs, skipped = chat.encode_conversations(train_convs, tokenizer, template, spec.target["loss_on"])
    held_docs, _ = chat.encode_conversations(held_convs, tokenizer, template, spec.target["loss_on"])
    if not docs:
        raise ConfigError(f"lm_target: every {spec.target['name']} conversation was dropped while encoding "
                          "(contents holding control tokens); use another dataset")
    pack = dict(seed=0, cross_document_attention=spec.cross_document_attention, pad_id=_pad(tokenizer))
    target = packing.pack(docs, b["seq_len"], **pack)
    eval_target = _eval_rows(packing.pack(held_docs, b["seq_len"], **pack), b["eval_rows"], "target text",
                             "setting.heldout_fraction")

    replay = packing.pack([chat.encode_text(d, tokenizer) for d in train_texts], b["seq_len"], **pack)
    eval_replay = _eval_rows(packing.pack([chat.encode_text(d, tokenizer) for d in held_texts], b["seq_len"], **pack),
                             b["eval_rows"], "replay text", "setting.heldout_fraction")
    for what, packed in (("target", target), ("replay", replay)):
        if packed.num_rows < spec.budget["micro_batch"] * spec.budget["accum"]:
            raise ConfigError(f"lm_budget.micro_batch: one update reads {b['micro_batch'] * b['accum']} rows but the "
                              f"{what} text fills only {packed.num_rows}; lower micro_batch/accum or use more data")

    prompts = _judge_prompts(spec, held_convs, tokenizer, template, salt)
    info = {"target": spec.target["name"], "replay": spec.replay["name"],
            "conversations": {"train": len(train_convs), "heldout": len(held_convs), "skipped": skipped},
            "replay_documents": {"train": len(train_texts), "heldout": len(held_texts)},
            "rows": {"target": target.num_rows, "replay": replay.num_rows},
            "loss_tokens": {"target": target.num_loss_tokens, "replay": replay.num_loss_tokens},
            "fill": {"target": round(target.fill_ratio, 3), "replay": round(replay.fill_ratio, 3)},
            **({"dataset_sha256": pretrain_sha(spec.model["path"])} if spec.replay["name"] == "pretraining" else {}),
            "paper_data": spec.target["name"] in PAPER_TARGETS and spec.model["format"] == "hf"
            and spec.replay["name"] == "dolma"}
    return LMData(target, replay, eval_target, eval_replay, prompts, info)


def _pad(tokenizer) -> int:
    for candidate in (tokenizer.pad_id, tokenizer.eos_id):
        if candidate is not None:
            return int(candidate)
    return 0


def orders(data: LMData, spec, seed: int) -> dict:
    """The row indices of every update of a run with data-order seed ``seed``: ``[updates, rows]``."""
    b = spec.budget
    rows = b["micro_batch"] * b["accum"]
    return {"target_order": packing.batches(data.target, rows, seed=seed, num_batches=b["adapt_steps"]),
            "replay_order": packing.batches(data.replay, rows, seed=seed, num_batches=b["adapt_steps"])}


def as_arrays(data: LMData) -> dict:
    """The shared device arrays a compiled update reads."""
    return {"target": as_rows(data.target), "replay": as_rows(data.replay),
            "eval_target": as_rows(data.eval_target), "eval_replay": as_rows(data.eval_replay)}


def instruction_text(prompt: list) -> str:
    """A prompt conversation as the judge reads it ("User: ...", "Assistant: ..." lines)."""
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)
