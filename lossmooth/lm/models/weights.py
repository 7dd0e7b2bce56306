"""Hugging Face safetensors checkpoints (OLMo, OLMo-2, Llama, Qwen2) into ``Decoder`` parameters, without torch.

Name map (``i`` the layer; torch ``Linear.weight`` is ``[out, in]`` and becomes our kernel ``[in, out]``)::

    model.embed_tokens.weight                       [V, D]  -> embed_tokens/embedding          (as is)
    model.layers.{i}.self_attn.{q,k,v,o}_proj.weight        -> layers_{i}/self_attn/{q,k,v,o}_proj/kernel (transposed)
    model.layers.{i}.mlp.{gate,up,down}_proj.weight         -> layers_{i}/mlp/{gate,up,down}_proj/kernel  (transposed)
    model.layers.{i}.input_layernorm.weight         [D]     -> layers_{i}/input_layernorm/scale            (RMSNorm only)
    model.layers.{i}.post_attention_layernorm.weight [D]    -> layers_{i}/post_attention_layernorm/scale   (RMSNorm only)
    model.norm.weight                               [D]     -> norm/scale                      (RMSNorm only)
    lm_head.weight                                  [V, D]  -> lm_head/kernel                  (untied only; transposed)
    model.layers.{i}.{self_attn,mlp}.{...}_proj.bias        -> .../{...}_proj/bias             (where the config has biases)
    model.layers.{i}.self_attn.{q,k}_norm.weight            -> layers_{i}/self_attn/{q,k}_norm/scale       (QK-norm, OLMo-2)
    model.layers.{i}.post_feedforward_layernorm.weight      -> layers_{i}/post_feedforward_layernorm/scale (post-norm, OLMo-2)

OLMo's LayerNorm has no parameters, so its checkpoints carry no norm tensors; OLMo-2's post-norm layers
have ``post_attention_layernorm`` and ``post_feedforward_layernorm`` but no ``input_layernorm``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from lossmooth.errors import ConfigError
from lossmooth.lm.models.decoder import DecoderConfig


def hf_parameter_map(cfg: DecoderConfig) -> dict[str, tuple[tuple[str, ...], tuple[int, ...], bool]]:
    """``{hf name: (our param path, the hf tensor shape the config wants, transpose?)}`` for ``cfg``."""
    d, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    hd = cfg.attention_head_dim
    q_width, kv_width = cfg.num_heads * hd, cfg.num_kv_heads * hd
    entries = {"model.embed_tokens.weight": (("embed_tokens", "embedding"), (v, d), False)}
    linears = {"self_attn.q_proj": (q_width, d), "self_attn.k_proj": (kv_width, d),
               "self_attn.v_proj": (kv_width, d), "self_attn.o_proj": (d, q_width),
               "mlp.gate_proj": (f, d), "mlp.up_proj": (f, d), "mlp.down_proj": (d, f)}
    biased = {"self_attn.q_proj": cfg.qkv_bias, "self_attn.k_proj": cfg.qkv_bias, "self_attn.v_proj": cfg.qkv_bias,
              "self_attn.o_proj": cfg.o_bias, "mlp.gate_proj": cfg.mlp_bias, "mlp.up_proj": cfg.mlp_bias,
              "mlp.down_proj": cfg.mlp_bias}
    norms = (("post_attention_layernorm", "post_feedforward_layernorm") if cfg.norm_placement == "post"
             else ("input_layernorm", "post_attention_layernorm"))
    for layer in range(cfg.num_layers):
        for module, torch_shape in linears.items():
            path = (f"layers_{layer}", *module.split("."))
            entries[f"model.layers.{layer}.{module}.weight"] = ((*path, "kernel"), torch_shape, True)
            if biased[module]:
                entries[f"model.layers.{layer}.{module}.bias"] = ((*path, "bias"), torch_shape[:1], False)
        if cfg.norm == "rmsnorm":
            for norm in norms:
                entries[f"model.layers.{layer}.{norm}.weight"] = ((f"layers_{layer}", norm, "scale"), (d,), False)
        if cfg.qk_norm:
            for name, width in (("q_norm", q_width), ("k_norm", kv_width)):
                entries[f"model.layers.{layer}.self_attn.{name}.weight"] = (
                    (f"layers_{layer}", "self_attn", name, "scale"), (width,), False)
    if cfg.norm == "rmsnorm":
        entries["model.norm.weight"] = (("norm", "scale"), (d,), False)
    if not cfg.tie_embeddings:
        entries["lm_head.weight"] = (("lm_head", "kernel"), (v, d), True)
    return entries


def _read_safetensors_file(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of one file as numpy; bfloat16 tensors come back as ``ml_dtypes.bfloat16``.

    ``safetensors.numpy`` has no bfloat16 (numpy lacks the dtype), so for a file holding any, each
    BF16 tensor is read from its byte range as given by the header (8-byte little-endian header
    length, then JSON ``{name: {dtype, shape, data_offsets}}``, offsets relative to the data start).
    """
    with open(path, "rb") as handle:
        header_len = struct.unpack("<Q", handle.read(8))[0]
        header = json.loads(handle.read(header_len))
    header.pop("__metadata__", None)
    if not any(entry["dtype"] == "BF16" for entry in header.values()):
        return load_file(path)
    tensors = {}
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    data_start = 8 + header_len
    with safe_open(path, framework="np") as reader:
        for name, entry in header.items():
            if entry["dtype"] == "BF16":
                begin, end = entry["data_offsets"]
                chunk = np.array(raw[data_start + begin:data_start + end])
                tensors[name] = chunk.view("<u2").view(ml_dtypes.bfloat16).reshape(entry["shape"])
            else:
                tensors[name] = reader.get_tensor(name)
    return tensors


