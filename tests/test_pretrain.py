"""`lossmooth lm pretrain` and exact replay: a tiny pretraining on text files the test writes (the real
tokenizer training, the real Hugging Face folders), resumed and not, then fine-tuned by the LM setting
with ``lm_model=own lm_replay=pretraining``."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from lossmooth import cli
from lossmooth.app import pretrain
from lossmooth.errors import ConfigError
from lossmooth.lm.models.weights import (load_hf_config, load_safetensors_dir, params_from_state_dict,
                                         state_dict_from_params)
from lossmooth.lm.text import chat, packing, pretraining
from lossmooth.lm.text.tokenizer import Tokenizer, train_bpe
from lossmooth.runner.compose import compose

WORDS = ("the a of and to in is was he she it they we you that this with for on at by from light dark water fire "
         "stone king house road tree river field bread wine night morning").split()
SIZE = ["tokenizer.vocab_size=300", "model.hidden_size=32", "model.intermediate_size=64", "model.num_layers=2",
        "model.num_heads=2", "model.num_kv_heads=1", "train.seq_len=32", "train.batch=4", "train.steps=32",
        "train.eval_every=4", "train.eval_rows=4", "train.warmup=2", "corpus.heldout_fraction=0.2"]
REVISIONS = ("step000004-tokens512", "step000008-tokens1024", "step000016-tokens2048", "step000032-tokens4096")


def _texts(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(60):
        (folder / f"d{i:02d}.txt").write_text(" ".join(rng.choice(WORDS, 300)) + ".\n")
    return folder


def _config(root: Path, texts: Path, *more: str) -> dict:
    return compose([f"root={root}", "name=tiny", "corpus.sources=[]", f"corpus.text_files={texts}", *SIZE, *more],
                   "pretrain")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """One uninterrupted tiny pretraining: ``(root, texts, folder)``."""
    base = tmp_path_factory.mktemp("pretrain")
    texts = _texts(base / "texts")
    folder = pretrain.run(_config(base / "root", texts))
    return base / "root", texts, folder


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.parts[len(folder.parts)].startswith("step")}


def test_checkpoints_are_hugging_face_folders_at_each_budget(pretrained):
    root, _, folder = pretrained
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("step")) == list(REVISIONS)
    curve = [json.loads(line) for line in (folder / "curve.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == list(range(4, 33, 4))
    assert curve[-1]["heldout_loss"] < curve[0]["heldout_loss"] - 0.5  # it learns
    assert (folder / "curve.png").stat().st_size > 1000
    for rev in REVISIONS:
        ckpt = folder / rev
        cfg = load_hf_config(ckpt)
        assert (cfg.hidden_size, cfg.num_layers, cfg.num_kv_heads, cfg.tie_embeddings) == (32, 2, 1, True)
        params = load_safetensors_dir(ckpt, cfg)  # every tensor used, every shape as the config says
        assert sum(x.size for x in jax.tree.leaves(params)) > 0
        manifest = json.loads((ckpt / pretraining.MANIFEST).read_text())
        assert manifest["revision"] == rev and manifest["tokens"] == manifest["step"] * 4 * 32
    # a later budget has moved on from an earlier one
    a, b = (load_safetensors_dir(folder / r, load_hf_config(folder / r)) for r in REVISIONS[::3])
    assert not np.array_equal(a["embed_tokens"]["embedding"], b["embed_tokens"]["embedding"])


def test_resumed_pretraining_writes_the_same_bytes(pretrained, tmp_path):
    """Stopped twice (after 12 steps, then 8 more) and resumed: every checkpoint byte and the loss curve
    equal the uninterrupted run's (deterministic, and the data order depends only on the step)."""
    _, texts, full = pretrained
    root = tmp_path / "root"
    pretrain.run(_config(root, texts, "stop_after=12"))
    assert json.loads((root / "tiny" / "state.json").read_text())["step"] == 12
    assert not (root / "tiny" / "finished.json").exists()
    pretrain.run(_config(root, texts, "stop_after=8"))
    folder = pretrain.run(_config(root, texts))
    assert _files(folder) == _files(full)
    assert (folder / "tokenizer" / "tokenizer.json").read_bytes() == (full / "tokenizer" / "tokenizer.json").read_bytes()
    strip = lambda p: [{k: v for k, v in json.loads(x).items() if k != "wall_s"} for x in p.read_text().splitlines()]  # noqa: E731
    assert strip(folder / "curve.jsonl") == strip(full / "curve.jsonl")


def test_another_config_under_the_same_name_is_refused(pretrained):
    root, texts, folder = pretrained
    before = _files(folder)
    with pytest.raises(ConfigError, match=r"holds a pretraining with other settings \(train\)"):
        pretrain.run(_config(root, texts, "train.lr=1e-3"))
    assert _files(folder) == before


def test_tokenizer_training_is_deterministic_and_keeps_chatml_markers():
    texts = [" ".join(np.random.default_rng(i).choice(WORDS, 200)) for i in range(20)]
    a, b = train_bpe(texts, 320), train_bpe(texts, 320)
    assert a.backend.to_str() == b.backend.to_str()
    assert [a.token_to_id(t) for t in ("<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>")] == [0, 1, 2, 3]
    assert a.eos_id == 0 and a.pad_id == 1
    ids = chat.encode_prompt([{"role": "user", "content": "the king"}], a, "chatml")
    assert ids[0] == 2 and 3 in ids.tolist()
    with pytest.raises(ConfigError, match="tokenizer.vocab_size"):
        train_bpe(texts, 100)


def test_state_dict_round_trip_is_exact(pretrained):
    _, _, folder = pretrained
    ckpt = folder / REVISIONS[-1]
    cfg = load_hf_config(ckpt)
    params = load_safetensors_dir(ckpt, cfg)
    back = params_from_state_dict(state_dict_from_params(params, cfg), cfg)
    assert jax.tree.all(jax.tree.map(np.array_equal, params, back))


