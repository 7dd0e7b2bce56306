"""A tokenizer for the decoder: a ``tokenizers.Tokenizer`` built from a GGUF file or read from a Hugging
Face ``tokenizer.json`` folder, with the special ids and chat template beside it.

From GGUF (``Tokenizer.from_gguf``), for ``tokenizer.ggml.model == "gpt2"`` (byte-level BPE)::

    tokenizer.ggml.tokens        vocabulary, id = position; tokens are spelled in GPT-2's byte alphabet
                                 (each byte 0-255 is one printable character, e.g. space -> "Ġ")
    tokenizer.ggml.merges        "left right" strings, highest priority first
    tokenizer.ggml.token_type    1 normal, 3 control -> special token, 4 user-defined -> added token
                                 (both kinds are matched whole in the text before BPE)
    tokenizer.ggml.pre           the pre-tokenizer (below)
    tokenizer.ggml.{bos,eos,padding}_token_id, tokenizer.chat_template

Encoding: added/special tokens are matched first; the rest is pre-tokenized, each piece is mapped byte by
byte into the byte alphabet, and BPE applies the merges. Decoding maps the alphabet back to bytes and
UTF-8. Pre-tokenizers (llama.cpp's names; ``GPT2_SPLIT`` is GPT-2's regex
``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``)::

    default, gpt-2, olmo, mpt, jais            GPT2_SPLIT
    smollm, starcoder, refact, codeshell, ...  every digit alone (\\p{N}), then GPT2_SPLIT on the rest
    llama-bpe, llama3, ...                     Llama 3's regex (digits in runs of at most 3)

From a folder (``Tokenizer.from_hf_dir``): ``tokenizer.json`` is the whole tokenizer; ``tokenizer_config.json``
(and ``special_tokens_map.json`` when present) name the bos/eos/pad tokens and carry the chat template,
which transformers may also save as ``chat_template.jinja``.

``encode`` never adds special tokens on its own (no bos, no eos): prompts are written out in full, as the
chat template renders them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as _BackendTokenizer

from lossmooth.errors import ConfigError

_TOKEN_TYPE_CONTROL = 3
_TOKEN_TYPE_USER_DEFINED = 4

_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_GPT2_NAMES = ("default", "gpt-2", "gpt2", "olmo", "mpt", "jais", "trillion")
_DIGITS_THEN_GPT2_NAMES = ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva")
_LLAMA3_NAMES = ("llama-bpe", "llama3", "llama-v3", "falcon3", "smaug-bpe", "dbrx", "pixtral")


def _pre_tokenizer(pre: str | None, source: str):
    """The ``tokenizers`` pre-tokenizer equal to llama.cpp's for ``tokenizer.ggml.pre`` (absent = default)."""
    pre = pre or "default"
    # ByteLevel with use_regex=True splits with GPT-2's regex before mapping bytes to the alphabet
    gpt2 = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _GPT2_NAMES:
        return gpt2
    if pre in _DIGITS_THEN_GPT2_NAMES:
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), gpt2])
    if pre in _LLAMA3_NAMES:
        return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated"),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    supported = ", ".join(_GPT2_NAMES + _DIGITS_THEN_GPT2_NAMES + _LLAMA3_NAMES)
    raise ConfigError(f"{source}: tokenizer.ggml.pre={pre!r} is not a supported pre-tokenizer ({supported})")


def _token_content(entry: Any) -> str | None:
    """A special token as ``tokenizer_config.json`` writes it: a string or ``{"content": ...}``."""
    if isinstance(entry, dict):
        return entry.get("content")
    return entry if isinstance(entry, str) else None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable JSON ({exc}); save the tokenizer again") from exc


