"""The pairwise judge against real HTTP servers on loopback, and the chat-completions server itself.

Judge runs go to a :class:`ChatServer` with deterministic responders (one prefers the longer response,
one always says "A") whose request log shows what was really sent; failures come from small scripted
``http.server`` servers (5xx, 429, 400, timeouts). Counts are checked by hand.
"""
import json
import re
import string
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest

from lossmooth.errors import ConfigError
from lossmooth.lm.judge.client import (DEFAULT_SYSTEM_PROMPT, JudgeClient, JudgeConfig, JudgeError, JudgmentCache,
                                bootstrap_ci, judge_pairs, parse_verdict)
from lossmooth.lm.judge.server import ChatServer

MODEL = "judge-test"

# (item_id, instruction, candidate, reference); with the longer-wins judge: 3 wins, 1 tie, 2 losses
ITEMS = [
    ("w1", "Greet the user.", "Hello there, how can I help?", "Hi."),
    ("w2", "Count to three.", "one, two, three", "1 2 3"),
    ("w3", "Name a colour.", "Cerulean blue", "Red"),
    ("t1", "Echo a letter.", "xx", "yy"),
    ("l1", "Explain gravity.", "Mass.", "Masses attract each other."),
    ("l2", "List two fruits.", "Fig", "Apple and pear"),
]


def _cfg(base_url, **kw):
    kw.setdefault("backoff_s", 0.0)
    return JudgeConfig(base_url=base_url, model=MODEL, **kw)


def _split_prompt(cfg, user_text):
    """(instruction, response_a, response_b) read back out of a user message built from cfg.user_template."""
    pattern = ""
    for literal, field, _, _ in string.Formatter().parse(cfg.user_template):  # literal braces come undoubled
        pattern += re.escape(literal)
        if field:
            pattern += f"(?P<{field}>.*)"
    m = re.fullmatch(pattern, user_text, flags=re.S)
    assert m, user_text
    return m["instruction"], m["response_a"], m["response_b"]


