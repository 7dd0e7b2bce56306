"""A Flax (linen) causal decoder covering OLMo (OLMo-1B-hf), OLMo-2, Llama (SmolLM2, Llama-3.x) and
Qwen2/2.5 by config.

A pre-norm block, as in Hugging Face's ``OlmoForCausalLM`` / ``LlamaForCausalLM`` / ``Qwen2ForCausalLM``::

    h = x + o_proj(attention(rope(q_proj(n1(x))), rope(k_proj(n1(x))), v_proj(n1(x))))
    y = h + down_proj(silu(gate_proj(n2(h))) * up_proj(n2(h)))

and OLMo-2's post-norm block (``Olmo2ForCausalLM``), whose norms sit on the branch outputs and whose
queries and keys are RMS-normalized over their whole projection width (QK-norm) before RoPE::

    h = x + n_attn(o_proj(attention(rope(n_q(q_proj(x))), rope(n_k(k_proj(x))), v_proj(x))))
    y = h + n_mlp(down_proj(silu(gate_proj(h)) * up_proj(h)))

``n`` is a non-parametric LayerNorm, ``(x - mean) / sqrt(var + 1e-5)`` (OLMo), or RMSNorm with a learnt
scale, ``w * x / sqrt(mean(x^2) + eps)`` (Llama, Qwen2, OLMo-2); both are computed in float32. After
the last block comes the final norm and the LM head ``logits = n_f(y) @ W_out`` with ``W_out = E^T``
when the embeddings are tied. Projections may carry biases: q/k/v (Qwen2), o (Llama's and OLMo-2's
``attention_bias``), the MLP's (Llama's ``mlp_bias``).

RoPE's inverse frequencies ``inv_freq_i = theta^(-2i/hd)`` are used as they are (``default``), divided
by ``factor`` (``linear``), or rescaled by wavelength ``w_i = 2 pi / inv_freq_i`` (``llama3``, Llama
3.1's long-context rule, with ``L`` the original context length)::

    w_i < L / high_freq_factor:  inv_freq_i                              (high frequencies kept)
    w_i > L / low_freq_factor:   inv_freq_i / factor                     (low frequencies stretched)
    otherwise:                   (1 - s) inv_freq_i / factor + s inv_freq_i,
                                 s = (L / w_i - low_freq_factor) / (high_freq_factor - low_freq_factor)

Tensor layouts: tokens ``[B, T]`` int32; activations ``[B, T, D]``; queries ``[B, T, H, hd]``; keys and
values ``[B, T, KV, hd]``; logits ``[B, T, V]`` float32. Linear kernels are stored ``[in, out]``
(the transpose of torch's ``Linear.weight``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lossmooth.errors import ConfigError

_NORMS = ("layernorm_nonparam", "rmsnorm")
_NORM_PLACEMENTS = ("pre", "post")
_ROPE_TYPES = ("default", "linear", "llama3")
# transformers' model types this decoder reads, and what each one's config.json leaves implicit
_MODEL_TYPES = ("olmo", "olmo2", "llama", "qwen2")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# OLMo's LayerNorm hard-codes this eps in transformers (OlmoLayerNorm); config.json does not carry it
_OLMO_LAYERNORM_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """The architecture of one causal decoder; frozen so it can be a static argument of ``jax.jit``.

    ``head_dim`` defaults to ``hidden_size // num_heads``; ``num_heads`` must be a multiple of
    ``num_kv_heads`` (query head ``h`` reads kv head ``h // (num_heads // num_kv_heads)``).
    ``clip_qkv`` clamps q, k and v to ``[-clip_qkv, clip_qkv]`` right after their projections (OLMo).
    ``dtype`` is the compute dtype; parameters stay float32. ``remat`` recomputes each block's
    activations in the backward pass instead of storing them. ``max_len`` is the longest sequence
    (prompt plus generated tokens) the model is used with.
    ``norm_placement`` ``pre`` (OLMo, Llama, Qwen2) or ``post`` (OLMo-2, see the module docstring);
    ``qk_norm`` RMS-normalizes q and k over their projection width; ``qkv_bias``, ``o_bias`` and
    ``mlp_bias`` give those projections a bias. ``rope_type`` (``default``, ``linear``, ``llama3``) and
    the ``rope_*`` numbers rescale RoPE's frequencies as in the module docstring.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int | None = None
    norm: str = "rmsnorm"
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_embeddings: bool = False
    clip_qkv: float | None = None
    dtype: str = "float32"
    remat: bool = False
    max_len: int = 2048
    norm_placement: str = "pre"
    qk_norm: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    rope_type: str = "default"
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_len: int = 8192

    def __post_init__(self):
        problems = []
        if self.norm not in _NORMS:
            problems.append(f"norm={self.norm!r} is not one of {_NORMS}")
        if self.norm_placement not in _NORM_PLACEMENTS:
            problems.append(f"norm_placement={self.norm_placement!r} is not one of {_NORM_PLACEMENTS}")
        if (self.norm_placement == "post" or self.qk_norm) and self.norm != "rmsnorm":
            problems.append("norm_placement='post' and qk_norm need norm='rmsnorm'")
        if self.rope_type not in _ROPE_TYPES:
            problems.append(f"rope_type={self.rope_type!r} is not one of {_ROPE_TYPES}")
        if self.rope_type != "default" and not self.rope_factor > 0:
            problems.append(f"rope_factor={self.rope_factor} must be > 0")
        if self.rope_type == "llama3" and not self.rope_high_freq_factor > self.rope_low_freq_factor > 0:
            problems.append(f"rope_high_freq_factor={self.rope_high_freq_factor} must exceed "
                            f"rope_low_freq_factor={self.rope_low_freq_factor} > 0")
        if self.dtype not in _DTYPES:
            problems.append(f"dtype={self.dtype!r} is not one of {tuple(_DTYPES)}")
        if self.num_kv_heads <= 0 or self.num_heads % self.num_kv_heads:
            problems.append(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")
        if self.head_dim is None and self.hidden_size % self.num_heads:
            problems.append(f"hidden_size={self.hidden_size} is not a multiple of num_heads={self.num_heads}; "
                            "set head_dim")
        if self.attention_head_dim % 2:
            problems.append(f"head_dim={self.attention_head_dim} must be even for RoPE")
        if problems:
            raise ConfigError("DecoderConfig: " + "; ".join(problems))

    @property
    def attention_head_dim(self) -> int:
        """``hd``: the width of one attention head."""
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_heads

    @property
    def compute_dtype(self):
        return _DTYPES[self.dtype]

    @classmethod
    def from_hf_config(cls, hf: dict, *, dtype: str = "float32", remat: bool = False,
                       max_len: int | None = None) -> "DecoderConfig":
        """Read a Hugging Face ``config.json`` dict of ``model_type`` ``olmo``, ``olmo2``, ``llama`` or ``qwen2``.

        Features this decoder does not implement (another activation, sliding-window attention, a RoPE
        scaling other than linear or llama3, partial rotary embeddings) raise ConfigError naming the
        field instead of being silently ignored. RoPE's numbers are read from ``rope_parameters``
        (transformers 5) or ``rope_scaling`` plus a top-level ``rope_theta`` (transformers 4), and the
        scaling's kind from ``rope_type`` or the legacy ``type`` key, as transformers reads them.
        """
        model_type = hf.get("model_type")
        if model_type not in _MODEL_TYPES:
            raise ConfigError(f"config.json: model_type={model_type!r} is not supported; use one of "
                              f"{', '.join(repr(t) for t in _MODEL_TYPES)}")
        problems = []
        if hf.get("hidden_act", "silu") != "silu":
            problems.append(f"hidden_act={hf['hidden_act']!r} (only 'silu' is implemented)")
        if hf.get("use_sliding_window") or "sliding_attention" in (hf.get("layer_types") or ()):
            problems.append("use_sliding_window/layer_types: sliding-window attention is not implemented")
        rope, rope_problems = _hf_rope(hf)
        problems += rope_problems
        attention_bias = bool(hf.get("attention_bias", False))
        if model_type == "qwen2" and hf.get("attention_bias") is False:
            problems.append("attention_bias=false (Qwen2's q/k/v projections always have biases)")
        if model_type in ("olmo", "qwen2") and hf.get("mlp_bias"):
            problems.append(f"mlp_bias=true ({model_type} has no MLP biases)")
        if problems:
            raise ConfigError("config.json: " + "; ".join(problems))
        is_olmo = model_type == "olmo"
        return cls(
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=hf["num_attention_heads"],
            num_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
            head_dim=hf.get("head_dim"),
            norm="layernorm_nonparam" if is_olmo else "rmsnorm",
            norm_eps=_OLMO_LAYERNORM_EPS if is_olmo else hf.get("rms_norm_eps", 1e-6),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            clip_qkv=hf.get("clip_qkv") if is_olmo else None,
            dtype=dtype,
            remat=remat,
            max_len=max_len if max_len is not None else hf.get("max_position_embeddings", 2048),
            norm_placement="post" if model_type == "olmo2" else "pre",
            qk_norm=model_type == "olmo2",
            # Qwen2: q/k/v biases and none on o; Llama and OLMo-2: attention_bias covers all four
            qkv_bias=model_type == "qwen2" or (model_type in ("llama", "olmo2") and attention_bias),
            o_bias=model_type in ("llama", "olmo2") and attention_bias,
            mlp_bias=model_type == "llama" and bool(hf.get("mlp_bias", False)),
            **rope,
        )


def _hf_rope(hf: dict) -> tuple[dict, list[str]]:
    """The ``rope_*`` fields of :class:`DecoderConfig` from a config.json, and the problems found.

    transformers merges ``rope_scaling`` (transformers 4) into ``rope_parameters`` and reads the kind
    from ``rope_type``, else the legacy ``type``; a config using ``type`` must not load as plain RoPE.
    """
    rope = {**(hf.get("rope_scaling") or {}), **(hf.get("rope_parameters") or {})}
    kind = rope.get("rope_type", rope.get("type", "default"))
    problems = []
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    if float(rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))) != 1.0:
        problems.append("partial_rotary_factor: only a rotary embedding over the whole head is implemented")
    fields = {"rope_theta": float(theta), "rope_type": kind}
    if kind not in _ROPE_TYPES:
        problems.append(f"rope_parameters.rope_type={kind!r}: only {', '.join(_ROPE_TYPES)} RoPE are implemented")
        return fields, problems
    if kind in ("linear", "llama3"):
        if "factor" not in rope:
            problems.append(f"rope_parameters.factor: {kind} RoPE needs a factor")
            return fields, problems
        fields["rope_factor"] = float(rope["factor"])
    if kind == "llama3":
        missing = [k for k in ("low_freq_factor", "high_freq_factor") if k not in rope]
        if missing:
            problems.append(f"rope_parameters.{missing[0]}: llama3 RoPE needs it")
            return fields, problems
        fields["rope_low_freq_factor"] = float(rope["low_freq_factor"])
        fields["rope_high_freq_factor"] = float(rope["high_freq_factor"])
        # transformers falls back to max_position_embeddings when the original length is absent
        fields["rope_original_max_len"] = int(rope.get("original_max_position_embeddings",
                                                       hf.get("original_max_position_embeddings",
                                                              hf.get("max_position_embeddings", 2048))))
    return fields, problems


