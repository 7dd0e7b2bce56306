"""The LM setting's objectives: next-token loss on replay text (the source: pretraining text) and the
SFT loss on chat transcripts (the target), in one compiled update with gradient accumulation.

Per update ``t`` (one optimizer step), with ``k`` micro-batches of target rows ``b_T^1..b_T^k`` and
replay rows ``b_S^1..b_S^k`` (packed rows: tokens, loss mask, segment ids, positions)::

    L_T = sum_m sum_{i in mask(b_T^m)} -log p(x_{i+1} | x_{<=i}) / N_T      N_T = loss tokens of all b_T^m
    L_S = the same on the replay rows, divided by N_S
    L   = lam_t * L_T + (1 - lam_t) * L_S                     (:func:`lossmooth.core.objective.smoothed_loss`)

Both token counts are taken from the masks of the whole update before the micro-batch loop, so the
loss of every micro-batch is already divided by the update's totals and the gradients add up:
accumulating ``k`` micro-batches gives exactly the gradient of one batch of ``k`` times the size.
The loop is a ``lax.scan`` inside the compiled step (gradient accumulation costs no host round trip).

The gradient of ``L`` is accumulated in two passes, as the sum of its two terms' gradients:
``grad(lam_t L_T)`` over the target micro-batches, then ``grad((1 - lam_t) L_S)`` over the replay ones
(:func:`lossmooth.core.objective.source_term`: exactly 0 once ``lam_t = 1``).
The second pass sits in a ``lax.cond`` whose other branch hands the target gradient through, so
once every run has ``lam = 1`` no replay row is read and nothing of the replay pass is computed.
Memory is why the passes are apart: differentiating the combinator's whole loss through its
``lax.cond`` keeps buffers for the residuals of both losses' forward passes, whether the replay branch
runs or not (SmolLM2-135M at 4 x 128 tokens: 2.30 GiB of XLA temporaries per update, 1.72 GiB this way).

The optimizer is AdamW with warmup and cosine decay (:mod:`lossmooth.lm.models.train`); ``lr`` is per run
(a swept number), so runs with different learning rates share one compiled program.

Data order: the rows update ``t`` reads are ``hp["target_order"][t]`` and ``hp["replay_order"][t]``
(``k * micro_batch`` row indices each), drawn on the host by :func:`lossmooth.lm.text.packing.batches`
from the run's data-order seed, so the order is a pure function of the seed and a resumed run reads
the same rows.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lossmooth.core.objective import source_needed, source_term
from lossmooth.lm.models.decoder import DecoderConfig
from lossmooth.lm.models.train import TrainSpec, gather_rows, lr_factor, make_optimizer, mean_nll, token_nll


def accumulate(carry, grad_fn, k: int):
    """The sum over micro-batches ``m`` of ``grad_fn(m)`` (gradients and their metrics), added to
    ``carry``. Where ``carry`` is None the sum starts with micro-batch 0's gradient (no zero-filled
    tree: one gradient-sized buffer less, and with ``k = 1`` no loop); the rest are added in a scan."""
    if carry is None:
        carry, start = grad_fn(0), 1
    else:
        start = 0
    if k > start:
        def micro(c, m):
            return jax.tree.map(jnp.add, c, grad_fn(m)), None

        carry, _ = jax.lax.scan(micro, carry, jnp.arange(start, k))
    return carry


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

        def target_grad(m):
            rows = jax.lax.dynamic_slice(tgt_idx, (m * mb,), (mb,))

            def weighted(p):  # lam_t * L_T restricted to micro-batch m
                lt = token_nll(p, cfg, gather_rows(data["target"], rows))[0] / n_target
                return lam * lt, lt

            (loss, lt), g = jax.value_and_grad(weighted, has_aux=True)(state["params"])
            return g, {"loss": loss, "loss_target": lt, "loss_source": jnp.zeros_like(lt)}

        def source_grad(m):
            rows = jax.lax.dynamic_slice(src_idx, (m * mb,), (mb,))

            def weighted(p):  # (1 - lam_t) * L_S restricted to micro-batch m (exactly 0 once lam_t = 1)
                ls = token_nll(p, cfg, gather_rows(data["replay"], rows))[0] / n_source
                return source_term(lam, ls), ls

            (loss, ls), g = jax.value_and_grad(weighted, has_aux=True)(state["params"])
            return g, {"loss": loss, "loss_target": jnp.zeros_like(ls), "loss_source": ls}

        grads, sums = accumulate(None, target_grad, k)
        # the replay gradients are added in a second pass, only while some run has lam < 1: the cond's
        # other branch hands the target gradients through, so no replay buffers exist once lam = 1
        grads, sums = jax.lax.cond(run_source, lambda c: accumulate(c, source_grad, k), lambda c: c, (grads, sums))
        direction, opt_state = opt.update(grads, state["opt"], state["params"])
        lr = hp["lr"] * lr_factor(spec, t)
        params = jax.tree.map(lambda p, d: p - lr * d, state["params"], direction)
        metrics = {**sums, "lam": lam, "lr": lr, "grad_norm": optax.global_norm(grads),
                   "target_tokens": n_target.astype(jnp.float32)}
        return {**state, "params": params, "opt": opt_state, "t": t + 1}, metrics

    return step


def make_eval(cfg: DecoderConfig, spec: TrainSpec):
    """``eval(state, hp, data) -> {"target_loss", "replay_loss", "replay_ppl"}`` on the held-out rows
    ``data["eval_target"]`` and ``data["eval_replay"]``; ``replay_ppl = exp(replay_loss)`` (forgetting)."""

    def evaluate(state, hp, data):
        del hp
        target = mean_nll(state["params"], cfg, data["eval_target"], spec.eval_micro_batch)
        replay = mean_nll(state["params"], cfg, data["eval_replay"], spec.eval_micro_batch)
        return {"target_loss": target, "replay_loss": replay, "replay_ppl": jnp.exp(replay)}

    return evaluate
