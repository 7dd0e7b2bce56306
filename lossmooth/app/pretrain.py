"""``lossmooth lm pretrain``: our own small causal LM, pretrained here on public-domain text, saved at
several pretraining budgets as Hugging Face folders the LM setting loads (``lm_model=own``).

1. **Corpus**: the documents of ``corpus.sources`` (the Debian texts: KJV chapters, WordNet glosses,
   fortunes) and ``corpus.text_files``, split by content hash (:mod:`lossmooth.lm.text.pretraining`:
   :func:`lossmooth.lm.text.corpora.split_heldout` with ``corpus.split_salt``) into the training
   documents and ``corpus.heldout_fraction`` held-out documents that pretraining never reads. The LM
   setting's exact replay (``lm_replay=pretraining``) makes the same split from the manifest saved
   with every checkpoint: it replays the training documents and measures forgetting on the held-out
   ones.
2. **Tokenizer**: byte-level BPE trained on the training documents with ``tokenizers``
   (:func:`lossmooth.lm.text.tokenizer.train_bpe`, ``tokenizer.vocab_size`` ids, ChatML's markers included).
3. **Model**: the Llama architecture of :class:`lossmooth.lm.models.decoder.Decoder` (RMSNorm, RoPE, SwiGLU,
   tied embeddings), Flax's default initialization from ``seed``.
4. **Training**: the next-token loss ``L(theta) = sum_i -log p(x_{i+1} | x_{<=i}) / N`` over the loss
   positions of ``train.batch`` packed rows of ``train.seq_len`` tokens (:func:`lossmooth.lm.text.packing.pack`,
   one document per segment), AdamW with linear warmup and cosine decay to ``final_lr_fraction * lr``
   over all ``train.steps`` (:mod:`lossmooth.lm.models.train`). Step ``t`` reads the rows
   :func:`lossmooth.lm.text.packing.batches` gives for ``(seed, t)``. Steps run in compiled chunks of
   ``train.eval_every`` (:func:`lossmooth.core.engine.make_chunk`), each ending with the mean loss on
   ``train.eval_rows`` held-out rows.
5. **Checkpoints**: at each fraction of ``checkpoints`` (of ``train.steps``), the folder
   ``step{t:06d}-tokens{t * batch * seq_len}`` (the tokens read, OLMo's revision names) with
   ``config.json`` (``model_type: llama``), ``model.safetensors``, the tokenizer files and
   ``lossmooth_pretraining.json`` (the manifest). The whole run is resumable (the state after every
   chunk) and deterministic: the same config gives the same checkpoint bytes, resumed or not.

Everything lives under ``<root>/<name>``; ``pretrain.json`` there records the config it was made with,
and a second run with another config under the same name is refused.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lossmooth.core import engine
from lossmooth.core.config import integer, number, writable_folder
from lossmooth.errors import ConfigError
from lossmooth.lm.models import train as T
from lossmooth.lm.models.decoder import Decoder, DecoderConfig
from lossmooth.lm.models.weights import save_hf_checkpoint
from lossmooth.lm.text import chat, packing
from lossmooth.lm.text.pretraining import MANIFEST, SOURCES, split, text_sha256
from lossmooth.lm.text.tokenizer import Tokenizer, save_hf_dir, train_bpe
from lossmooth.provenance import assumed_fields

HOST_ONLY = ("stop_after",)  # how far this call goes, not what the model is


# a pretraining whose training loss leaves the finite range or exceeds this many times its starting value
# (ln V: a freshly initialized model predicts about uniformly) is stopped and marked diverged
# (diverged.json beside its checkpoints), as the runner marks a source phase
DIVERGE_FACTOR = 100.0


def parse(cfg: dict) -> dict:
    """The validated config (one ConfigError line per problem); reads no data."""
    c = cfg.get("corpus") or {}
    sources = c.get("sources") or []
    bad = [s for s in sources if s not in SOURCES]
    if bad or not isinstance(sources, list):
        raise ConfigError(f"corpus.sources: unknown source {bad[0] if bad else sources!r}; choose from {', '.join(SOURCES)}")
    files = c.get("text_files") or []
    files = [files] if isinstance(files, str) else list(files)
    if not sources and not files:
        raise ConfigError("corpus.sources: no text to pretrain on; name a source or corpus.text_files=[...]")
    for f in files:
        if not os.path.exists(os.path.expanduser(str(f))):
            raise ConfigError(f"corpus.text_files: {f} does not exist; name plain-text files or folders")
    tr, m, tok = cfg.get("train") or {}, cfg.get("model") or {}, cfg.get("tokenizer") or {}
    train = {k: integer(tr, k, 1, f"train.{k}") for k in ("seq_len", "batch", "steps", "eval_every", "eval_rows")}
    train["warmup"] = integer(tr, "warmup", 0, "train.warmup")
    train["lr"] = number(tr, "lr", 0.0, None, "train.lr", lo_open=True)
    train["final_lr_fraction"] = number(tr, "final_lr_fraction", 0.0, 1.0, "train.final_lr_fraction")
    train["weight_decay"] = number(tr, "weight_decay", 0.0, None, "train.weight_decay")
    train["max_grad_norm"] = number(tr, "max_grad_norm", 0.0, None, "train.max_grad_norm")
    model = {k: integer(m, k, 1, f"model.{k}") for k in
             ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads")}
    model["rope_theta"] = number(m, "rope_theta", 0.0, None, "model.rope_theta", lo_open=True)
    if not isinstance(m.get("tie_embeddings"), bool):
        raise ConfigError("model.tie_embeddings: must be true or false")
    model["tie_embeddings"] = m["tie_embeddings"]
    tokenizer = {"vocab_size": integer(tok, "vocab_size", 261, "tokenizer.vocab_size"),
                 "min_frequency": integer(tok, "min_frequency", 1, "tokenizer.min_frequency")}
    if train["steps"] % train["eval_every"]:
        raise ConfigError(f"train.steps: {train['steps']} is not a multiple of train.eval_every={train['eval_every']}; "
                          "make it one")
    fractions = cfg.get("checkpoints") or []
    steps = []
    for f in fractions:
        s = f * train["steps"] if isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1 else None
        if s is None or s != int(s) or int(s) % train["eval_every"]:
            raise ConfigError(f"checkpoints: {f!r} x train.steps={train['steps']} is not a whole multiple of "
                              f"train.eval_every={train['eval_every']}; use fractions in (0, 1] that give one")
        steps.append(int(s))
    if not steps:
        raise ConfigError("checkpoints: name at least one fraction of train.steps, e.g. checkpoints=[0.5,1.0]")
    if train["warmup"] >= train["steps"]:
        raise ConfigError(f"train.warmup: {train['warmup']} steps leave none of train.steps={train['steps']}; lower it")
    stop_after = cfg.get("stop_after")
    if stop_after is not None:
        stop_after = integer(cfg, "stop_after", 1, "stop_after")
    root = os.path.abspath(os.path.expanduser(str(cfg.get("root") or "~/.cache/lossmooth/lm")))
    writable_folder(root, "root")
    name = str(cfg.get("name") or "")
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"name: {name!r} is not a folder name; e.g. name=lossmooth-lm-4m")
    return {"root": root, "name": name, "seed": integer(cfg, "seed", 0),
            "corpus": {"sources": list(sources), "text_files": [os.path.abspath(os.path.expanduser(str(f))) for f in files],
                       "heldout_fraction": number(c, "heldout_fraction", 0.0, 0.5, "corpus.heldout_fraction", lo_open=True),
                       "split_salt": str(c.get("split_salt") or "lossmooth-pretrain")},
            "tokenizer": tokenizer, "model": model, "train": train, "checkpoint_steps": sorted(set(steps)),
            "stop_after": stop_after}


def model_folder(spec: dict) -> Path:
    return Path(spec["root"]) / spec["name"]


def revision(step: int, train: dict) -> str:
    """A checkpoint's folder name: ``step{t:06d}-tokens{t * batch * seq_len}`` (the tokens read)."""
    return f"step{step:06d}-tokens{step * train['batch'] * train['seq_len']}"


