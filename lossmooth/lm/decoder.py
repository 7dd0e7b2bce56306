"""A Flax (linen) causal decoder covering OLMo (OLMo-1B-hf) and the Llama family (SmolLM2) by config.

One block, pre-norm, as in Hugging Face's ``OlmoForCausalLM`` / ``LlamaForCausalLM``::

    h = x + o_proj(attention(rope(q_proj(n1(x))), rope(k_proj(n1(x))), v_proj(n1(x))))
    y = h + down_proj(silu(gate_proj(n2(h))) * up_proj(n2(h)))

``n`` is a non-parametric LayerNorm, ``(x - mean) / sqrt(var + 1e-5)`` (OLMo), or RMSNorm with a learnt
scale, ``w * x / sqrt(mean(x^2) + eps)`` (Llama); both are computed in float32. After the last block
comes the final norm and the LM head ``logits = n_f(y) @ W_out`` with ``W_out = E^T`` when the
embeddings are tied.

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

    def __post_init__(self):
        problems = []
        if self.norm not in _NORMS:
            problems.append(f"norm={self.norm!r} is not one of {_NORMS}")
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
        """Read a Hugging Face ``config.json`` dict of ``model_type`` ``olmo`` or ``llama``.

        Features this decoder does not implement (biases, RoPE scaling, another activation) raise
        ConfigError instead of being silently ignored. ``rope_theta`` is read from the top level
        (transformers 4) or from ``rope_parameters`` (transformers 5).
        """
        model_type = hf.get("model_type")
        if model_type not in ("olmo", "llama"):
            raise ConfigError(f"config.json: model_type={model_type!r} is not supported; use 'olmo' or 'llama'")
        problems = []
        if hf.get("hidden_act", "silu") != "silu":
            problems.append(f"hidden_act={hf['hidden_act']!r} (only 'silu' is implemented)")
        for bias_key in ("attention_bias", "mlp_bias"):
            if hf.get(bias_key):
                problems.append(f"{bias_key}=true (biases are not implemented)")
        rope = hf.get("rope_parameters") or {}
        rope_type = rope.get("rope_type", "default")
        scaling = hf.get("rope_scaling")
        if rope_type != "default" or (scaling and scaling.get("rope_type", scaling.get("type")) != "default"):
            problems.append(f"rope scaling {scaling or rope} (only default RoPE is implemented)")
        if problems:
            raise ConfigError("config.json: " + "; ".join(problems))
        rope_theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
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
            rope_theta=float(rope_theta),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            clip_qkv=hf.get("clip_qkv") if is_olmo else None,
            dtype=dtype,
            remat=remat,
            max_len=max_len if max_len is not None else hf.get("max_position_embeddings", 2048),
        )


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


def rope_cos_sin(positions: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """``cos`` and ``sin`` ``[B, T, hd]`` of RoPE, laid out as Hugging Face does (no interleaving).

    ``inv_freq_i = theta^(-2i/hd)`` for ``i < hd/2``; the angle of position ``p`` is ``p * inv_freq``,
    repeated twice along the last axis (``cat(freqs, freqs)``), all in float32.
    """
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
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
    """Non-parametric LayerNorm or RMSNorm (scale ``[D]``), computed in float32, returned in ``x.dtype``."""

    kind: str
    eps: float

    @nn.compact
    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        if self.kind == "layernorm_nonparam":
            centred = x32 - x32.mean(-1, keepdims=True)
            return (centred * jax.lax.rsqrt((centred ** 2).mean(-1, keepdims=True) + self.eps)).astype(x.dtype)
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        normed = (x32 * jax.lax.rsqrt((x32 ** 2).mean(-1, keepdims=True) + self.eps)).astype(x.dtype)
        # HF multiplies the weight after casting back to the input dtype; do the same for bf16 parity
        return scale.astype(x.dtype) * normed


def _dense(features: int, name: str, dtype) -> nn.Dense:
    return nn.Dense(features, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                    kernel_init=nn.initializers.normal(0.02), name=name)


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
        q = _dense(heads * hd, "q_proj", dtype)(x)
        k = _dense(kv_heads * hd, "k_proj", dtype)(x)
        v = _dense(kv_heads * hd, "v_proj", dtype)(x)
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
        return _dense(cfg.hidden_size, "o_proj", dtype)(out), new_layer_cache


class MLP(nn.Module):
    """SwiGLU: ``down_proj(silu(gate_proj(x)) * up_proj(x))``, ``[B, T, D] -> [B, T, F] -> [B, T, D]``."""

    cfg: DecoderConfig

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        gate = _dense(cfg.intermediate_size, "gate_proj", cfg.compute_dtype)(x)
        up = _dense(cfg.intermediate_size, "up_proj", cfg.compute_dtype)(x)
        return _dense(cfg.hidden_size, "down_proj", cfg.compute_dtype)(nn.silu(gate) * up)


class Block(nn.Module):
    """One pre-norm decoder layer: ``h = x + attn(n1(x))``, ``y = h + mlp(n2(h))``."""

    cfg: DecoderConfig

    @nn.compact
    def __call__(self, x, cos, sin, layer_cache, segment_mask):
        cfg = self.cfg
        attended, new_layer_cache = Attention(cfg, name="self_attn")(
            Norm(cfg.norm, cfg.norm_eps, name="input_layernorm")(x), cos, sin, layer_cache, segment_mask)
        x = x + attended
        x = x + MLP(cfg, name="mlp")(Norm(cfg.norm, cfg.norm_eps, name="post_attention_layernorm")(x))
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
        cos, sin = rope_cos_sin(positions, cfg.attention_head_dim, cfg.rope_theta)
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
        x = Norm(cfg.norm, cfg.norm_eps, name="norm")(x)
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