def read_checkpoint_dir(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a local HF checkpoint directory: the shards its ``model.safetensors.index.json``
    names, else every ``*.safetensors`` file. A tensor found in two files is an error."""
    directory = Path(path)
    if not directory.is_dir():
        raise ConfigError(f"{directory}: not a directory; pass a local Hugging Face checkpoint folder")
    index = directory / "model.safetensors.index.json"
    if index.exists():
        shard_names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [directory / name for name in shard_names]
        absent = [str(f.name) for f in files if not f.exists()]
        if absent:
            raise ConfigError(f"{directory}: shards named in {index.name} are missing: {', '.join(absent)}")
    else:
        files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"{directory}: no *.safetensors file; save the model with safe_serialization=True")
    tensors: dict[str, np.ndarray] = {}
    duplicated = []
    for file in files:
        for name, array in _read_safetensors_file(file).items():
            if name in tensors:
                duplicated.append(f"{name} (again in {file.name})")
            tensors[name] = array
    if duplicated:
        raise ConfigError(f"{directory}: tensors stored more than once: {', '.join(duplicated)}")
    return tensors


def params_from_state_dict(tensors: dict[str, np.ndarray], cfg: DecoderConfig, source: str = "checkpoint") -> dict:
    """Map HF tensors to the ``Decoder`` param tree (float32), checking names and shapes against ``cfg``.

    Every tensor the config wants must be present with its exact shape and every tensor present must be
    used; otherwise one ConfigError lists every shape mismatch, every missing and every unused name.
    A tied config accepts a stored ``lm_head.weight`` only when it equals the embedding.
    """
    wanted = hf_parameter_map(cfg)
    shape_errors, missing = [], []
    params: dict = {}
    for name, (our_path, shape, transpose) in wanted.items():
        if name not in tensors:
            missing.append(name)
            continue
        array = tensors[name]
        if tuple(array.shape) != shape:
            shape_errors.append(f"{name}: shape {tuple(array.shape)} but the config wants {shape}")
            continue
        value = np.asarray(array, dtype=np.float32)
        node = params
        for key in our_path[:-1]:
            node = node.setdefault(key, {})
        node[our_path[-1]] = np.ascontiguousarray(value.T) if transpose else value
    unused = sorted(set(tensors) - set(wanted))
    if cfg.tie_embeddings and "lm_head.weight" in unused and "model.embed_tokens.weight" in tensors:
        head, embedding = tensors["lm_head.weight"], tensors["model.embed_tokens.weight"]
        if head.shape == embedding.shape and np.array_equal(head, embedding):
            unused.remove("lm_head.weight")
    if shape_errors or missing or unused:
        parts = list(shape_errors)
        if missing:
            parts.append("missing: " + ", ".join(missing))
        if unused:
            parts.append("unused: " + ", ".join(unused))
        raise ConfigError(f"{source} does not match the config: " + "; ".join(parts))
    return params


def load_safetensors_dir(path: str | Path, cfg: DecoderConfig) -> dict:
    """The ``Decoder`` params (``{"embed_tokens": ..., "layers_0": ..., ...}``, float32 numpy) of a local
    HF safetensors checkpoint directory; pass them as ``{"params": params}`` to ``Decoder.apply``."""
    return params_from_state_dict(read_checkpoint_dir(path), cfg, source=str(path))


def load_hf_config(path: str | Path, **overrides) -> DecoderConfig:
    """``DecoderConfig.from_hf_config`` of ``<path>/config.json``; ``overrides`` go to it (dtype, remat, max_len)."""
    config_file = Path(path) / "config.json"
    if not config_file.exists():
        raise ConfigError(f"{config_file}: not found; a Hugging Face checkpoint folder has a config.json")
    return DecoderConfig.from_hf_config(json.loads(config_file.read_text()), **overrides)


def state_dict_from_params(params: dict, cfg: DecoderConfig) -> dict[str, np.ndarray]:
    """The inverse of :func:`params_from_state_dict`: Hugging Face tensor names to float32 numpy arrays
    (kernels transposed back to torch's ``[out, in]``), contiguous, for ``safetensors``."""
    out = {}
    for name, (our_path, shape, transpose) in hf_parameter_map(cfg).items():
        node = params
        for key in our_path:
            node = node[key]
        value = np.asarray(node, dtype=np.float32)
        value = value.T if transpose else value
        if tuple(value.shape) != shape:
            raise ValueError(f"{name}: parameter shape {value.shape} but the config wants {shape}")
        out[name] = np.ascontiguousarray(value)
    return out


def save_hf_checkpoint(path: str | Path, params: dict, cfg: DecoderConfig, hf_config: dict) -> None:
    """Write ``config.json`` (``hf_config``) and ``model.safetensors`` (float32) into the folder ``path``:
    the layout :func:`load_safetensors_dir` and transformers' ``from_pretrained`` read. The bytes are a
    function of the values alone (sorted keys, no timestamps)."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
    save_file(state_dict_from_params(params, cfg), str(directory / "model.safetensors"), metadata={"format": "pt"})