class Tokenizer:
    """A ``tokenizers.Tokenizer`` plus the ids and chat template a decoder prompt needs.

    ``bos_id``, ``eos_id`` and ``pad_id`` are ``None`` when the source does not name them.
    """

    def __init__(self, backend: _BackendTokenizer, *, bos_id: int | None = None, eos_id: int | None = None,
                 pad_id: int | None = None, chat_template: str | None = None):
        self._backend = backend
        self._bos_id, self._eos_id, self._pad_id = bos_id, eos_id, pad_id
        self._chat_template = chat_template

    # ---- constructors -------------------------------------------------------------------------------

    @classmethod
    def from_gguf(cls, source) -> "Tokenizer":
        """The byte-level BPE tokenizer stored in a GGUF file's metadata (a path or an open reader from
        ``lossmooth.lm.models.gguf_weights.read_gguf``); see the module docstring for the fields used."""
        # imported here so that reading a tokenizer.json folder does not import jax through the weights module
        from lossmooth.lm.models.gguf_weights import gguf_field, read_gguf

        reader = read_gguf(source) if isinstance(source, (str, Path)) else source
        name = str(getattr(getattr(reader, "data", None), "filename", None) or "GGUF file")
        kind = gguf_field(reader, "tokenizer.ggml.model")
        if kind != "gpt2":
            raise ConfigError(f"{name}: tokenizer.ggml.model={kind!r} is not supported; "
                              "only byte-level BPE ('gpt2') tokenizers are built from GGUF")
        tokens = gguf_field(reader, "tokenizer.ggml.tokens")
        merges = gguf_field(reader, "tokenizer.ggml.merges")
        if not tokens or merges is None:
            raise ConfigError(f"{name}: tokenizer.ggml.tokens or tokenizer.ggml.merges is missing; "
                              "convert the model again with llama.cpp")
        token_types = gguf_field(reader, "tokenizer.ggml.token_type") or [1] * len(tokens)
        vocab = {token: index for index, token in enumerate(tokens)}
        # byte-level tokens never hold a literal space (it is spelled "Ġ"), so the first space splits a merge
        pairs = [tuple(merge.split(" ", 1)) for merge in merges]
        backend = _BackendTokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
        backend.pre_tokenizer = _pre_tokenizer(gguf_field(reader, "tokenizer.ggml.pre"), name)
        backend.decoder = decoders.ByteLevel()
        # already in the vocabulary, so registering them keeps their ids and the vocabulary size
        special = [AddedToken(token, special=True, normalized=False)
                   for token, kind in zip(tokens, token_types) if kind == _TOKEN_TYPE_CONTROL]
        added = [AddedToken(token, special=False, normalized=False)
                 for token, kind in zip(tokens, token_types) if kind == _TOKEN_TYPE_USER_DEFINED]
        backend.add_special_tokens(special)
        backend.add_tokens(added)

        def token_id(key):
            value = gguf_field(reader, f"tokenizer.ggml.{key}")
            return int(value) if value is not None and 0 <= int(value) < len(tokens) else None

        return cls(backend, bos_id=token_id("bos_token_id"), eos_id=token_id("eos_token_id"),
                   pad_id=token_id("padding_token_id"), chat_template=gguf_field(reader, "tokenizer.chat_template"))

    @classmethod
    def from_hf_dir(cls, path: str | Path) -> "Tokenizer":
        """A Hugging Face tokenizer folder: ``tokenizer.json``, with ``tokenizer_config.json`` (chat
        template, bos/eos/pad tokens), ``special_tokens_map.json`` and ``chat_template.jinja`` when present
        (the config's entries win over the special tokens map's)."""
        directory = Path(path)
        tokenizer_file = directory / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise ConfigError(f"{tokenizer_file}: not found; a Hugging Face model folder saved with a fast "
                              "tokenizer (tokenizer.save_pretrained) provides it")
        try:
            backend = _BackendTokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
            raise ConfigError(f"{tokenizer_file}: not a tokenizers file ({exc}); save the tokenizer again") from exc
        settings: dict = {}
        for extra in ("special_tokens_map.json", "tokenizer_config.json"):
            if (directory / extra).is_file():
                settings.update(_read_json(directory / extra))
        template = settings.get("chat_template")
        if isinstance(template, list):
            # several named templates: transformers uses the one called "default"
            named = {entry.get("name"): entry.get("template") for entry in template if isinstance(entry, dict)}
            template = named.get("default")
        jinja = directory / "chat_template.jinja"
        if jinja.is_file():
            template = jinja.read_text(encoding="utf-8")

        def token_id(key):
            content = _token_content(settings.get(key))
            return None if content is None else backend.token_to_id(content)

        return cls(backend, bos_id=token_id("bos_token"), eos_id=token_id("eos_token"),
                   pad_id=token_id("pad_token"), chat_template=template)

    # ---- use ----------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """The ids of ``text``; special tokens written in it (``<|im_start|>``) become their single ids,
        and nothing is added around it."""
        return self._backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids, skip_special: bool = True) -> str:
        """The text of ``ids``; special tokens are dropped when ``skip_special``."""
        return self._backend.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def token_to_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    @property
    def backend(self) -> _BackendTokenizer:
        """The wrapped ``tokenizers.Tokenizer`` (``backend.save("tokenizer.json")`` writes it out)."""
        return self._backend

    @property
    def vocab_size(self) -> int:
        """Ids run over ``[0, vocab_size)``, added tokens included."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    @property
    def bos_id(self) -> int | None:
        return self._bos_id

    @property
    def eos_id(self) -> int | None:
        return self._eos_id

    @property
    def pad_id(self) -> int | None:
        return self._pad_id

    @property
    def chat_template(self) -> str | None:
        """The Jinja chat template stored with the tokenizer, unrendered."""
        return self._chat_template

    @property
    def special_tokens(self) -> list[str]:
        """The special tokens, in id order."""
        decoder = self._backend.get_added_tokens_decoder()
        return [decoder[index].content for index in sorted(decoder) if decoder[index].special]