def hf_config(spec: dict, tokenizer: Tokenizer) -> dict:
    m, t = spec["model"], spec["train"]
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": tokenizer.vocab_size,
            "hidden_size": m["hidden_size"], "intermediate_size": m["intermediate_size"],
            "num_hidden_layers": m["num_layers"], "num_attention_heads": m["num_heads"],
            "num_key_value_heads": m["num_kv_heads"], "hidden_act": "silu", "rms_norm_eps": 1e-5,
            "rope_theta": m["rope_theta"], "max_position_embeddings": t["seq_len"],
            "tie_word_embeddings": m["tie_embeddings"], "attention_bias": False, "mlp_bias": False,
            "bos_token_id": None, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id,
            "torch_dtype": "float32", "initializer_range": 0.02}


def decoder_config(spec: dict, tokenizer: Tokenizer) -> DecoderConfig:
    return DecoderConfig.from_hf_config(hf_config(spec, tokenizer), max_len=spec["train"]["seq_len"])


def train_spec(spec: dict) -> T.TrainSpec:
    t = spec["train"]
    return T.TrainSpec(micro_batch=t["batch"], accum=1, updates=t["steps"], warmup=t["warmup"],
                       final_lr_fraction=t["final_lr_fraction"], weight_decay=t["weight_decay"],
                       max_grad_norm=t["max_grad_norm"], eval_micro_batch=min(t["eval_rows"], t["batch"]))


