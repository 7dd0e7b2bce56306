"""The language-model pieces the LM fine-tuning setting and ``lossmooth lm pretrain`` / ``lossmooth
serve`` share, in three rooms:

- :mod:`lossmooth.lm.models`: the Flax causal decoder (OLMo, OLMo-2, Llama, Qwen2), its Hugging Face
  safetensors and GGUF weights, loading a model by its config, and the LM update (next-token loss,
  AdamW with warmup and cosine decay);
- :mod:`lossmooth.lm.text`: tokenizers, corpora, chat templates, packing into fixed-length rows, and
  the pretraining corpus with its manifest;
- :mod:`lossmooth.lm.judge`: the pairwise LLM-judge client, a responder that answers chats with a
  decoder, and the OpenAI-compatible server in front of it.

The model and text code never import the judge (an import-linter contract in ``pyproject.toml``).
"""
