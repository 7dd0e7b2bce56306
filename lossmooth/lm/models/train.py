"""The pieces of fine-tuning a causal LM: the update's static shape, AdamW with warmup and cosine
decay, the token NLL of packed rows and the mean NLL of held-out rows (the smoothed update itself is
the LM setting's objective: :mod:`lossmooth.settings.lm.objective`).

The optimizer is AdamW (decoupled weight decay), ``theta <- theta - eta_t (adam(g) + wd * theta)``,
with ``eta_t = lr * warmup_cosine(t)``: linear warmup from 0 over ``warmup`` updates, then cosine
decay to ``final_lr_fraction * lr`` at the last update. ``lr`` is per run (a swept number), so runs
with different learning rates share one compiled program.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lossmooth.core.sharding import split_batch
from lossmooth.lm.models.decoder import Decoder, DecoderConfig

ROW_FIELDS = ("tokens", "loss_mask", "segment_ids", "positions")


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """The static shape of an update (frozen: part of the compiled program)."""

    micro_batch: int          # packed rows per micro-batch (target; the replay batch has as many)
    accum: int                # micro-batches per update
    updates: int              # total updates (the cosine decay ends here)
    warmup: int = 0           # linear warmup updates
    final_lr_fraction: float = 0.1
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    max_grad_norm: float = 1.0  # 0 turns clipping off
    eval_micro_batch: int = 4


def lr_factor(spec: TrainSpec, t) -> jax.Array:
    """``warmup_cosine(t)``: ``t / warmup`` during warmup, then cosine from 1 to ``final_lr_fraction``."""
    t = jnp.asarray(t, jnp.float32)
    warm = jnp.maximum(spec.warmup, 1)
    decay_len = jnp.maximum(spec.updates - spec.warmup, 1)
    progress = jnp.clip((t - spec.warmup) / decay_len, 0.0, 1.0)
    cosine = spec.final_lr_fraction + (1 - spec.final_lr_fraction) * 0.5 * (1 + jnp.cos(jnp.pi * progress))
    return jnp.where(t < spec.warmup, (t + 1) / warm, cosine)


def make_optimizer(spec: TrainSpec) -> optax.GradientTransformation:
    """AdamW's direction without the learning rate (the step scales it by ``-lr * warmup_cosine(t)``)."""
    parts = []
    if spec.max_grad_norm > 0:
        parts.append(optax.clip_by_global_norm(spec.max_grad_norm))
    parts += [optax.scale_by_adam(b1=spec.b1, b2=spec.b2, eps=spec.eps),
              optax.add_decayed_weights(spec.weight_decay)]
    return optax.chain(*parts)


def token_nll(params, cfg: DecoderConfig, rows: dict) -> tuple[jax.Array, jax.Array]:
    """``(sum of -log p(tokens[i+1] | tokens[<=i]) over loss positions, number of loss positions)``.

    ``rows``: ``[B, L]`` arrays; ``loss_mask[b, i]`` says whether the prediction made at position ``i``
    (of token ``i + 1``) is trained; the last position of a row predicts nothing.
    """
    logits, _ = Decoder(cfg).apply({"params": params}, rows["tokens"], positions=rows["positions"],
                                   segment_ids=rows["segment_ids"])
    targets = rows["tokens"][:, 1:]
    nll = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], targets)
    mask = rows["loss_mask"][:, :-1].astype(jnp.float32)
    return jnp.sum(nll * mask), jnp.sum(mask)


def gather_rows(table: dict, idx) -> dict:
    """The rows ``idx`` of a table, split over the devices of a sharded run (data-parallel)."""
    return split_batch({k: jnp.take(table[k], idx, axis=0) for k in ROW_FIELDS})


def init_state(params, spec: TrainSpec) -> dict:
    """A run's state at the switch: the pretrained params, fresh AdamW moments, t = 0."""
    return {"params": params, "opt": make_optimizer(spec).init(params), "t": jnp.zeros((), jnp.int32)}


def mean_nll(params, cfg: DecoderConfig, rows: dict, micro_batch: int) -> jax.Array:
    """Mean next-token NLL over the loss positions of ``rows`` (``[N, L]``, N a multiple of
    ``micro_batch``), computed ``micro_batch`` rows at a time."""
    n = rows["tokens"].shape[0]
    chunks = {f: rows[f].reshape(n // micro_batch, micro_batch, *rows[f].shape[1:]) for f in ROW_FIELDS}

    def body(acc, chunk):
        s, c = token_nll(params, cfg, split_batch(chunk))
        return (acc[0] + s, acc[1] + c), None

    (total, count), _ = jax.lax.scan(body, (jnp.zeros(()), jnp.zeros(())), chunks)
    return total / jnp.maximum(count, 1.0)


def as_rows(packed: Any) -> dict:
    """The packed arrays a step reads (``tokens``, ``loss_mask``, ``segment_ids``, ``positions``)."""
    get = packed.get if isinstance(packed, dict) else (lambda f: getattr(packed, f))
    return {f: jnp.asarray(get(f)) for f in ROW_FIELDS}