def make_step(cfg: DecoderConfig, tspec: T.TrainSpec, lr: float):
    """``step(state, hp, data)``: one AdamW update on the rows ``hp["order"][t]`` of ``data["train"]``,
    ``theta <- theta - lr * warmup_cosine(t) * adamw(grad L)``."""
    opt = T.make_optimizer(tspec)

    def step(state, hp, data):
        t = state["t"]
        rows = T.gather_rows(data["train"], jax.lax.dynamic_index_in_dim(hp["order"], t, keepdims=False))

        def loss(p):
            total, count = T.token_nll(p, cfg, rows)
            return total / jnp.maximum(count, 1.0)

        value, grads = jax.value_and_grad(loss)(state["params"])
        direction, opt_state = opt.update(grads, state["opt"], state["params"])
        rate = lr * T.lr_factor(tspec, t)
        params = jax.tree.map(lambda p, d: p - rate * d, state["params"], direction)
        return ({"params": params, "opt": opt_state, "t": t + 1},
                {"train_loss": value, "lr": rate, "grad_norm": optax.global_norm(grads)})

    return step


def make_eval(cfg: DecoderConfig, tspec: T.TrainSpec):
    def evaluate(state, hp, data):
        del hp
        return {"heldout_loss": T.mean_nll(state["params"], cfg, data["heldout"], tspec.eval_micro_batch)}

    return evaluate


def _same_config(folder: Path, record: dict) -> None:
    path = folder / "pretrain.json"
    if not path.exists():
        return
    old = json.loads(path.read_text())["config"]
    if old != record:
        diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
        raise ConfigError(f"name: {folder} holds a pretraining with other settings ({', '.join(diff)}); choose "
                          "another name=... or remove that folder")


def _tokenizer(spec: dict, folder: Path, train_docs: list[str]) -> Tokenizer:
    """The trained tokenizer, from the folder when an earlier call saved it (training it is deterministic)."""
    path = folder / "tokenizer"
    if (path / "tokenizer.json").is_file():
        return Tokenizer.from_hf_dir(path)
    tokenizer = train_bpe(train_docs, spec["tokenizer"]["vocab_size"], spec["tokenizer"]["min_frequency"])
    tmp = folder / ".tokenizer.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_hf_dir(tokenizer, tmp, spec["train"]["seq_len"])
    os.replace(tmp, path)
    return Tokenizer.from_hf_dir(path)


def _write_checkpoint(folder: Path, spec: dict, step: int, params, cfg: DecoderConfig, tokenizer: Tokenizer,
                      info: dict) -> str:
    name = revision(step, spec["train"])
    tmp = folder / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_hf_checkpoint(tmp, params, cfg, hf_config(spec, tokenizer))
    for file in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(folder / "tokenizer" / file, tmp / file)
    t = spec["train"]
    manifest = {"model": spec["name"], "revision": name, "step": step, "steps": t["steps"],
                "tokens": step * t["batch"] * t["seq_len"], "seq_len": t["seq_len"], "seed": spec["seed"],
                "corpus": spec["corpus"], "corpus_info": info}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    final = folder / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return name


def _restore(folder: Path, like) -> tuple[object, int]:
    marker = folder / "state.json"
    if not marker.is_file():
        return like, 0
    step = json.loads(marker.read_text())["step"]
    return engine.restore_state(str(folder / "state"), like), int(step)


