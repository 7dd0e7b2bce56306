"""The LM fine-tuning setting's model side: a Flax causal decoder (OLMo, Llama) and its HF weights."""

from lossmooth.lm.decoder import Decoder, DecoderConfig, KVCache, generate, init_cache
from lossmooth.lm.weights import load_hf_config, load_safetensors_dir

__all__ = ["Decoder", "DecoderConfig", "KVCache", "generate", "init_cache", "load_hf_config",
           "load_safetensors_dir"]