class KVCache(NamedTuple):
    """Keys and values of every layer, preallocated, plus how many slots are filled.

    ``keys[l]`` and ``values[l]``: ``[B, S, KV, hd]`` with ``S`` the capacity; slots ``>= length`` are
    garbage and masked out. ``length``: int32 scalar, the number of tokens already written (the same
    for every row of the batch). ``segments``: ``[B, S]`` int32, the segment id written with each slot
    (0 marks left padding of a shorter prompt; a query only sees keys of its own segment).
    """

    keys: tuple
    values: tuple
    length: jax.Array
    segments: jax.Array


def init_cache(cfg: DecoderConfig, batch_size: int, capacity: int | None = None) -> KVCache:
    """An empty cache for ``capacity`` tokens (default ``cfg.max_len``), in the compute dtype."""
    capacity = cfg.max_len if capacity is None else capacity
    shape = (batch_size, capacity, cfg.num_kv_heads, cfg.attention_head_dim)
    zeros = tuple(jnp.zeros(shape, cfg.compute_dtype) for _ in range(cfg.num_layers))
    return KVCache(keys=zeros, values=tuple(jnp.zeros(shape, cfg.compute_dtype) for _ in range(cfg.num_layers)),
                   length=jnp.zeros((), jnp.int32), segments=jnp.zeros((batch_size, capacity), jnp.int32))