def _save(folder: Path, state, step: int) -> None:
    tmp = folder / "state.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    engine.save_state(str(tmp), state)
    shutil.rmtree(folder / "state", ignore_errors=True)
    os.replace(tmp, folder / "state")
    (folder / "state.json").write_text(json.dumps({"step": step}) + "\n")


def _curve(folder: Path, upto: int) -> list[dict]:
    """The loss curve's lines up to step ``upto`` (a resumed run rewrites the rest)."""
    path = folder / "curve.jsonl"
    if not path.exists():
        return []
    return [row for row in map(json.loads, path.read_text().splitlines()) if row["step"] <= upto]


def run(cfg: dict) -> Path:
    """Pretrain (or resume) the model of ``cfg``; returns its folder. See the module docstring."""
    spec = parse(cfg)
    folder = model_folder(spec)
    record = {k: v for k, v in spec.items() if k not in HOST_ONLY + ("root",)}
    _same_config(folder, record)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    t = spec["train"]
    tokenizer, train_rows, held_rows, info = _corpus(spec, folder)
    (folder / "pretrain.json").write_text(json.dumps({"config": record, "corpus_info": info,
                                                      "assumed": assumed_fields({}, cfg, primary="pretrain.yaml")},
                                                     indent=2, sort_keys=True) + "\n")
    cfg_model = decoder_config(spec, tokenizer)
    tspec = train_spec(spec)
    heldout = {f: getattr(held_rows, f)[:t["eval_rows"]] for f in T.ROW_FIELDS}
    data = {"train": T.as_rows(train_rows), "heldout": T.as_rows(heldout)}
    hp = engine.stack_runs([{"order": packing.batches(train_rows, t["batch"], seed=spec["seed"],
                                                      num_batches=t["steps"])}])
    example = {f: jnp.asarray(heldout[f][:1]) for f in ("tokens", "positions", "segment_ids")}
    params = Decoder(cfg_model).init(jax.random.PRNGKey(spec["seed"]), example["tokens"],
                                     positions=example["positions"], segment_ids=example["segment_ids"])["params"]
    state = engine.stack_runs([T.init_state(params, tspec)])
    state, start = _restore(folder, state)
    chunk = engine.make_chunk(make_step(cfg_model, tspec, t["lr"]), make_eval(cfg_model, tspec),
                              t["eval_every"], 1, donate=True)
    curve = _curve(folder, start)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    stop = t["steps"] if spec["stop_after"] is None else min(t["steps"], start + spec["stop_after"])
    print(f"lm pretrain: {folder} | {n_params / 1e6:.2f}M params, {tokenizer.vocab_size} ids | "
          f"{train_rows.num_loss_tokens / 1e6:.2f}M training tokens ({info['documents']['train']} documents), "
          f"{t['steps'] * t['batch'] * t['seq_len'] / 1e6:.2f}M to read | step {start} of {t['steps']}", flush=True)
    wall_before = curve[-1]["wall_s"] if curve else 0.0
    step, wall = _train(spec, folder, state, start, stop, lambda st: chunk(st, hp, data), curve, wall_before,
                        (cfg_model, tokenizer, info))
    if step == t["steps"]:
        if start < step:  # this call trained the last chunk (a call on a finished model changes nothing)
            plot_curve(curve, folder / "curve.png", spec)
            done = {"finished": True, "wall_s": wall, "params": n_params,
                    "host": platform.processor() or platform.machine(), "devices": [str(d) for d in jax.devices()],
                    "setup_s": round(time.time() - t0 - (wall - wall_before), 1)}  # this call's time outside training
            (folder / "finished.json").write_text(json.dumps(done, indent=2) + "\n")
        print(f"lm pretrain: done; checkpoints {', '.join(revision(s, t) for s in spec['checkpoint_steps'])} "
              f"under {folder} (lm_model=own lm_model.root={spec['root']} lm_model.name={spec['name']})")
    else:
        print(f"lm pretrain: stopped at step {step} of {t['steps']}; run the same command again to resume")
    return folder


