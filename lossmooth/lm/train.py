"""Fine-tuning a causal LM with loss smoothing: the compiled update, its optimizer and the evaluation.

Per update ``t`` (one optimizer step), with ``k`` micro-batches of target rows ``b_T^1..b_T^k`` and
replay rows ``b_S^1..b_S^k`` (packed rows: tokens, loss mask, segment ids, positions)::

    L_T = sum_m sum_{i in mask(b_T^m)} -log p(x_{i+1} | x_{<=i}) / N_T      N_T = loss tokens of all b_T^m
    L_S = the same on the replay rows, divided by N_S
    L   = lam_t * L_T + (1 - lam_t) * L_S                     (:func:`lossmooth.core.objective.smoothed_loss`)

Both token counts are taken from the masks of the whole update before the micro-batch loop, so the
loss of every micro-batch is already divided by the update's totals and the gradients add up:
accumulating ``k`` micro-batches gives exactly the gradient of one batch of ``k`` times the size.
The loop is a ``lax.scan`` inside the compiled step (gradient accumulation costs no host round trip).
Once every run has ``lam = 1`` the replay branch is skipped (``lax.cond`` in the combinator).

The optimizer is AdamW (decoupled weight decay), ``theta <- theta - eta_t (adam(g) + wd * theta)``,
with ``eta_t = lr * warmup_cosine(t)``: linear warmup from 0 over ``warmup`` updates, then cosine
decay to ``final_lr_fraction * lr`` at the last update. ``lr`` is per run (a swept number), so runs
with different learning rates share one compiled program.

Data order: the rows update ``t`` reads are ``hp["target_order"][t]`` and ``hp["replay_order"][t]``
(``k * micro_batch`` row indices each), drawn on the host by :func:`lossmooth.lm.packing.batches`
from the run's data-order seed, so the order is a pure function of the seed and a resumed run reads
the same rows.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lossmooth.core.objective import smoothed_loss, source_needed
from lossmooth.lm.decoder import Decoder, DecoderConfig

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

    @property
    def rows_per_update(self) -> int:
        return self.micro_batch * self.accum


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


def _gather(table: dict, idx) -> dict:
    return {k: jnp.take(table[k], idx, axis=0) for k in ROW_FIELDS}


def init_state(params, spec: TrainSpec) -> dict:
    """A run's state at the switch: the pretrained params, fresh AdamW moments, t = 0."""
    return {"params": params, "opt": make_optimizer(spec).init(params), "t": jnp.zeros((), jnp.int32)}


def make_step(cfg: DecoderConfig, spec: TrainSpec):
    """``step(state, hp, data) -> (state, metrics)``: one update of one run (the engine vmaps it).

    ``hp``: ``{"method": Method, "lr": scalar, "target_order": [U, R], "replay_order": [U, R]}`` (the
    row indices of every update, ``R = accum * micro_batch``). ``data``: ``{"target": rows, "replay": rows, ...}``
    with every row field ``[N, L]`` (shared by every run, not part of the program).
    """
    opt = make_optimizer(spec)
    k, mb = spec.accum, spec.micro_batch

    def step(state, hp, data):
        t = state["t"]
        lam = hp["method"].schedule(t)
        run_source = source_needed(lam)
        tgt_idx = jax.lax.dynamic_index_in_dim(hp["target_order"], t, keepdims=False)
        src_idx = jax.lax.dynamic_index_in_dim(hp["replay_order"], t, keepdims=False)
        # the update's token totals first, so each micro-batch's loss is already normalised by them
        n_target = jnp.maximum(jnp.sum(jnp.take(data["target"]["loss_mask"], tgt_idx, axis=0)[:, :-1]), 1)
        n_source = jnp.maximum(jnp.sum(jnp.take(data["replay"]["loss_mask"], src_idx, axis=0)[:, :-1]), 1)

        def micro_grad(m):
            t_rows = jax.lax.dynamic_slice(tgt_idx, (m * mb,), (mb,))
            s_rows = jax.lax.dynamic_slice(src_idx, (m * mb,), (mb,))

            def target_loss(p):
                return token_nll(p, cfg, _gather(data["target"], t_rows))[0] / n_target

            def source_loss(p):  # gathers its own rows: a skipped branch reads no replay data
                return token_nll(p, cfg, _gather(data["replay"], s_rows))[0] / n_source

            (loss, info), g = jax.value_and_grad(
                lambda p: smoothed_loss(p, lam, run_source, target_loss, source_loss), has_aux=True)(state["params"])
            return g, {"loss": loss, "loss_target": info["loss_target"], "loss_source": info["loss_source"]}

        # the first micro-batch's gradient starts the sum (no zero-filled tree: one gradient-sized buffer
        # less, and with accum = 1 no loop at all); the others are added inside a scan
        grads, sums = micro_grad(0)
        if k > 1:
            def micro(carry, m):
                g, part = micro_grad(m)
                return jax.tree.map(jnp.add, carry, (g, part)), None

            (grads, sums), _ = jax.lax.scan(micro, (grads, sums), jnp.arange(1, k))
        direction, opt_state = opt.update(grads, state["opt"], state["params"])
        lr = hp["lr"] * lr_factor(spec, t)
        params = jax.tree.map(lambda p, d: p - lr * d, state["params"], direction)
        metrics = {**sums, "lam": lam, "lr": lr, "grad_norm": optax.global_norm(grads),
                   "target_tokens": n_target.astype(jnp.float32)}
        return {**state, "params": params, "opt": opt_state, "t": t + 1}, metrics

    return step


def mean_nll(params, cfg: DecoderConfig, rows: dict, micro_batch: int) -> jax.Array:
    """Mean next-token NLL over the loss positions of ``rows`` (``[N, L]``, N a multiple of
    ``micro_batch``), computed ``micro_batch`` rows at a time."""
    n = rows["tokens"].shape[0]
    chunks = {f: rows[f].reshape(n // micro_batch, micro_batch, *rows[f].shape[1:]) for f in ROW_FIELDS}

    def body(acc, chunk):
        s, c = token_nll(params, cfg, chunk)
        return (acc[0] + s, acc[1] + c), None

    (total, count), _ = jax.lax.scan(body, (jnp.zeros(()), jnp.zeros(())), chunks)
    return total / jnp.maximum(count, 1.0)


def make_eval(cfg: DecoderConfig, spec: TrainSpec):
    """``eval(state, hp, data) -> {"target_loss", "replay_loss", "replay_ppl"}`` on the held-out rows
    ``data["eval_target"]`` and ``data["eval_replay"]``; ``replay_ppl = exp(replay_loss)`` (forgetting)."""

    def evaluate(state, hp, data):
        del hp
        target = mean_nll(state["params"], cfg, data["eval_target"], spec.eval_micro_batch)
        replay = mean_nll(state["params"], cfg, data["eval_replay"], spec.eval_micro_batch)
        return {"target_loss": target, "replay_loss": replay, "replay_ppl": jnp.exp(replay)}

    return evaluate


def as_rows(packed: Any) -> dict:
    """The packed arrays a step reads (``tokens``, ``loss_mask``, ``segment_ids``, ``positions``)."""
    get = packed.get if isinstance(packed, dict) else (lambda f: getattr(packed, f))
    return {f: jnp.asarray(get(f)) for f in ROW_FIELDS}