def rope_inv_freq(cfg: DecoderConfig) -> jax.Array:
    """RoPE's ``[hd / 2]`` inverse frequencies, rescaled by ``cfg.rope_type`` (module docstring), float32."""
    hd = cfg.attention_head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (jnp.arange(0, hd, 2, dtype=jnp.float32) / hd))
    if cfg.rope_type == "linear":
        return inv_freq / cfg.rope_factor
    if cfg.rope_type == "llama3":
        length, factor = cfg.rope_original_max_len, cfg.rope_factor
        low, high = cfg.rope_low_freq_factor, cfg.rope_high_freq_factor
        wavelen = 2 * jnp.pi / inv_freq
        scaled = jnp.where(wavelen > length / low, inv_freq / factor, inv_freq)
        smooth = (length / wavelen - low) / (high - low)
        medium = (wavelen >= length / high) & (wavelen <= length / low)
        return jnp.where(medium, (1 - smooth) * scaled / factor + smooth * scaled, scaled)
    return inv_freq


def rope_cos_sin(positions: jax.Array, inv_freq: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``cos`` and ``sin`` ``[B, T, hd]`` of RoPE, laid out as Hugging Face does (no interleaving).

    The angle of position ``p`` is ``p * inv_freq`` (from :func:`rope_inv_freq`), repeated twice along
    the last axis (``cat(freqs, freqs)``), all in float32.
    """
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """``x * cos + rotate_half(x) * sin`` with ``rotate_half([a, b]) = [-b, a]`` (halves of the head dim).

    ``x``: ``[B, T, heads, hd]``; ``cos``/``sin``: ``[B, T, hd]``, cast to ``x``'s dtype as HF does.
    """
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    cos = cos[:, :, None, :].astype(x.dtype)
    sin = sin[:, :, None, :].astype(x.dtype)
    return x * cos + rotated * sin


class Norm(nn.Module):
    """Non-parametric LayerNorm or RMSNorm (scale ``[D]``), computed in float32, returned in ``x.dtype``.

    ``scale_in_float32``: multiply the scale before casting back (OLMo-2's RMSNorm) instead of after
    (Llama's); the two differ only below float32.
    """

    kind: str
    eps: float
    scale_in_float32: bool = False

    @nn.compact
    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        if self.kind == "layernorm_nonparam":
            centred = x32 - x32.mean(-1, keepdims=True)
            return (centred * jax.lax.rsqrt((centred ** 2).mean(-1, keepdims=True) + self.eps)).astype(x.dtype)
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        if self.scale_in_float32:
            return (scale * x32 * jax.lax.rsqrt((x32 ** 2).mean(-1, keepdims=True) + self.eps)).astype(x.dtype)
        normed = (x32 * jax.lax.rsqrt((x32 ** 2).mean(-1, keepdims=True) + self.eps)).astype(x.dtype)
        # HF multiplies the weight after casting back to the input dtype; do the same for bf16 parity
        return scale.astype(x.dtype) * normed


def _dense(features: int, name: str, dtype, bias: bool = False) -> nn.Dense:
    return nn.Dense(features, use_bias=bias, dtype=dtype, param_dtype=jnp.float32,
                    kernel_init=nn.initializers.normal(0.02), name=name)


def _norm(cfg: DecoderConfig, name: str) -> Norm:
    return Norm(cfg.norm, cfg.norm_eps, scale_in_float32=cfg.norm_placement == "post", name=name)


class Attention(nn.Module):
    """Causal multi-head / grouped-query attention with RoPE and an optional KV cache.

    ``softmax(q k^T / sqrt(hd) + mask) v`` per head, the softmax in float32. Grouped-query attention
    reshapes the ``H`` query heads into ``[KV, H/KV]`` groups that share one kv head, which equals
    repeating each kv head ``H/KV`` times (HF's ``repeat_kv``) without materialising the copies.
    """

    cfg: DecoderConfig

    @nn.compact
    def __call__(self, x, cos, sin, layer_cache, segment_mask):
        cfg = self.cfg
        batch, steps, _ = x.shape
        heads, kv_heads, hd = cfg.num_heads, cfg.num_kv_heads, cfg.attention_head_dim
        dtype = cfg.compute_dtype
        q = _dense(heads * hd, "q_proj", dtype, cfg.qkv_bias)(x)
        k = _dense(kv_heads * hd, "k_proj", dtype, cfg.qkv_bias)(x)
        v = _dense(kv_heads * hd, "v_proj", dtype, cfg.qkv_bias)(x)
        if cfg.qk_norm:  # OLMo-2: over the whole projection width, before the split into heads
            q, k = _norm(cfg, "q_norm")(q), _norm(cfg, "k_norm")(k)
        if cfg.clip_qkv is not None:
            q, k, v = (jnp.clip(t, -cfg.clip_qkv, cfg.clip_qkv) for t in (q, k, v))
        q = apply_rope(q.reshape(batch, steps, heads, hd), cos, sin)
        k = apply_rope(k.reshape(batch, steps, kv_heads, hd), cos, sin)
        v = v.reshape(batch, steps, kv_heads, hd)

        if layer_cache is None:
            offset = 0
            new_layer_cache = None
        else:
            cached_k, cached_v, offset = layer_cache
            # write this call's keys/values at slots [offset, offset + T) and attend over the whole buffer
            k = jax.lax.dynamic_update_slice(cached_k, k.astype(cached_k.dtype), (0, offset, 0, 0))
            v = jax.lax.dynamic_update_slice(cached_v, v.astype(cached_v.dtype), (0, offset, 0, 0))
            new_layer_cache = (k, v)
        # causal in slot order: query t (slot offset + t) sees slots <= offset + t; unfilled slots are later
        query_slot = offset + jnp.arange(steps)
        key_slot = jnp.arange(k.shape[1])
        allowed = key_slot[None, :] <= query_slot[:, None]                       # [T, S]
        if segment_mask is not None:                                             # [B, T, S]
            allowed = allowed[None] & segment_mask
            allowed = allowed[:, None, None]                                     # [B, 1, 1, T, S]

        groups = heads // kv_heads
        q = q.reshape(batch, steps, kv_heads, groups, hd)
        scores = jnp.einsum("btkgd,bskd->bkgts", q, k.astype(q.dtype)).astype(jnp.float32) / jnp.sqrt(hd)
        scores = jnp.where(allowed, scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(dtype)
        out = jnp.einsum("bkgts,bskd->btkgd", probs, v.astype(dtype)).reshape(batch, steps, heads * hd)
        return _dense(cfg.hidden_size, "o_proj", dtype, cfg.o_bias)(out), new_layer_cache


class MLP(nn.Module):
    """SwiGLU: ``down_proj(silu(gate_proj(x)) * up_proj(x))``, ``[B, T, D] -> [B, T, F] -> [B, T, D]``."""

    cfg: DecoderConfig

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        gate = _dense(cfg.intermediate_size, "gate_proj", cfg.compute_dtype, cfg.mlp_bias)(x)
        up = _dense(cfg.intermediate_size, "up_proj", cfg.compute_dtype, cfg.mlp_bias)(x)
        return _dense(cfg.hidden_size, "down_proj", cfg.compute_dtype, cfg.mlp_bias)(nn.silu(gate) * up)


class Block(nn.Module):
    """One decoder layer: pre-norm ``h = x + attn(n1(x))``, ``y = h + mlp(n2(h))``, or post-norm
    (OLMo-2) ``h = x + n1(attn(x))``, ``y = h + n2(mlp(h))``."""

    cfg: DecoderConfig

    @nn.compact
    def __call__(self, x, cos, sin, layer_cache, segment_mask):
        cfg = self.cfg
        attention, mlp = Attention(cfg, name="self_attn"), MLP(cfg, name="mlp")
        if cfg.norm_placement == "post":
            attended, new_layer_cache = attention(x, cos, sin, layer_cache, segment_mask)
            x = x + _norm(cfg, "post_attention_layernorm")(attended)
            return x + _norm(cfg, "post_feedforward_layernorm")(mlp(x)), new_layer_cache
        attended, new_layer_cache = attention(_norm(cfg, "input_layernorm")(x), cos, sin, layer_cache, segment_mask)
        x = x + attended
        x = x + mlp(_norm(cfg, "post_attention_layernorm")(x))
        return x, new_layer_cache


class Decoder(nn.Module):
    """The causal LM: ``__call__(tokens [B, T], positions=None, cache=None, segment_ids=None) -> (logits [B, T, V], cache)``.

    ``positions`` ``[B, T]`` feed RoPE only; by default they are ``cache.length + arange(T)`` (``arange(T)``
    without a cache). With a cache the new keys/values are written at slots ``[length, length + T)``
    and the returned cache has ``length + T``; without one the returned cache is ``None``.
    ``segment_ids`` ``[B, T]`` int32 restrict attention to the query's own segment on top of causality:
    token ``t`` sees token ``s <= t`` only if ``seg[s] == seg[t]``. Packed training rows use one id per
    document (so no token attends across a document boundary); left-padded prompts use 0 for padding
    and 1 for the prompt. Without them every earlier token is visible (one segment).
    Parameters: ``embed_tokens/embedding [V, D]``, ``layers_{i}/...`` (kernels ``[in, out]``),
    ``norm/scale`` (RMSNorm only), ``lm_head/kernel [D, V]`` (untied only).
    """

    cfg: DecoderConfig

    @nn.compact
    def __call__(self, tokens, positions=None, cache: KVCache | None = None, segment_ids=None):
        cfg = self.cfg
        batch, steps = tokens.shape
        offset = 0 if cache is None else cache.length
        segment_mask = None
        if cache is not None:
            query_segments = (jnp.ones((batch, steps), jnp.int32) if segment_ids is None
                              else segment_ids.astype(jnp.int32))
            key_segments = jax.lax.dynamic_update_slice(cache.segments, query_segments, (0, offset))
            segment_mask = query_segments[:, :, None] == key_segments[:, None, :]
        elif segment_ids is not None:
            segment_mask = segment_ids[:, :, None] == segment_ids[:, None, :]
        if positions is None:
            positions = jnp.broadcast_to(offset + jnp.arange(steps, dtype=jnp.int32), (batch, steps))
        cos, sin = rope_cos_sin(positions, rope_inv_freq(cfg))
        embed = nn.Embed(cfg.vocab_size, cfg.hidden_size, dtype=cfg.compute_dtype, param_dtype=jnp.float32,
                         embedding_init=nn.initializers.normal(0.02), name="embed_tokens")
        x = embed(tokens)
        # remat keeps only each block's input for the backward pass; the parameter tree is unchanged
        block_cls = nn.remat(Block, prevent_cse=True) if cfg.remat else Block
        new_keys, new_values = [], []
        for layer in range(cfg.num_layers):
            layer_cache = None if cache is None else (cache.keys[layer], cache.values[layer], offset)
            x, new_layer_cache = block_cls(cfg, name=f"layers_{layer}")(x, cos, sin, layer_cache, segment_mask)
            if new_layer_cache is not None:
                new_keys.append(new_layer_cache[0])
                new_values.append(new_layer_cache[1])
        x = _norm(cfg, "norm")(x)
        if cfg.tie_embeddings:
            logits = embed.attend(x)
        else:
            logits = _dense(cfg.vocab_size, "lm_head", cfg.compute_dtype)(x)
        new_cache = None if cache is None else KVCache(tuple(new_keys), tuple(new_values), offset + steps,
                                                       key_segments)
        return logits.astype(jnp.float32), new_cache


def _next_token(logits: jax.Array, key: jax.Array | None, temperature: float) -> jax.Array:
    """Greedy ``argmax`` at temperature 0, else a sample from ``softmax(logits / temperature)``."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, logits / temperature, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("cfg", "max_new_tokens", "temperature"))
def _generate(params: Any, cfg: DecoderConfig, prompt_tokens: jax.Array, prompt_lengths: jax.Array,
              max_new_tokens: int, key: jax.Array, temperature: float) -> jax.Array:
    model = Decoder(cfg)
    batch, prompt_len = prompt_tokens.shape
    total = prompt_len + max_new_tokens
    # left padding: row b's prompt fills slots [P - len_b, P); its padding is segment 0 (never attended
    # by the prompt or the new tokens) and its positions start at 0 at its first real token
    pad = prompt_len - prompt_lengths[:, None]                                   # [B, 1]
    slots = jnp.arange(prompt_len, dtype=jnp.int32)[None, :]
    positions = jnp.maximum(slots - pad, 0)
    segments = (slots >= pad).astype(jnp.int32)
    # the cache holds exactly prompt + generated tokens: static shapes, no slot wasted
    cache = init_cache(cfg, batch, capacity=total)
    logits, cache = model.apply({"params": params}, prompt_tokens, positions=positions, cache=cache,
                                segment_ids=segments)
    first = _next_token(logits[:, -1], jax.random.fold_in(key, 0), temperature)
    sequence = jnp.zeros((batch, total), jnp.int32)
    sequence = jax.lax.dynamic_update_slice(sequence, prompt_tokens.astype(jnp.int32), (0, 0))
    sequence = sequence.at[:, prompt_len].set(first)
    ones = jnp.ones((batch, 1), jnp.int32)

    def step(i, carry):
        sequence, cache = carry
        current = jax.lax.dynamic_slice(sequence, (0, prompt_len + i - 1), (batch, 1))
        position = prompt_lengths[:, None] + i - 1
        step_logits, cache = model.apply({"params": params}, current, positions=position, cache=cache,
                                         segment_ids=ones)
        token = _next_token(step_logits[:, -1], jax.random.fold_in(key, i), temperature)
        sequence = jax.lax.dynamic_update_slice(sequence, token[:, None], (0, prompt_len + i))
        return sequence, cache

    sequence, _ = jax.lax.fori_loop(1, max_new_tokens, step, (sequence, cache))
    return sequence


def generate(params: Any, cfg: DecoderConfig, prompt_tokens, max_new_tokens: int,
             key: jax.Array | None = None, temperature: float = 0.0, prompt_lengths=None) -> jax.Array:
    """Continue ``prompt_tokens`` ``[B, P]`` by ``max_new_tokens`` tokens; returns ``[B, P + N]`` int32.

    One jitted program: a prefill of the prompt into a KV cache of capacity ``P + N``, then a
    ``fori_loop`` feeding one token at a time. Temperature 0 is greedy decoding; a positive temperature
    samples from ``softmax(logits / temperature)`` with ``fold_in(key, i)`` at new token ``i``.
    Prompts of different lengths are left-padded to ``P`` and passed with ``prompt_lengths`` ``[B]``:
    padding is masked out and each row's positions start at its first real token, so a padded row
    continues exactly as it would alone. Recompiles per (cfg, B, P, N, temperature): pad prompts to a
    few fixed lengths to reuse the program.
    """
    prompt_tokens = jnp.asarray(prompt_tokens, jnp.int32)
    if prompt_tokens.ndim != 2:
        raise ConfigError(f"generate: prompt_tokens must be [batch, length], got shape {prompt_tokens.shape}")
    if max_new_tokens < 1:
        raise ConfigError(f"generate: max_new_tokens={max_new_tokens} must be >= 1")
    if prompt_tokens.shape[1] + max_new_tokens > cfg.max_len:
        raise ConfigError(f"generate: prompt length {prompt_tokens.shape[1]} + max_new_tokens {max_new_tokens} "
                          f"exceeds max_len={cfg.max_len}")
    if temperature < 0:
        raise ConfigError(f"generate: temperature={temperature} must be >= 0")
    if temperature > 0 and key is None:
        raise ConfigError("generate: sampling (temperature > 0) needs a PRNG key; pass key=jax.random.key(seed)")
    if key is None:
        key = jax.random.key(0)  # unused by greedy decoding; a fixed key keeps one jitted signature
    batch, prompt_len = prompt_tokens.shape
    if prompt_lengths is None:
        prompt_lengths = jnp.full((batch,), prompt_len, jnp.int32)
    prompt_lengths = jnp.asarray(prompt_lengths, jnp.int32)
    if prompt_lengths.shape != (batch,):
        raise ConfigError(f"generate: prompt_lengths must have shape ({batch},), got {prompt_lengths.shape}")
    return _generate(params, cfg, prompt_tokens, prompt_lengths, max_new_tokens, key, float(temperature))
