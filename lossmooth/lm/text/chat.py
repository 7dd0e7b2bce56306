"""Chat templates and loss masks for conversations, and the encoding of replay documents.

A conversation (``lossmooth.lm.text.corpora``) is rendered by a template into **pieces**: role headers,
message contents, end-of-turn markers and separators. Each piece is tokenized on its own and the
ids are concatenated, so a special token (``<|im_start|>``, ``<|im_end|>``, eos) is always exactly
one id (looked up with ``token_to_id``), a message's content never merges with the text around it,
and the loss mask follows piece boundaries exactly. A prompt for generation is built from the same
pieces, so what a model sees at serving time is token for token what it saw in training.

Templates (``TEMPLATES``)::

    chatml   <|im_start|>{role}\\n{content}<|im_end|>\\n ...       generation prompt <|im_start|>assistant\\n
    smollm2  chatml, plus SmolLM2-Instruct's default system message when the conversation has none
    tulu     <|system|>\\n{c}\\n <|user|>\\n{c}\\n <|assistant|>\\n{c}<eos>\\n ...   prompt <|assistant|>\\n
    plain    \\n\\nHuman: {c}\\n\\nAssistant: {c} ... <eos>           prompt \\n\\nAssistant: (HH transcript style)

``chatml``/``smollm2`` need ``<|im_start|>`` and ``<|im_end|>`` as single tokens (a tokenizer without
them is a ``ConfigError``). In ``tulu`` the role markers are single tokens when the tokenizer has them
and plain text otherwise, as in Tulu/open-instruct training of models whose vocabularies lack them
(OLMo); every template needs an eos id.

Loss mask (``encode_conversation``): with ``loss_on="assistant"`` exactly the tokens of each
assistant message's content plus its end-of-turn marker (``<|im_end|>`` for chatml, eos for tulu;
for plain, the final eos when the conversation ends with the assistant) are True; role headers,
separators after the marker, and system/user turns are False. With ``loss_on="all"`` every token is
True. The mask marks tokens that are *targets*; ``lossmooth.lm.text.packing`` shifts it onto the
positions that predict them.

Tokenizer protocol (``Tokenizer``): ``encode(text) -> list[int]`` adds no special tokens;
``token_to_id(token) -> int | None``; ``eos_id: int | None``; ``bos_id: int | None``.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence, Union, runtime_checkable

import numpy as np

from lossmooth.errors import ConfigError

LOSS_ON = ("assistant", "all")


@runtime_checkable
class Tokenizer(Protocol):
    """What this module needs of a tokenizer (another module provides the real one)."""

    eos_id: int | None
    bos_id: int | None

    def encode(self, text: str) -> list[int]: ...

    def token_to_id(self, token: str) -> int | None: ...


# a piece is (kind, value): "text" is tokenized; "special" must be one token; "marker" is one token
# when the vocabulary has it and text otherwise; "eos" is the tokenizer's eos id
Piece = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class Template:
    """A chat format as pieces around each message's content.

    A turn of role ``r`` renders as ``header[r] + [content] + end[r] + sep[r]``; ``end[r]`` is the
    end-of-turn marker (trained on assistant turns), ``sep[r]`` the separator after it (never
    trained). ``final`` follows the last turn of a full conversation (trained if that turn is the
    assistant's). ``generation`` is appended by ``encode_prompt``. ``default_system`` is inserted as
    the first message when a conversation has no system message.
    """

    name: str
    header: dict[str, tuple[Piece, ...]]
    end: dict[str, tuple[Piece, ...]]
    sep: dict[str, tuple[Piece, ...]]
    generation: tuple[Piece, ...]
    final: tuple[Piece, ...] = ()
    default_system: str | None = None


_ROLES = ("system", "user", "assistant")
_CHATML = Template(
    name="chatml",
    header={r: (("special", "<|im_start|>"), ("text", f"{r}\n")) for r in _ROLES},
    end={r: (("special", "<|im_end|>"),) for r in _ROLES},
    sep={r: (("text", "\n"),) for r in _ROLES},
    generation=(("special", "<|im_start|>"), ("text", "assistant\n")),
)
TEMPLATES: dict[str, Template] = {
    "chatml": _CHATML,
    # the chat_template shipped in SmolLM2-135M-Instruct's tokenizer inserts this system message
    "smollm2": dataclasses.replace(
        _CHATML, name="smollm2",
        default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
    # open-instruct's Tulu format: the eos closes each assistant turn, "\n" separates every turn
    "tulu": Template(
        name="tulu",
        header={r: (("marker", f"<|{r}|>"), ("text", "\n")) for r in _ROLES},
        end={"system": (), "user": (), "assistant": (("eos", ""),)},
        sep={r: (("text", "\n"),) for r in _ROLES},
        generation=(("marker", "<|assistant|>"), ("text", "\n")),
    ),
    # HH transcripts: no end-of-turn token between turns; one eos closes the conversation
    "plain": Template(
        name="plain",
        header={"system": (), "user": (("text", "\n\nHuman: "),), "assistant": (("text", "\n\nAssistant: "),)},
        end={r: () for r in _ROLES},
        sep={r: () for r in _ROLES},
        generation=(("text", "\n\nAssistant: "),),
        final=(("eos", ""),),
    ),
}


class SpecialTokenInContent(ValueError):
    """A message's content tokenized to a control id (eos, bos or a template token), e.g. because the
    text contains the literal string ``<|im_end|>`` and the tokenizer parses it as the special token;
    training on it would teach the model to end turns in mid-message."""


@dataclasses.dataclass(frozen=True)
class CompiledTemplate:
    """A template resolved against one tokenizer: every static piece as ids."""

    template: Template
    header: dict[str, np.ndarray]
    end: dict[str, np.ndarray]
    sep: dict[str, np.ndarray]
    generation: np.ndarray
    final: np.ndarray
    control_ids: frozenset[int]
    bos_id: int | None
    eos_id: int
    tokenizer: Tokenizer


def get_template(template: str | Template) -> Template:
    if isinstance(template, Template):
        return template
    if template not in TEMPLATES:
        raise ConfigError(f"chat template: unknown template '{template}'; choose from {', '.join(TEMPLATES)}")
    return TEMPLATES[template]


def compile_template(template: str | Template, tokenizer: Tokenizer) -> CompiledTemplate:
    """Resolve ``template``'s pieces to ids with ``tokenizer``; a missing required token is a ConfigError."""
    tpl = get_template(template)
    eos = tokenizer.eos_id
    if eos is None:
        raise ConfigError(f"chat template '{tpl.name}': the tokenizer has no eos id; use a tokenizer that defines one")
    control = {int(eos)} | ({int(tokenizer.bos_id)} if tokenizer.bos_id is not None else set())

    def ids(pieces: Sequence[Piece]) -> np.ndarray:
        out: list[int] = []
        for kind, value in pieces:
            if kind == "text":
                out += list(tokenizer.encode(value))
            elif kind == "eos":
                out.append(int(eos))
            else:
                tid = tokenizer.token_to_id(value)
                if tid is None and kind == "special":
                    raise ConfigError(f"chat template '{tpl.name}': the tokenizer has no token {value!r} "
                                      f"(token_to_id returned None); use a tokenizer that defines it or "
                                      f"another template ({', '.join(TEMPLATES)})")
                if tid is None:  # a "marker" the vocabulary lacks is written as text
                    out += list(tokenizer.encode(value))
                else:
                    control.add(int(tid))
                    out.append(int(tid))
        return np.asarray(out, dtype=np.int32)

    compiled = CompiledTemplate(
        template=tpl,
        header={r: ids(p) for r, p in tpl.header.items()},
        end={r: ids(p) for r, p in tpl.end.items()},
        sep={r: ids(p) for r, p in tpl.sep.items()},
        generation=ids(tpl.generation), final=ids(tpl.final),
        control_ids=frozenset(), bos_id=tokenizer.bos_id, eos_id=int(eos), tokenizer=tokenizer)
    return dataclasses.replace(compiled, control_ids=frozenset(control))


TemplateLike = Union[str, Template, CompiledTemplate]


def _compiled(template: TemplateLike, tokenizer: Tokenizer) -> CompiledTemplate:
    if isinstance(template, CompiledTemplate) and template.tokenizer is tokenizer:
        return template
    return compile_template(template.template if isinstance(template, CompiledTemplate) else template, tokenizer)


def _with_default_system(conv: Sequence[dict], tpl: Template) -> list[dict]:
    conv = list(conv)
    if tpl.default_system is not None and (not conv or conv[0]["role"] != "system"):
        conv.insert(0, {"role": "system", "content": tpl.default_system})
    return conv


def _content_ids(ct: CompiledTemplate, msg: dict) -> np.ndarray:
    role = msg.get("role")
    if role not in ct.header:
        raise ValueError(f"message role {role!r} is not one of {tuple(ct.header)}")
    ids = np.asarray(ct.tokenizer.encode(msg["content"]), dtype=np.int32)
    if ct.control_ids and np.isin(ids, list(ct.control_ids)).any():
        bad = sorted(set(ids.tolist()) & ct.control_ids)
        raise SpecialTokenInContent(f"a {role} message's content encodes to control ids {bad}")
    return ids


def _bos(ct: CompiledTemplate, add_bos: bool) -> list[np.ndarray]:
    if not add_bos:
        return []
    if ct.bos_id is None:
        raise ConfigError("add_bos=True but the tokenizer has no bos id; set add_bos=False")
    return [np.asarray([ct.bos_id], dtype=np.int32)]


def encode_conversation(conv: Sequence[dict], tokenizer: Tokenizer, template: TemplateLike = "chatml",
                        loss_on: str = "assistant", *, add_bos: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Tokenize a whole conversation; returns ``(ids int32 [n], mask bool [n])``.

    ``mask[k]`` is True iff token ``k`` is a training target: for ``loss_on="assistant"``, the content
    tokens and end-of-turn marker of every assistant turn (plus the template's ``final`` pieces when
    the last turn is the assistant's); for ``"all"``, every token. ``add_bos`` prepends the bos id
    (a target only under ``"all"``; as the first token it is never predicted anyway). Raises
    ``SpecialTokenInContent`` if a content encodes to a control id.
    """
    if loss_on not in LOSS_ON:
        raise ConfigError(f"loss_on='{loss_on}' is not one of {LOSS_ON}")
    ct = _compiled(template, tokenizer)
    conv = _with_default_system(conv, ct.template)
    parts: list[np.ndarray] = []
    masks: list[np.ndarray] = []

    def put(ids: np.ndarray, trained: bool) -> None:
        parts.append(ids)
        masks.append(np.full(len(ids), trained or loss_on == "all", dtype=bool))

    for bos in _bos(ct, add_bos):
        put(bos, False)
    for msg in conv:
        role, is_asst = msg["role"], msg["role"] == "assistant"
        content = _content_ids(ct, msg)
        put(ct.header[role], False)
        put(content, is_asst)
        put(ct.end[role], is_asst)
        put(ct.sep[role], False)
    if len(ct.final):
        put(ct.final, bool(conv) and conv[-1]["role"] == "assistant")
    ids = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    mask = np.concatenate(masks) if masks else np.zeros(0, bool)
    return ids.astype(np.int32), mask


def encode_prompt(messages: Sequence[dict], tokenizer: Tokenizer, template: TemplateLike = "chatml", *,
                  add_bos: bool = False) -> np.ndarray:
    """Ids of ``messages`` rendered in full, followed by the generation prompt (int32 [n]).

    The model's continuation of these ids is the assistant's reply; it should stop at the template's
    end-of-turn marker (``<|im_end|>`` for chatml, eos for tulu and plain).
    """
    ct = _compiled(template, tokenizer)
    parts = _bos(ct, add_bos)
    for msg in _with_default_system(messages, ct.template):
        role = msg["role"]
        parts += [ct.header[role], _content_ids(ct, msg), ct.end[role], ct.sep[role]]
    parts.append(ct.generation)
    return np.concatenate(parts).astype(np.int32)


def stop_ids(tokenizer: Tokenizer, template: TemplateLike = "chatml") -> tuple[int, ...]:
    """The ids that end an assistant reply under ``template`` (its end-of-turn marker, and eos)."""
    ct = _compiled(template, tokenizer)
    return tuple(dict.fromkeys([*ct.end["assistant"].tolist(), *ct.final.tolist(), ct.eos_id]))


def encode_text(doc: str, tokenizer: Tokenizer, *, add_bos: bool = False) -> np.ndarray:
    """A replay document as ids: ``[bos] + encode(doc) + [eos]`` (int32); every token is a target."""
    if tokenizer.eos_id is None:
        raise ConfigError("replay text: the tokenizer has no eos id to end documents with")
    if add_bos and tokenizer.bos_id is None:
        raise ConfigError("add_bos=True but the tokenizer has no bos id; set add_bos=False")
    ids = ([tokenizer.bos_id] if add_bos else []) + list(tokenizer.encode(doc)) + [tokenizer.eos_id]
    return np.asarray(ids, dtype=np.int32)


def encode_conversations(convs: Sequence[Sequence[dict]], tokenizer: Tokenizer, template: TemplateLike = "chatml",
                         loss_on: str = "assistant", *, add_bos: bool = False, skip_special_in_content: bool = True
                         ) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """``encode_conversation`` over a corpus; returns ``(encoded, skipped)``.

    A conversation whose content encodes to a control id is skipped (and counted) when
    ``skip_special_in_content``, else ``SpecialTokenInContent`` propagates.
    """
    ct = _compiled(template, tokenizer)
    out, skipped = [], 0
    for conv in convs:
        try:
            out.append(encode_conversation(conv, tokenizer, ct, loss_on, add_bos=add_bos))
        except SpecialTokenInContent:
            if not skip_special_in_content:
                raise
            skipped += 1
    return out, skipped