class Recorder:
    """A deterministic judge for ChatServer that logs every request it is asked."""

    def __init__(self, cfg, rule):
        self.cfg, self.rule, self.log = cfg, rule, []

    def __call__(self, messages, max_tokens, temperature, seed):
        instruction, a, b = _split_prompt(self.cfg, messages[-1]["content"])
        self.log.append({"messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                         "seed": seed, "a": a, "b": b, "instruction": instruction})
        return self.rule(a, b), 100, 1


def longer(a, b):
    return "A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie"


def _completion(text):
    return {"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class Scripted:
    """A bare http.server endpoint: request i (0-based) is answered by script(i) -> (status, json, delay_s)."""

    def __init__(self, script):
        self.requests, self.lock, self.release = [], threading.Lock(), threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    i = len(outer.requests)
                    outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, payload, delay = script(i)
                if delay:
                    outer.release.wait(delay)  # set on shutdown, so a sleeping handler never outlives the test
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout) and closed the connection

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def judge_server():
    """Factory: (server, cfg, recorder) for a ChatServer judging by ``rule``; closed at teardown."""
    servers = []

    def make(rule=longer, **cfg_kw):
        template = _cfg("http://127.0.0.1:1/v1", **cfg_kw)
        rec = Recorder(template, rule)
        srv = ChatServer(rec, MODEL).start()
        servers.append(srv)
        return srv, _cfg(srv.base_url, **cfg_kw), rec

    yield make
    for s in servers:
        s.close()


# ---------------------------------------------------------------------------------------------- judge runs

def test_full_run_counts_and_both_orders_sent(judge_server):
    srv, cfg, rec = judge_server()
    s = judge_pairs(ITEMS, cfg)
    assert (s.n, s.wins, s.ties, s.losses, s.inconsistent) == (6, 3, 1, 2, 0)
    assert s.win_rate == pytest.approx(3.5 / 6)
    assert 0 <= s.ci_low <= s.win_rate <= s.ci_high <= 1 and s.ci_low < s.ci_high
    assert "bootstrap" in s.ci_method and s.ci_level == 0.95
    assert (s.new_judgments, s.cached_judgments) == (12, 0)
    assert [r.outcome for r in s.items] == ["win"] * 3 + ["tie"] + ["loss"] * 2
    w1 = s.items[0]
    assert (w1.verdict_cand_first, w1.verdict_ref_first, w1.score_cand_first, w1.score_ref_first) == ("A", "B", 1, 1)
    # the server saw two requests per item, candidate first then reference first, with the paper's settings
    assert len(rec.log) == 12
    for k, (_, instruction, cand, ref) in enumerate(ITEMS):
        first, second = rec.log[2 * k], rec.log[2 * k + 1]
        assert (first["instruction"], first["a"], first["b"]) == (instruction, cand, ref)
        assert (second["instruction"], second["a"], second["b"]) == (instruction, ref, cand)
    for r in rec.log:
        assert r["temperature"] == 0.0 and r["max_tokens"] == 8 and r["seed"] is None
        assert r["messages"][0] == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}
        assert [m["role"] for m in r["messages"]] == ["system", "user"]
    assert json.loads(json.dumps(s.to_dict()))["wins"] == 3


def test_position_biased_judge_gives_all_ties(judge_server):
    _, cfg, rec = judge_server(rule=lambda a, b: "A")
    s = judge_pairs(ITEMS, cfg)
    assert (s.wins, s.ties, s.losses, s.inconsistent) == (0, 6, 0, 6)
    assert s.win_rate == 0.5 and (s.ci_low, s.ci_high) == (0.5, 0.5)
    assert all(r.score_cand_first == 1 and r.score_ref_first == 0 for r in s.items)


def test_responses_truncated_before_judging(judge_server):
    _, cfg, rec = judge_server(max_response_chars=10)
    items = [("cut", "Write.", "x" * 25, "y" * 12),  # both cut to 10 characters: equal length, a tie
             ("short", "Write.", "abc", "z" * 30)]  # 3 vs 10 characters: a loss
    s = judge_pairs(items, cfg)
    assert [r.outcome for r in s.items] == ["tie", "loss"]
    assert [(r.candidate_truncated, r.reference_truncated) for r in s.items] == [(True, True), (False, True)]
    assert (rec.log[0]["a"], rec.log[0]["b"]) == ("x" * 10, "y" * 10)
    assert (rec.log[3]["a"], rec.log[3]["b"]) == ("z" * 10, "abc")
    assert all(len(r["a"]) <= 10 and len(r["b"]) <= 10 for r in rec.log)


def test_system_prompt_optional_and_custom_template(judge_server):
    template = "Q: {instruction}\n1) {response_a}\n2) {response_b}\nBetter? {{A|B|tie}}"
    _, cfg, rec = judge_server(system_prompt="", user_template=template)
    s = judge_pairs(ITEMS[:2], cfg)
    assert s.wins == 2
    assert [m["role"] for m in rec.log[0]["messages"]] == ["user"]
    assert rec.log[0]["messages"][0]["content"].endswith("Better? {A|B|tie}")


def test_bootstrap_matches_index_resampling():
    rng = np.random.default_rng(1)
    scores = rng.choice([0, 0.25, 0.5, 0.75, 1.0], size=300, p=[0.3, 0.1, 0.2, 0.1, 0.3])
    lo, hi = bootstrap_ci(scores)
    assert bootstrap_ci(scores) == (lo, hi)  # fixed seed
    naive = scores[rng.integers(0, scores.size, (4000, scores.size))].mean(1)
    nlo, nhi = np.quantile(naive, [0.025, 0.975])
    assert abs(lo - nlo) < 0.01 and abs(hi - nhi) < 0.01


# ------------------------------------------------------------------------------------------ retries, errors

@pytest.mark.parametrize("status", [500, 503, 429])
def test_retries_succeed_after_k_failures(status):
    k = 2
    script = lambda i: (status, {"error": {"message": "busy", "type": "x"}}, 0) if i < k else (200, _completion("B"), 0)
    with Scripted(script) as srv:
        client = JudgeClient(_cfg(srv.base_url, max_retries=3))
        j = client.judge([{"role": "user", "content": "q"}])
        client.close()
    assert (j.verdict, j.cached) == ("B", False)
    assert len(srv.requests) == k + 1 and client.requests_sent == k + 1
    assert srv.requests[0]["path"] == "/v1/chat/completions"
    assert srv.requests[0]["body"] == {"model": MODEL, "messages": [{"role": "user", "content": "q"}],
                                       "temperature": 0.0, "max_tokens": 8}


def test_timeout_fails_after_exactly_max_retries():
    with Scripted(lambda i: (200, _completion("A"), 2.0)) as srv:
        cfg = _cfg(srv.base_url, timeout_s=0.2, max_retries=3)
        with pytest.raises(JudgeError) as e:
            judge_pairs(ITEMS[:1], cfg)
        assert len(srv.requests) == 3
    msg = str(e.value)
    assert "timed out after 3 tries" in msg and cfg.endpoint in msg and "timeout_s" in msg
    assert "\n" not in msg and isinstance(e.value, ConfigError) and e.value.tries == 3


def test_always_500_keeps_earlier_judgments_then_resumes(tmp_path, judge_server):
    cache = str(tmp_path / "judge.jsonl")
    # the first item's two judgments succeed, then the server fails for good
    script = lambda i: (200, _completion("A"), 0) if i < 2 else (500, {"error": {"message": "CUDA out of memory"}}, 0)
    with Scripted(script) as srv:
        with pytest.raises(JudgeError) as e:
            judge_pairs(ITEMS[:3], _cfg(srv.base_url, max_retries=2, cache_path=cache))
        assert len(srv.requests) == 2 + 2
    assert "HTTP 500 (CUDA out of memory) after 2 tries" in str(e.value) and srv.base_url in str(e.value)
    with open(cache) as fh:
        assert [json.loads(line)["verdict"] for line in fh] == ["A", "A"]
    # resume on a healthy server: only the two missing items are asked
    _, cfg, rec = judge_server(cache_path=cache)
    s = judge_pairs(ITEMS[:3], cfg)
    assert (s.new_judgments, s.cached_judgments, len(rec.log)) == (4, 2, 4)
    assert s.items[0].outcome == "tie" and not s.items[0].consistent  # "A" twice from the cache
    assert (s.wins, s.ties, s.losses) == (2, 1, 0)


def test_unparseable_verdict_is_retried_then_reported(judge_server):
    _, cfg, rec = judge_server(rule=lambda a, b: "maybe")
    with pytest.raises(JudgeError) as e:
        judge_pairs(ITEMS[:1], cfg)
    assert "unparseable verdict 'maybe' after 3 tries" in str(e.value)
    assert len(rec.log) == 3


def test_client_error_is_not_retried():
    script = lambda i: (400, {"error": {"message": "max_tokens is too large", "type": "BadRequestError"}}, 0)
    with Scripted(script) as srv:
        with pytest.raises(JudgeError) as e:
            judge_pairs(ITEMS[:1], _cfg(srv.base_url, max_retries=5))
        assert len(srv.requests) == 1
    assert "HTTP 400 (max_tokens is too large)" in str(e.value) and e.value.tries == 1


def test_wrong_model_name_is_404_and_not_retried(judge_server):
    srv, _, rec = judge_server()
    cfg = JudgeConfig(base_url=srv.base_url, model="no-such-model", max_retries=3, backoff_s=0)
    with pytest.raises(JudgeError) as e:
        judge_pairs(ITEMS[:1], cfg)
    assert "HTTP 404" in str(e.value) and "no-such-model" in str(e.value) and rec.log == []


def test_connection_refused_is_retried_then_reported():
    with Scripted(lambda i: (200, _completion("A"), 0)) as srv:
        url = srv.base_url
    with pytest.raises(JudgeError) as e:  # the server is gone: nothing listens on its port
        judge_pairs(ITEMS[:1], _cfg(url, max_retries=2))
    assert "connection failed" in str(e.value) and "after 2 tries" in str(e.value)


def test_api_key_sent_from_env(monkeypatch):
    monkeypatch.setenv("LOSSMOOTH_TEST_JUDGE_KEY", "s3cret")
    with Scripted(lambda i: (200, _completion("tie"), 0)) as srv:
        judge_pairs(ITEMS[:1], _cfg(srv.base_url, api_key_env="LOSSMOOTH_TEST_JUDGE_KEY"))
    assert {r["headers"].get("Authorization") for r in srv.requests} == {"Bearer s3cret"}
    monkeypatch.delenv("LOSSMOOTH_TEST_JUDGE_KEY")
    with pytest.raises(ConfigError, match="LOSSMOOTH_TEST_JUDGE_KEY is not set"):
        JudgeClient(_cfg(srv.base_url, api_key_env="LOSSMOOTH_TEST_JUDGE_KEY"))


# ------------------------------------------------------------------------------------------------- cache

def test_resume_from_cache_sends_no_requests_and_survives_torn_line(tmp_path, judge_server):
    cache = str(tmp_path / "judge.jsonl")
    _, cfg, rec = judge_server(cache_path=cache)
    first = judge_pairs(ITEMS, cfg)
    assert len(rec.log) == 12
    with open(cache, "ab") as fh:
        fh.write(b'{"key": "0123", "verdict": "A", "ra')  # killed mid-write
    _, cfg2, rec2 = judge_server(cache_path=cache)
    again = judge_pairs(ITEMS, cfg2)
    assert rec2.log == [] and (again.new_judgments, again.cached_judgments) == (0, 12)
    assert again.items == first.items and again.win_rate == first.win_rate
    # a new item is asked and appended after the torn line is cut off: the file stays valid JSONL
    more = judge_pairs(ITEMS + [("w4", "Say more.", "much more text", "less")], cfg2)
    assert len(rec2.log) == 2 and more.wins == 4
    with open(cache) as fh:
        lines = [json.loads(line) for line in fh]
    assert len(lines) == 14 and len({r["key"] for r in lines}) == 14


def test_cache_bad_middle_line_and_missing_folder(tmp_path):
    path = tmp_path / "c.jsonl"
    good = json.dumps({"key": "k1", "verdict": "A", "raw": "A"})
    path.write_text(good + "\nnot json\n" + good.replace("k1", "k2") + "\n")
    with pytest.raises(ConfigError, match="line 2 is not a judgment record"):
        JudgmentCache(str(path))
    path.write_text(good)  # a complete last record without its newline is kept, and a newline added
    c = JudgmentCache(str(path))
    c.put("k3", "tie", "tie", MODEL)
    c.close()
    assert [json.loads(x)["key"] for x in path.read_text().splitlines()] == ["k1", "k3"]
    with pytest.raises(ConfigError, match="does not exist"):
        JudgmentCache(str(tmp_path / "nope" / "c.jsonl"))


# ---------------------------------------------------------------------------------- verdicts and config

@pytest.mark.parametrize("text,verdict", [
    ("A", "A"), ("b", "B"), (" Tie.\n", "tie"), ('"A"', "A"), ("**B**", "B"), ("[[A]]", "A"),
    ("Response  B", "B"), ("'tie'", "tie"), ("(a)", "A"),
    ("maybe", None), ("A or B", None), ("A is better", None), ("", None), ("AB", None), (None, None),
])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


@pytest.mark.parametrize("field,value", [
    ("base_url", "127.0.0.1:8000/v1"), ("base_url", "http://h:1/v1/chat/completions"), ("model", ""),
    ("api_key_env", "not a name"), ("user_template", "{instruction} {response_a}"),
    ("user_template", "{instruction} {response_a} {response_b} {extra}"), ("user_template", "{instruction"),
    ("temperature", -0.1), ("max_tokens", 0), ("max_tokens", True), ("max_response_chars", 0),
    ("timeout_s", 0), ("max_retries", 0), ("backoff_s", -1), ("cache_path", ""),
])
def test_config_errors_name_the_field(field, value):
    kw = {"base_url": "http://127.0.0.1:8000/v1", "model": MODEL, field: value}
    with pytest.raises(ConfigError) as e:
        JudgeConfig(**kw)
    assert f"JudgeConfig.{field}" in str(e.value) and "\n" not in str(e.value)


def test_judge_pairs_rejects_bad_items(judge_server):
    _, cfg, rec = judge_server()
    with pytest.raises(ConfigError, match="no items"):
        judge_pairs([], cfg)
    with pytest.raises(ConfigError, match="appears twice"):
        judge_pairs([ITEMS[0], ITEMS[0]], cfg)
    with pytest.raises(ConfigError, match="candidate of type"):
        judge_pairs([("x", "q", None, "r")], cfg)
    assert rec.log == []


# ------------------------------------------------------------------------------------------ chat server

def test_chat_server_openai_schema_and_errors():
    seen = []

    def respond(messages, max_tokens, temperature, seed):
        if messages[-1]["content"] == "boom":
            raise RuntimeError("model exploded")
        seen.append((messages, max_tokens, temperature, seed))
        return "four", 7, 1

    with ChatServer(respond, "tiny-lm") as srv, httpx.Client(base_url=srv.base_url, timeout=5) as http:
        assert srv.base_url.startswith("http://127.0.0.1:") and srv.base_url.endswith("/v1")
        r = http.post("/chat/completions", json={"model": "tiny-lm", "max_tokens": 1, "temperature": 0, "seed": 3,
                                                 "messages": [{"role": "user", "content": [
                                                     {"type": "text", "text": "2+2"}, {"type": "text", "text": "?"}]}]})
        assert r.status_code == 200
        body = r.json()
        assert body["object"] == "chat.completion" and body["model"] == "tiny-lm" and body["id"].startswith("chatcmpl-")
        assert isinstance(body["created"], int)
        (choice,) = body["choices"]
        assert choice["index"] == 0 and choice["message"] == {"role": "assistant", "content": "four"}
        assert choice["finish_reason"] == "length"  # 1 token produced of max_tokens=1
        assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}
        assert seen == [([{"role": "user", "content": "2+2?"}], 1, 0.0, 3)]

        models = http.get("/models").json()
        assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny-lm"]

        def error(resp, status):
            assert resp.status_code == status
            err = resp.json()["error"]
            assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str)
            return err["message"]

        assert "not valid JSON" in error(http.post("/chat/completions", content=b"{nope",
                                                   headers={"Content-Type": "application/json"}), 400)
        assert "messages" in error(http.post("/chat/completions", json={"model": "tiny-lm"}), 400)
        msgs = [{"role": "user", "content": "hi"}]
        error(http.post("/chat/completions", json={"messages": [{"role": "wizard", "content": "x"}]}), 400)
        error(http.post("/chat/completions", json={"messages": msgs, "max_tokens": 0}), 400)
        error(http.post("/chat/completions", json={"messages": msgs, "stream": True}), 400)
        error(http.post("/chat/completions", json=[1, 2]), 400)
        error(http.post("/chat/completions", json={"model": "other", "messages": msgs}), 404)
        error(http.post("/completions", json={"messages": msgs}), 404)
        assert error(http.post("/chat/completions", json={"messages": [{"role": "user", "content": "boom"}]}),
                     500) == "model exploded"
        # the connection is still usable after errors, and defaults apply
        r = http.post("/chat/completions", json={"messages": msgs})
        assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "stop"
        assert seen[-1][1:] == (256, 1.0, None)
        url = srv.base_url
    with pytest.raises(httpx.ConnectError):  # shut down cleanly: the port no longer answers
        httpx.get(url + "/models", timeout=1)


def test_chat_server_refuses_remote_host_and_bad_args():
    respond = lambda *a: ("", 0, 0)
    with pytest.raises(ConfigError, match="not a loopback address"):
        ChatServer(respond, "m", host="0.0.0.0")
    with pytest.raises(ConfigError, match="model_name"):
        ChatServer(respond, "")
    with ChatServer(respond, "m", host="localhost") as srv:
        with pytest.raises(ConfigError, match="cannot listen"):
            ChatServer(respond, "m", port=srv.port)


def test_chat_server_foreground_serve_and_close():
    srv = ChatServer(lambda m, n, t, s: ("A", 3, 1), "m")
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    cfg = JudgeConfig(base_url=srv.base_url, model="m")
    assert judge_pairs(ITEMS[:1], cfg).ties == 1  # "A" in both orders
    srv.close()
    thread.join(timeout=5)
    assert not thread.is_alive()