def test_exact_replay_is_the_pretraining_text_and_rows(pretrained):
    """The replay rows are the rows pretraining trained on (same documents, same packing); the
    evaluation text is the held-out documents, none of which pretraining read."""
    from lossmooth.settings.lm.data import pretraining_split

    _, texts, folder = pretrained
    ckpt = folder / REVISIONS[0]
    train, held = pretraining_split(str(ckpt))
    assert set(train).isdisjoint(held) and len(train) + len(held) == 60 and held
    spec = pretrain.parse(_config(folder.parent, texts))
    assert (train, held) == pretraining.split(spec["corpus"])
    tok = Tokenizer.from_hf_dir(ckpt)
    rows = packing.pack([chat.encode_text(d, tok) for d in train], 32, seed=0, pad_id=tok.pad_id)
    assert json.loads((ckpt / pretraining.MANIFEST).read_text())["corpus_info"]["rows"]["train"] == rows.num_rows
    # a changed text is refused: the replay would not be the pretraining's
    changed = texts / "d00.txt"
    old = changed.read_text()
    try:
        changed.write_text(old + " more")
        with pytest.raises(ConfigError, match="differs from what"):
            pretraining_split(str(ckpt))
    finally:
        changed.write_text(old)


def test_fine_tuning_the_own_model_with_exact_replay(pretrained, tmp_path, capfd):
    """`lossmooth run setting=lm lm_model=own lm_replay=pretraining` end to end on the tiny checkpoints."""
    root, _, _ = pretrained
    results = tmp_path / "results"
    args = ["run", "setting=lm", "lm_model=own", f"lm_model.root={root}", "lm_model.name=tiny",
            f"lm_model.revision={REVISIONS[1]}", "lm_replay=pretraining", "lm_target=chitchat", "lm_budget=own",
            "judge=none", "lm_budget.seq_len=32", "lm_budget.micro_batch=4", "lm_budget.eval_rows=8",
            "lm_budget.eval_micro_batch=4", "setting.adapt_steps=8", "setting.smoothing_T=4", "num_seeds=1",
            "lm_target.max_conversations=200", f"results_dir={results}", "logger=jsonl", "progress=false",
            "cache_dir=null"]
    assert cli.main(args) == 0
    (run_dir,) = [p for p in (results / "lm").iterdir() if (p / "meta.json").is_file()]
    meta = json.loads((run_dir / "meta.json").read_text())
    manifest = json.loads((root / "tiny" / REVISIONS[1] / pretraining.MANIFEST).read_text())
    assert meta["data"]["replay"] == "pretraining"
    assert meta["data"]["dataset_sha256"] == manifest["corpus_info"]["sha256"]["train"]
    # the replay rows are the pretraining's rows: same documents, same packing, same length
    assert meta["data"]["rows"]["replay"] == manifest["corpus_info"]["rows"]["train"]
    assert meta["data"]["loss_tokens"]["replay"] == manifest["corpus_info"]["loss_tokens"]["train"]
    runs = json.loads((run_dir / "runs.json").read_text())
    assert {r["model"] for r in runs} == {f"tiny@{REVISIONS[1]}"} and len(runs) == 2
    assert {r["method"] for r in runs} == {"hard_switch", "loss_smoothing"}
    capfd.readouterr()


def test_a_missing_checkpoint_names_the_command(tmp_path):
    from lossmooth.lm.models.load import load_model
    from lossmooth.settings.lm.config import own_checkpoint

    m = {"root": str(tmp_path), "name": "nosuch", "revision": REVISIONS[0], "dtype": "float32", "remat": False,
         "format": "hf"}
    m["path"] = own_checkpoint(m)
    with pytest.raises(ConfigError, match="make it with `lossmooth lm pretrain`"):
        load_model(m, 64)
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_transformers_reads_a_checkpoint_as_we_do(pretrained):
    """The checkpoint folder is a real Hugging Face model: transformers' ``AutoModelForCausalLM`` and
    ``AutoTokenizer`` load it, tokenize as our tokenizer does, and give our decoder's logits."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from lossmooth.lm.models.decoder import Decoder

    _, _, folder = pretrained
    ckpt = folder / REVISIONS[-1]
    text = "the king of light and water"
    hf_tok = transformers.AutoTokenizer.from_pretrained(ckpt)
    ours = Tokenizer.from_hf_dir(ckpt)
    ids = ours.encode(text)
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == ids
    assert hf_tok.eos_token_id == ours.eos_id == 0 and hf_tok.pad_token_id == ours.pad_id == 1
    model = transformers.AutoModelForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float32).eval()
    assert type(model).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        theirs = model(torch.tensor([ids])).logits.numpy()
    cfg = load_hf_config(ckpt)
    params = load_safetensors_dir(ckpt, cfg)
    tokens = np.asarray([ids], np.int32)
    logits, _ = Decoder(cfg).apply({"params": params}, tokens, positions=np.arange(len(ids))[None],
                                   segment_ids=np.ones_like(tokens))
    np.testing.assert_allclose(np.asarray(logits), theirs, atol=1e-4, rtol=1e-4)


def test_a_blown_up_pretraining_is_stopped_and_marked_diverged(tmp_path):
    texts = _texts(tmp_path / "texts")
    with pytest.raises(ConfigError, match="pretraining diverged by step"):
        pretrain.run(_config(tmp_path / "root", texts, "train.lr=1e4"))
    marked = json.loads((tmp_path / "root" / "tiny" / "diverged.json").read_text())
    assert marked["diverge_factor"] == pretrain.DIVERGE_FACTOR and marked["step"] <= 32
