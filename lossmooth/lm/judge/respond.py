"""A decoder, its tokenizer and chat template as a chat model: batched replies and constrained choices.

``ChatModel.reply(conversations)`` renders each conversation's prompt with the template
(:func:`lossmooth.lm.text.chat.encode_prompt`), left-pads the batch to a length bucket (powers of two from
32 up, so a handful of compiled programs serve every prompt), decodes greedily (or samples) with the
KV cache (:func:`lossmooth.lm.models.decoder.generate`) and cuts each reply at the template's end-of-turn
ids. A prompt longer than ``max_prompt_tokens`` keeps its last tokens (the generation prompt and
the latest turns).

``ChatModel.choose(messages, choices)`` answers with the most likely of a few fixed strings:
``argmax_c sum_k log p(c_k | prompt, c_<k)`` over the choice's tokens. When every choice is one token
("A", "B", "tie" are) that is one forward pass of the prompt, reading the next-token distribution at
its last position; otherwise all choices are scored in one batched pass. It serves vLLM's
``guided_choice`` request parameter (a judge restricted to "A", "B", "tie").

``ChatModel.respond`` is the callable :class:`lossmooth.lm.judge.server.ChatServer` serves.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lossmooth.lm.models.decoder import Decoder, DecoderConfig, generate
from lossmooth.lm.text import chat

MIN_BUCKET = 32


def bucket(length: int, cap: int) -> int:
    """The padded length for ``length`` tokens: the next power of two >= MIN_BUCKET, at most ``cap``."""
    size = MIN_BUCKET
    while size < length:
        size *= 2
    return min(size, cap)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _choice_logprobs(params, cfg: DecoderConfig, tokens, scored):
    """``sum_k log p(tokens[b, k] | tokens[b, <k])`` over the positions where ``scored[b, k]``."""
    logits, _ = Decoder(cfg).apply({"params": params}, tokens)
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    picked = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    return jnp.sum(picked * scored[:, 1:], axis=-1)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _next_logprobs(params, cfg: DecoderConfig, tokens, last):
    """``log p(. | tokens[0, :last + 1])``: the next-token distribution after a right-padded prompt."""
    logits, _ = Decoder(cfg).apply({"params": params}, tokens)
    return jax.nn.log_softmax(jax.lax.dynamic_index_in_dim(logits[0], last, keepdims=False))


class ChatModel:
    """Greedy/sampled replies and constrained choices of one decoder (see the module docstring)."""

    def __init__(self, cfg: DecoderConfig, params: Any, tokenizer, template: str, *, max_prompt_tokens: int = 512,
                 batch_size: int = 8):
        self.cfg, self.params, self.tokenizer, self.template = cfg, params, tokenizer, template
        self.max_prompt_tokens, self.batch_size = max_prompt_tokens, batch_size
        self.stops = set(chat.stop_ids(tokenizer, template))
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else (tokenizer.eos_id or 0)

    def prompt_ids(self, messages: Sequence[dict]) -> np.ndarray:
        ids = chat.encode_prompt(messages, self.tokenizer, self.template)
        return ids[-self.max_prompt_tokens:]

    def _cut(self, ids: np.ndarray) -> tuple[str, int]:
        """The reply up to (not including) the first end-of-turn id, and how many tokens it used."""
        ids = [int(i) for i in ids]
        n = next((k for k, i in enumerate(ids) if i in self.stops), len(ids))
        return self.tokenizer.decode(ids[:n]), min(n + 1, len(ids))

    def reply(self, conversations: Sequence[Sequence[dict]], max_new_tokens: int, temperature: float = 0.0,
              seed: int = 0) -> list[tuple[str, int, int]]:
        """``(text, prompt tokens, completion tokens)`` for each conversation (batched, left-padded)."""
        out = []
        size = min(self.batch_size, len(conversations))  # one request alone is not padded to a batch
        for start in range(0, len(conversations), size):
            group = [self.prompt_ids(c) for c in conversations[start:start + size]]
            width = bucket(max(len(g) for g in group), self.max_prompt_tokens)
            rows = np.full((size, width), self.pad_id, np.int32)
            lengths = np.ones(size, np.int32)  # rows of a short last batch: one pad token, dropped afterwards
            for b, ids in enumerate(group):
                rows[b, width - len(ids):] = ids
                lengths[b] = len(ids)
            key = jax.random.key(seed + start)
            generated = np.asarray(generate(self.params, self.cfg, rows, max_new_tokens, key=key,
                                            temperature=temperature, prompt_lengths=lengths))
            for b, ids in enumerate(group):
                text, used = self._cut(generated[b, width:])
                out.append((text, len(ids), used))
        return out

    def choose(self, messages: Sequence[dict], choices: Sequence[str]) -> str:
        """The choice with the highest log-likelihood as the assistant's reply to ``messages``."""
        prompt = self.prompt_ids(messages)
        encoded = [np.asarray(self.tokenizer.encode(c), np.int32) for c in choices]
        if all(len(e) == 1 for e in encoded):  # one pass over the prompt scores every choice
            row = np.full((1, bucket(len(prompt), self.max_prompt_tokens)), self.pad_id, np.int32)
            row[0, :len(prompt)] = prompt  # right padding: the causal prompt never reads it
            logp = np.asarray(_next_logprobs(self.params, self.cfg, jnp.asarray(row), len(prompt) - 1))
            return choices[int(np.argmax([logp[e[0]] for e in encoded]))]
        width = bucket(len(prompt) + max(len(e) for e in encoded), self.max_prompt_tokens + 64)
        rows = np.full((len(choices), width), self.pad_id, np.int32)
        scored = np.zeros((len(choices), width), np.float32)
        for i, e in enumerate(encoded):
            seq = np.concatenate([prompt, e])[-width:]
            rows[i, :len(seq)] = seq  # right padding: causal attention never reads it for the scored tokens
            scored[i, len(seq) - len(e):len(seq)] = 1.0
        logp = np.asarray(_choice_logprobs(self.params, self.cfg, jnp.asarray(rows), jnp.asarray(scored)))
        return choices[int(np.argmax(logp))]

    def respond(self, messages: list, max_tokens: int, temperature: float, seed: int | None,
                guided_choice: list | None = None) -> tuple[str, int, int]:
        """The :class:`lossmooth.lm.judge.server.ChatServer` callable."""
        if guided_choice:
            choice = self.choose(messages, guided_choice)
            return choice, len(self.prompt_ids(messages)), len(self.tokenizer.encode(choice))
        return self.reply([messages], max_tokens, temperature, 0 if seed is None else seed)[0]