# ---- a tokenizer of our own ----------------------------------------------------------------------------

# the chat template stored with a tokenizer trained here (ChatML, the ``chatml`` template of :mod:`.chat`)
CHATML_JINJA = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
                "+ '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                "{% endif %}")
OWN_SPECIALS = ("<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>")  # ids 0..3: eos, pad, ChatML's two


def train_bpe(texts, vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """A byte-level BPE tokenizer (GPT-2's pre-tokenizer and byte alphabet) trained on ``texts`` with
    ``tokenizers``' ``BpeTrainer``: ``vocab_size`` ids in all, :data:`OWN_SPECIALS` first (eos
    ``<|endoftext|>``, pad, and ChatML's turn markers, so the ``chatml`` template needs no new ids),
    then the 256 bytes, then merges of pairs seen at least ``min_frequency`` times."""
    if vocab_size < len(OWN_SPECIALS) + 256 + 1:
        raise ConfigError(f"tokenizer.vocab_size: {vocab_size} leaves no room for merges; use at least "
                          f"{len(OWN_SPECIALS) + 257} (the specials and the 256 bytes come first)")
    backend = _BackendTokenizer(models.BPE(fuse_unk=False, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=[AddedToken(t, special=True, normalized=False) for t in OWN_SPECIALS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer=trainer)
    eos, pad = (backend.token_to_id(t) for t in OWN_SPECIALS[:2])
    return Tokenizer(backend, bos_id=None, eos_id=eos, pad_id=pad, chat_template=CHATML_JINJA)


def save_hf_dir(tokenizer: Tokenizer, path: str | Path, model_max_length: int) -> None:
    """Write ``tokenizer`` as a Hugging Face folder :meth:`Tokenizer.from_hf_dir` (and transformers'
    ``AutoTokenizer``) reads: ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.backend.save(str(directory / "tokenizer.json"))
    name = lambda i: None if i is None else tokenizer.backend.id_to_token(i)  # noqa: E731
    special = {"bos_token": name(tokenizer.bos_id), "eos_token": name(tokenizer.eos_id),
               "pad_token": name(tokenizer.pad_id), "additional_special_tokens": list(OWN_SPECIALS[2:])}
    config = {**special, "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model_max_length,
              "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
              "chat_template": tokenizer.chat_template}
    for file, content in (("tokenizer_config.json", config), ("special_tokens_map.json", special)):
        (directory / file).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