def _corpus(spec: dict, folder: Path):
    """The tokenizer, the packed training and held-out rows, and the corpus facts ``pretrain.json`` records."""
    t = spec["train"]
    train_docs, held_docs = split(spec["corpus"])
    if not held_docs or not train_docs:
        raise ConfigError(f"corpus.heldout_fraction: {spec['corpus']['heldout_fraction']} leaves {len(train_docs)} "
                          f"training and {len(held_docs)} held-out documents; both must be non-empty")
    tokenizer = _tokenizer(spec, folder, train_docs)
    pack = dict(seed=0, pad_id=tokenizer.pad_id)
    train_rows = packing.pack([chat.encode_text(d, tokenizer) for d in train_docs], t["seq_len"], **pack)
    held_rows = packing.pack([chat.encode_text(d, tokenizer) for d in held_docs], t["seq_len"], **pack)
    if held_rows.num_rows < t["eval_rows"] or train_rows.num_rows < t["batch"]:
        raise ConfigError(f"train.eval_rows: the corpus fills {train_rows.num_rows} training and {held_rows.num_rows} "
                          f"held-out rows of {t['seq_len']} tokens; lower train.batch / train.eval_rows or add text")
    info = {"documents": {"train": len(train_docs), "heldout": len(held_docs)},
            "sha256": {"train": text_sha256(train_docs), "heldout": text_sha256(held_docs)},
            "rows": {"train": train_rows.num_rows, "heldout": held_rows.num_rows},
            "loss_tokens": {"train": train_rows.num_loss_tokens, "heldout": held_rows.num_loss_tokens},
            "vocab_size": tokenizer.vocab_size}
    return tokenizer, train_rows, held_rows, info


def _train(spec: dict, folder: Path, state, step: int, stop: int, chunk, curve: list, wall: float, model) -> tuple:
    """Train chunk by chunk from ``step`` to ``stop``: after each, the curve's row, a checkpoint at the
    checkpoint steps, the state saved for resuming; a diverged loss is marked and ends the run. Returns
    (the step reached, the training wall time)."""
    t = spec["train"]
    cfg_model, tokenizer, info = model
    while step < stop:
        tick = time.time()
        state, metrics = chunk(state)
        metrics = {k: float(np.asarray(v)[0, -1]) for k, v in metrics.items()}
        step += t["eval_every"]
        wall += time.time() - tick
        first = float(np.log(tokenizer.vocab_size))  # its starting value: a fresh model's loss is about ln V
        if not np.isfinite(metrics["train_loss"]) or metrics["train_loss"] > DIVERGE_FACTOR * first:
            (folder / "diverged.json").write_text(json.dumps(
                {"step": step, "train_loss": str(metrics["train_loss"]), "starting_loss": first,
                 "diverge_factor": DIVERGE_FACTOR}, indent=2) + "\n")
            raise ConfigError(f"train.lr: pretraining diverged by step {step} (loss {metrics['train_loss']:.4g}, "
                              f"over {DIVERGE_FACTOR:g}x its starting value ln V = {first:.4g}, or not finite; marked in "
                              f"{folder / 'diverged.json'}); lower train.lr")
        row = {"step": step, "tokens": step * t["batch"] * t["seq_len"], **{k: round(v, 6) for k, v in metrics.items()},
               "wall_s": round(wall, 1)}
        curve.append(row)
        if step in spec["checkpoint_steps"]:
            name = _write_checkpoint(folder, spec, step, jax.tree.map(lambda x: np.asarray(x[0]), state["params"]),
                                     cfg_model, tokenizer, info)
            print(f"  checkpoint {folder / name}", flush=True)
        (folder / "curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curve))
        _save(folder, state, step)
        print(f"  step {step:6d}  train loss {metrics['train_loss']:.3f}  held-out loss {metrics['heldout_loss']:.3f}"
              f"  lr {metrics['lr']:.2e}  ({wall:.0f} s)", flush=True)
    return step, wall


def plot_curve(curve: list[dict], out: Path, spec: dict) -> None:
    """The loss curve (training and held-out loss against tokens read), the checkpoints marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = spec["train"]
    tokens = np.asarray([r["tokens"] for r in curve]) / 1e6
    fig, ax = plt.subplots(figsize=(5.0, 3.2), dpi=100)
    ax.plot(tokens, [r["train_loss"] for r in curve], label="training loss (mean of each chunk)", lw=1)
    ax.plot(tokens, [r["heldout_loss"] for r in curve], label="held-out loss", lw=1.5)
    for s in spec["checkpoint_steps"]:
        ax.axvline(s * t["batch"] * t["seq_len"] / 1e6, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("tokens read (M)")
    ax.set_ylabel("next-token loss (nats)")
    ax.set_title(f"{spec['name']}: pretraining (checkpoints dotted)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
