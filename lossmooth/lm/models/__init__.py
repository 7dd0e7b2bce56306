"""The LM's model side: a Flax causal decoder (OLMo, Llama), its Hugging Face and GGUF weights, loading
(:mod:`.load`) and the LM update (:mod:`.train`)."""

from lossmooth.core import threefry  # noqa: F401  (random bits compiled over flat arrays on CPU)
from lossmooth.lm.models.decoder import Decoder, DecoderConfig, KVCache, generate, init_cache
from lossmooth.lm.models.weights import load_hf_config, load_safetensors_dir

__all__ = ["Decoder", "DecoderConfig", "KVCache", "generate", "init_cache", "load_hf_config",
           "load_safetensors_dir"]
