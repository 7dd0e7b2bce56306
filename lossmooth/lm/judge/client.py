"""Pairwise LLM-judge evaluation of the LM setting over an OpenAI-compatible chat-completions endpoint.

Protocol. Every item ``(item_id, instruction, candidate, reference)`` compares a fine-tuned model's
response (the candidate) with a reference response to the same instruction. Both responses are first
cut to their first ``max_response_chars`` characters (Python ``str`` code points). The judge is then
asked twice, once per presentation order, so that a judge that favours one position cancels out:

- order 1: ``A = candidate``, ``B = reference``;
- order 2: ``A = reference``, ``B = candidate``.

Each request is ``POST {base_url}/chat/completions`` with ``{"model", "messages": [system?, user],
"temperature", "max_tokens"}`` (paper: temperature 0, at most 8 tokens); the user message is
``user_template.format(instruction=..., response_a=..., response_b=...)``. The reply's text is read by
:func:`parse_verdict` into ``"A"``, ``"B"`` or ``"tie"``.

Scoring (from the candidate's side). Per order, a verdict for the candidate's position scores 1, a tie
0.5, a verdict for the reference 0. The item score is the mean of its two per-order scores, in
``{0, 0.25, 0.5, 0.75, 1}``; the item is a *win* if its score is > 0.5, a *tie* if = 0.5 and a *loss*
if < 0.5. An item is *position-inconsistent* when its two per-order scores differ (e.g. the judge
answered "A" in both orders, which scores 1 + 0 -> a tie). The win rate is the mean item score. Its
95% confidence interval is a percentile bootstrap over items (10,000 resamples, fixed seed 0): since
item scores take at most five values, resampling ``n`` items with replacement is drawn exactly as a
multinomial count vector over those values, so the bootstrap costs O(resamples) whatever ``n`` is.

Failures. Timeouts, connection errors, HTTP 5xx, HTTP 429 and unparseable verdicts are retried with
exponential backoff, up to ``max_retries`` tries per judgment in all; any other HTTP status fails at
once. Either way a :class:`JudgeError` (a :class:`ConfigError`) with one line naming the endpoint, what
went wrong and the fix is raised.

Cache. With ``cache_path`` set, every judgment is appended to a JSONL file (one flush + fsync per
line) under the key ``sha256(model, messages, temperature, max_tokens)``; a later run with the same
file asks only for what is not there, so an interrupted evaluation resumes where it stopped and the
judgments made before a failure are kept. A torn last line (a process killed mid-write) is ignored
and cut off before the next append.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import string
import time
from typing import Any, Iterable, Sequence
from urllib.parse import urlsplit

import httpx
import numpy as np

from lossmooth.errors import ConfigError
from lossmooth.lm.judge.server import is_loopback

VERDICTS = ("A", "B", "tie")

# assumed: the paper gives neither the judge prompt nor how ties are asked for; this asks for exactly
# one of A / B / tie, and tells the judge to ignore position and length (the usual biases of LLM judges)
DEFAULT_SYSTEM_PROMPT = (
    "You are an impartial judge of responses to user instructions. Decide which of two responses "
    "follows the instruction better: more helpful, correct, relevant and complete. Do not let the order "
    "of the responses or their length influence you. Reply with exactly one of: A, B, tie. "
    "Say tie only if neither response is better."
)
# assumed: see DEFAULT_SYSTEM_PROMPT
DEFAULT_USER_TEMPLATE = (
    "[Instruction]\n{instruction}\n\n"
    "[Response A]\n{response_a}\n[End of Response A]\n\n"
    "[Response B]\n{response_b}\n[End of Response B]\n\n"
    "Which response is better? Reply with exactly one of: A, B, tie."
)
_TEMPLATE_FIELDS = frozenset({"instruction", "response_a", "response_b"})
# exponential backoff doubles per retry; past this a longer wait does not help an overloaded server
_MAX_BACKOFF_S = 30.0
# characters stripped from both ends of a reply before matching: whitespace, quotes, brackets, markdown
# emphasis and sentence punctuation ("**A**", "[[B]]", "'tie'.", "(A)")
_VERDICT_STRIP = " \t\r\n\"'`*_()[]{}<>.,:;!?"
_VERDICT_WORDS = {"a": "A", "b": "B", "tie": "tie", "response a": "A", "response b": "B"}


GUIDED_CHOICES = ("A", "B", "tie")  # the answers a guided judge is restricted to (each parses)


def parse_verdict(text: str | None) -> str | None:
    """The verdict in a judge's reply: ``"A"``, ``"B"``, ``"tie"``, or ``None`` if unparseable.

    Rule: casefold, strip whitespace, quotes, brackets, ``*``/``_``/backticks and ``.,:;!?`` from both
    ends, collapse inner whitespace; what is left must be exactly ``a``, ``b``, ``tie``, ``response a``
    or ``response b``. Nothing is guessed from a longer answer ("A is better", "A or B") -- the prompt
    asks for one word, and a reply that is not one is retried, then reported.

    >>> [parse_verdict(t) for t in ["A", " b.", '"Tie"', "**Response A**", "[[B]]", "maybe", "A or B", None]]
    ['A', 'B', 'tie', 'A', 'B', None, None, None]
    """
    if not isinstance(text, str):
        return None
    core = " ".join(text.casefold().strip(_VERDICT_STRIP).split())
    return _VERDICT_WORDS.get(core)


@dataclasses.dataclass(frozen=True)
class JudgeConfig:
    """Where and how to ask the judge. Paper: ``temperature=0``, ``max_tokens=8``,
    ``max_response_chars=12000``.

    ``base_url`` is the OpenAI-style base (``http://127.0.0.1:8000/v1``; the client POSTs to
    ``{base_url}/chat/completions``); ``model`` is the served model's name; ``api_key_env`` names an
    environment variable holding a bearer token ('' = no key). ``system_prompt`` ('' = no system
    message, for judges whose chat template has no system role) and ``user_template`` (with
    ``{instruction}``, ``{response_a}``, ``{response_b}``; literal braces doubled) make the two messages.
    ``timeout_s`` bounds each network step of one try; ``max_retries`` is the number of tries per
    judgment in all (first try included); retry ``k`` waits ``backoff_s * 2**(k-1)`` seconds (at most
    30 s, longer if a 429/503 asks so with Retry-After). ``cache_path`` is the JSONL judgment cache
    (``None``: no cache).
    """

    base_url: str
    model: str
    api_key_env: str = ""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    user_template: str = DEFAULT_USER_TEMPLATE
    temperature: float = 0.0
    max_tokens: int = 8
    max_response_chars: int = 12000
    timeout_s: float = 60.0  # assumed: a judgment of 8 tokens takes well under a minute on a served model
    max_retries: int = 3  # assumed: enough to ride out a restarting server without hiding a dead one
    backoff_s: float = 1.0  # assumed
    cache_path: str | None = None
    guided_choice: bool = False

    def __post_init__(self):
        def bad(field, why):
            raise ConfigError(f"JudgeConfig.{field}: {why}")

        if not isinstance(self.base_url, str):
            bad("base_url", f"must be a string like http://127.0.0.1:8000/v1, got {self.base_url!r}")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            bad("base_url", f"'{self.base_url}' is not an http(s) URL; use e.g. http://127.0.0.1:8000/v1")
        if parts.query or parts.fragment:
            bad("base_url", f"'{self.base_url}' has a query or fragment; give the bare base, e.g. "
                "http://127.0.0.1:8000/v1")
        if self.base_url.rstrip("/").endswith("/chat/completions"):
            bad("base_url", f"'{self.base_url}' is the endpoint itself; give its base ending in /v1")
        if not isinstance(self.model, str) or not self.model.strip():
            bad("model", "must name the served judge model (see GET {base_url}/models)")
        if not isinstance(self.api_key_env, str) or (self.api_key_env and not self.api_key_env.isidentifier()):
            bad("api_key_env", f"{self.api_key_env!r} is not an environment variable name; use e.g. "
                "OPENAI_API_KEY or '' for none")
        if not isinstance(self.system_prompt, str):
            bad("system_prompt", "must be a string ('' for no system message)")
        if not isinstance(self.user_template, str):
            bad("user_template", "must be a string with {instruction}, {response_a} and {response_b}")
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(self.user_template) if f is not None}
            self.user_template.format(instruction="", response_a="", response_b="")
        except (ValueError, KeyError, IndexError, AttributeError) as e:
            bad("user_template", f"is not a valid format string ({e!s}); use {{instruction}}, {{response_a}}, "
                "{response_b} and double literal braces")
        if fields != _TEMPLATE_FIELDS:
            missing, extra = sorted(_TEMPLATE_FIELDS - fields), sorted(fields - _TEMPLATE_FIELDS)
            bad("user_template", f"needs exactly the fields {{instruction}}, {{response_a}}, {{response_b}} "
                f"(missing: {missing or 'none'}; unknown: {extra or 'none'}); double literal braces")
        if not _is_number(self.temperature) or not 0 <= self.temperature <= 2:
            bad("temperature", f"{self.temperature!r} must be a number in [0, 2] (paper: 0)")
        if not _is_int(self.max_tokens) or self.max_tokens < 1:
            bad("max_tokens", f"{self.max_tokens!r} must be an integer >= 1 (paper: 8)")
        if not _is_int(self.max_response_chars) or self.max_response_chars < 1:
            bad("max_response_chars", f"{self.max_response_chars!r} must be an integer >= 1 (paper: 12000)")
        if not _is_number(self.timeout_s) or not self.timeout_s > 0 or math.isinf(self.timeout_s):
            bad("timeout_s", f"{self.timeout_s!r} must be a finite number of seconds > 0")
        if not _is_int(self.max_retries) or self.max_retries < 1:
            bad("max_retries", f"{self.max_retries!r} must be an integer >= 1 (tries per judgment, first included)")
        if not _is_number(self.backoff_s) or not 0 <= self.backoff_s <= _MAX_BACKOFF_S:
            bad("backoff_s", f"{self.backoff_s!r} must be a number of seconds in [0, {_MAX_BACKOFF_S:g}]")
        if not isinstance(self.guided_choice, bool):
            bad("guided_choice", f"{self.guided_choice!r} must be true or false")
        if self.cache_path is not None and (not isinstance(self.cache_path, str) or not self.cache_path):
            bad("cache_path", f"{self.cache_path!r} must be a file path or None (no cache)")

    @property
    def endpoint(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def messages(self, instruction: str, response_a: str, response_b: str) -> list[dict]:
        """The chat messages of one judgment (responses are used as given; truncate them first)."""
        user = self.user_template.format(instruction=instruction, response_a=response_a, response_b=response_b)
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [{"role": "user", "content": user}]

    def cache_key(self, messages: list[dict]) -> str:
        """sha256 of the canonical JSON of (model, messages, temperature, max_tokens): what fixes a
        greedy judgment; the endpoint is not part of it, so a moved server reuses its cache."""
        blob = json.dumps({"model": self.model, "messages": messages, "temperature": float(self.temperature),
                           "max_tokens": int(self.max_tokens),
                           **({"guided_choice": list(GUIDED_CHOICES)} if self.guided_choice else {})},
                          sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)


class JudgeError(ConfigError):
    """The judge endpoint failed (after its retries, or at once for a non-retryable status): one line
    naming the endpoint, what went wrong and the fix. ``reason`` is the short cause, ``tries`` how many
    requests were made for the failing judgment. A run whose judge fails keeps its directory
    (``keep_run``): its training, replies and cached judgments resume with the same command."""

    keep_run = True

    def __init__(self, endpoint: str, reason: str, fix: str, tries: int = 1):
        self.endpoint, self.reason, self.fix, self.tries = endpoint, reason, fix, tries
        super().__init__(f"judge {endpoint}: {reason}; {fix}")


@dataclasses.dataclass(frozen=True)
class Judgment:
    """One verdict: ``verdict`` in ``VERDICTS``, the judge's raw reply, and whether it came from the cache."""

    verdict: str
    raw: str
    cached: bool


class JudgmentCache:
    """Append-only JSONL cache of judgments: one ``{"key", "verdict", "raw", "model", "at"}`` per line.

    Each :meth:`put` writes one whole line, flushes and fsyncs, so a judgment is on disk before the next
    request goes out. Loading skips a torn last line (one that does not parse -- a process killed
    mid-write); the first append cuts it off so the file stays valid. A bad line elsewhere means the
    file was edited or shared by concurrent writers, and is a :class:`ConfigError` naming the line.
    """

    def __init__(self, path: str):
        self.path = path
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise ConfigError(f"JudgeConfig.cache_path: folder {folder} does not exist; create it first")
        if os.path.isdir(path):
            raise ConfigError(f"JudgeConfig.cache_path: {path} is a folder; give a file name")
        self._records: dict[str, dict] = {}
        self._good_end = 0  # byte offset just past the last valid line
        self._torn_tail = False
        self._fh = None
        if os.path.exists(path):
            self._load()

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
        except OSError as e:
            raise ConfigError(f"JudgeConfig.cache_path: cannot read {self.path} ({e.strerror or e})") from None
        lines = data.split(b"\n")
        lines = [ln + b"\n" for ln in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
        last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
        offset = 0
        for i, line in enumerate(lines):
            rec = _parse_record(line)
            if rec is None and line.strip():
                if i == last:
                    self._torn_tail = True  # killed mid-write: ignore it and cut it off on the next append
                    break
                raise ConfigError(f"JudgeConfig.cache_path: {self.path} line {i + 1} is not a judgment record; "
                                  "delete that line (or the whole file to judge afresh)")
            offset += len(line)
            if rec is not None:
                self._records[rec["key"]] = rec
                self._good_end = offset

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> dict | None:
        return self._records.get(key)

    def put(self, key: str, verdict: str, raw: str, model: str) -> None:
        rec = {"key": key, "verdict": verdict, "raw": raw, "model": model, "at": round(time.time(), 3)}
        if self._fh is None:
            self._open_for_append()
        # one write per line: a crash leaves at most one torn line, at the end
        self._fh.write((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._records[key] = rec

    def _open_for_append(self) -> None:
        try:
            fh = open(self.path, "ab")
            if self._torn_tail or (fh.tell() > self._good_end):
                fh.truncate(self._good_end)  # drop the torn tail (and blank lines after the last record)
                self._torn_tail = False
            if self._good_end:
                with open(self.path, "rb") as rd:
                    rd.seek(self._good_end - 1)
                    if rd.read(1) != b"\n":  # a complete record whose newline was never written
                        fh.write(b"\n")
        except OSError as e:
            raise ConfigError(f"JudgeConfig.cache_path: cannot write {self.path} ({e.strerror or e})") from None
        self._fh = fh

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _parse_record(line: bytes) -> dict | None:
    try:
        rec = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not (isinstance(rec, dict) and isinstance(rec.get("key"), str) and rec.get("verdict") in VERDICTS):
        return None
    return rec


class JudgeClient:
    """HTTP client for one judge endpoint: retries, verdict parsing and the judgment cache.

    ``http`` may be a ready ``httpx.Client`` (its timeout and headers are then the caller's). Proxy
    settings from the environment are ignored for a loopback ``base_url``: a proxy cannot reach this
    machine's loopback server. Counters: ``requests_sent`` (HTTP attempts), ``new_judgments``,
    ``cache_hits``.
    """

    def __init__(self, cfg: JudgeConfig, http: httpx.Client | None = None):
        if not isinstance(cfg, JudgeConfig):
            raise ConfigError(f"JudgeClient: cfg must be a JudgeConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        headers = {"Content-Type": "application/json"}
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env, "")
            if not key:
                raise ConfigError(f"JudgeConfig.api_key_env: environment variable {cfg.api_key_env} is not set; "
                                  f"export it or set api_key_env='' for a server without a key")
            headers["Authorization"] = f"Bearer {key}"
        self._own_http = http is None
        self._http = http if http is not None else httpx.Client(
            timeout=httpx.Timeout(cfg.timeout_s), headers=headers,
            trust_env=not is_loopback(urlsplit(cfg.base_url).hostname or ""))
        self.cache = JudgmentCache(cfg.cache_path) if cfg.cache_path else None
        self.requests_sent = 0
        self.new_judgments = 0
        self.cache_hits = 0

    def check_reachable(self) -> None:
        """``GET {base_url}/models`` with the same bounded retries: a judge that cannot be reached is
        reported before any work that needs it (a 200 naming another model is reported too)."""
        cfg = self.cfg
        url = cfg.base_url.rstrip("/") + "/models"
        failure = None
        for attempt in range(1, cfg.max_retries + 1):
            if attempt > 1:
                time.sleep(min(cfg.backoff_s * 2 ** (attempt - 2), _MAX_BACKOFF_S))
            try:
                resp = self._http.get(url)
            except httpx.TimeoutException:
                failure = "timed out"
                continue
            except httpx.TransportError as e:
                failure = f"unreachable ({type(e).__name__}: {e})"
                continue
            if resp.status_code >= 500:
                failure = f"HTTP {resp.status_code}"
                continue
            if resp.status_code != 200:
                return  # a server without the models route (some proxies): the first judgment will tell
            try:
                served = [m.get("id") for m in resp.json().get("data", [])]
            except (ValueError, AttributeError):
                return
            if served and cfg.model not in served:
                raise JudgeError(url, f"serves {', '.join(map(str, served))}, not {cfg.model!r}",
                                 "set the judge model name to one it serves")
            return
        raise JudgeError(url, f"{failure} after {cfg.max_retries} tries",
                         "start the judge server (e.g. vllm serve ...) or fix base_url", tries=cfg.max_retries)

    def close(self) -> None:
        if self._own_http:
            self._http.close()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> "JudgeClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def judge(self, messages: list[dict]) -> Judgment:
        """The verdict for ``messages``: from the cache if there, else asked (with retries) and cached."""
        key = self.cfg.cache_key(messages)
        if self.cache is not None:
            rec = self.cache.get(key)
            if rec is not None:
                self.cache_hits += 1
                return Judgment(rec["verdict"], rec.get("raw", ""), cached=True)
        verdict, raw = self._ask(messages)
        if self.cache is not None:
            self.cache.put(key, verdict, raw, self.cfg.model)
        self.new_judgments += 1
        return Judgment(verdict, raw, cached=False)

    def _ask(self, messages: list[dict]) -> tuple[str, str]:
        cfg = self.cfg
        payload = {"model": cfg.model, "messages": messages, "temperature": float(cfg.temperature),
                   "max_tokens": int(cfg.max_tokens)}
        if cfg.guided_choice:
            payload["guided_choice"] = list(GUIDED_CHOICES)
        failure = None  # (reason, fix) of the last retryable failure
        retry_after = 0.0
        for attempt in range(1, cfg.max_retries + 1):
            if attempt > 1:
                time.sleep(min(max(cfg.backoff_s * 2 ** (attempt - 2), retry_after), _MAX_BACKOFF_S))
            retry_after = 0.0
            self.requests_sent += 1
            try:
                resp = self._http.post(cfg.endpoint, json=payload)
            except httpx.TimeoutException:
                failure = ("timed out", f"check that the server is up and not overloaded, or raise timeout_s "
                           f"(now {cfg.timeout_s:g} s) or max_retries")
                continue
            except httpx.TransportError as e:
                failure = (f"connection failed ({type(e).__name__}: {e})",
                           "start the judge server or fix base_url")
                continue
            status = resp.status_code
            if status == 429 or status >= 500:
                retry_after = _retry_after_s(resp)
                what = "rate limited" if status == 429 else _server_message(resp)
                failure = (f"HTTP {status} ({what})" if what else f"HTTP {status}",
                           "lower the request rate or raise max_retries / backoff_s" if status == 429 else
                           "check the judge server's log, or raise max_retries")
                continue
            if status != 200:
                raise JudgeError(cfg.endpoint, _status_reason(resp), _status_fix(status, cfg), tries=attempt)
            raw = _completion_text(resp, cfg.endpoint, attempt)
            verdict = parse_verdict(raw)
            if verdict is None:
                failure = (f"unparseable verdict {_clip(raw)!r}",
                           "the judge must reply A, B or tie: adjust system_prompt / user_template, raise "
                           "max_tokens, or use an instruction-following judge model")
                continue
            return verdict, raw
        reason, fix = failure
        raise JudgeError(cfg.endpoint, f"{reason} after {cfg.max_retries} tries", fix, tries=cfg.max_retries)


def _clip(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "..."


def _server_message(resp: httpx.Response) -> str:
    """The error message an OpenAI-style server put in its body (``error.message``, ``message`` or
    ``detail``), else the start of the body."""
    try:
        body = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return _clip(resp.text, 120)
    if isinstance(body, dict):
        err = body.get("error")
        for cand in ((err or {}).get("message") if isinstance(err, dict) else err, body.get("message"),
                     body.get("detail")):
            if isinstance(cand, str) and cand:
                return _clip(cand, 120)
    return _clip(resp.text, 120)


def _retry_after_s(resp: httpx.Response) -> float:
    try:
        return max(0.0, float(resp.headers.get("Retry-After", "")))
    except ValueError:
        return 0.0  # absent, or an HTTP date (servers of this protocol send seconds)


def _status_reason(resp: httpx.Response) -> str:
    msg = _server_message(resp)
    return f"HTTP {resp.status_code} ({msg})" if msg else f"HTTP {resp.status_code}"


def _status_fix(status: int, cfg: JudgeConfig) -> str:
    if status in (401, 403):
        return (f"set the server's API key in the environment variable named by api_key_env "
                f"(now {cfg.api_key_env or 'none'})")
    if status == 404:
        return f"check that base_url ends in /v1 and that model '{cfg.model}' is served (GET {cfg.base_url}/models)"
    if 300 <= status < 400:
        return "point base_url at the server itself, not at a URL that redirects"
    return "fix the request the server refuses (model, max_tokens, the prompts), then run again"


def _completion_text(resp: httpx.Response, endpoint: str, attempt: int) -> str:
    """``choices[0].message.content`` of a 200 reply; a body that is not a chat completion means the
    URL is not an OpenAI-compatible server (not retried). A null content counts as empty text."""
    try:
        body = resp.json()
        content = body["choices"][0]["message"].get("content")
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError,
            AttributeError):
        raise JudgeError(endpoint, f"HTTP 200 but the body is not a chat completion ({_clip(resp.text, 80)!r})",
                         "point base_url at an OpenAI-compatible server (e.g. vLLM's, ending in /v1)",
                         tries=attempt) from None
    if content is None:
        return ""
    if not isinstance(content, str):
        raise JudgeError(endpoint, f"HTTP 200 but message.content is {type(content).__name__}, not text",
                         "point base_url at an OpenAI-compatible server (e.g. vLLM's, ending in /v1)",
                         tries=attempt)
    return content


@dataclasses.dataclass(frozen=True)
class ItemRecord:
    """One judged item. ``verdict_cand_first`` is the verdict with A = candidate, ``verdict_ref_first``
    with A = reference; the ``score_*`` are the candidate's per-order scores (1 / 0.5 / 0), ``score``
    their mean, ``outcome`` win / tie / loss, ``consistent`` whether both orders scored the same."""

    item_id: Any
    verdict_cand_first: str
    verdict_ref_first: str
    score_cand_first: float
    score_ref_first: float
    score: float
    outcome: str
    consistent: bool
    candidate_truncated: bool
    reference_truncated: bool


@dataclasses.dataclass(frozen=True)
class JudgeSummary:
    """Counts over items (see the module docstring for the scoring): ``win_rate`` is the mean item
    score and ``[ci_low, ci_high]`` its ``ci_level`` percentile-bootstrap interval (``ci_method``).
    ``inconsistent`` counts position-inconsistent items. ``new_judgments`` were asked in this call,
    ``cached_judgments`` read from the cache."""

    n: int
    wins: int
    ties: int
    losses: int
    win_rate: float
    ci_low: float
    ci_high: float
    ci_level: float
    ci_method: str
    inconsistent: int
    new_judgments: int
    cached_judgments: int
    items: tuple[ItemRecord, ...]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SCORE_CAND_FIRST = {"A": 1.0, "tie": 0.5, "B": 0.0}  # A = candidate
_SCORE_REF_FIRST = {"B": 1.0, "tie": 0.5, "A": 0.0}  # B = candidate


def bootstrap_ci(scores: Sequence[float], level: float = 0.95, n_boot: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``scores`` (resampling items with replacement).

    Resampling ``n`` items from the empirical distribution is a multinomial draw of counts over the
    distinct values ``v_k`` with probabilities ``c_k / n``; each resample's mean is ``counts @ v / n``.
    This is the ordinary bootstrap, drawn in O(n_boot * distinct values) instead of O(n_boot * n).

    >>> bootstrap_ci([1.0, 1.0, 1.0])
    (1.0, 1.0)
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.size == 0:
        raise ConfigError("bootstrap_ci: no scores; judge at least one item")
    values, counts = np.unique(x, return_counts=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(x.size, counts / x.size, size=n_boot)
    means = draws @ values / x.size
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    # the interval of a constant sample is that constant; clip quantile round-off to the sample's range
    return float(max(lo, values[0])), float(min(hi, values[-1]))


def _check_items(items: Iterable) -> list[tuple]:
    out, seen = [], set()
    for i, it in enumerate(items):
        if not (isinstance(it, (tuple, list)) and len(it) == 4):
            raise ConfigError(f"judge_pairs: item {i} must be (item_id, instruction, candidate, reference), "
                              f"got {type(it).__name__}")
        item_id, instruction, candidate, reference = it
        for name, val in (("instruction", instruction), ("candidate", candidate), ("reference", reference)):
            if not isinstance(val, str):
                raise ConfigError(f"judge_pairs: item {item_id!r} has a {name} of type {type(val).__name__}; "
                                  "pass text")
        try:
            if item_id in seen:
                raise ConfigError(f"judge_pairs: item_id {item_id!r} appears twice; item ids must be unique")
            seen.add(item_id)
        except TypeError:
            raise ConfigError(f"judge_pairs: item {i} has an unhashable item_id {item_id!r}; use a string or "
                              "an integer") from None
        out.append((item_id, instruction, candidate, reference))
    if not out:
        raise ConfigError("judge_pairs: no items to judge; pass (item_id, instruction, candidate, reference) "
                          "tuples")
    return out


def judge_pairs(items: Iterable[tuple[Any, str, str, str]], cfg: JudgeConfig, client: JudgeClient | None = None,
                *, ci_level: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> JudgeSummary:
    """Judge every ``(item_id, instruction, candidate, reference)`` against its reference in both
    presentation orders and summarise (protocol and scoring in the module docstring).

    Judgments go out one at a time, item by item, candidate-first order before reference-first; with
    a cache each is on disk before the next is asked, so a :class:`JudgeError` part-way loses nothing.
    ``client`` (made for ``cfg``) is used and left open; without one, a client is made and closed here.
    """
    if not isinstance(cfg, JudgeConfig):
        raise ConfigError(f"judge_pairs: cfg must be a JudgeConfig, got {type(cfg).__name__}")
    if client is not None and client.cfg != cfg:
        raise ConfigError("judge_pairs: client was made for a different JudgeConfig; pass JudgeClient(cfg)")
    if not 0 < ci_level < 1:
        raise ConfigError(f"judge_pairs: ci_level={ci_level} must be in (0, 1)")
    checked = _check_items(items)
    own = client is None
    client = JudgeClient(cfg) if own else client
    new0, hits0 = client.new_judgments, client.cache_hits
    records = []
    try:
        limit = cfg.max_response_chars
        for item_id, instruction, candidate, reference in checked:
            cand, ref = candidate[:limit], reference[:limit]
            first = client.judge(cfg.messages(instruction, cand, ref)).verdict
            second = client.judge(cfg.messages(instruction, ref, cand)).verdict
            s1, s2 = _SCORE_CAND_FIRST[first], _SCORE_REF_FIRST[second]
            score = (s1 + s2) / 2  # exact in binary floating point: a multiple of 1/4
            outcome = "win" if score > 0.5 else "tie" if score == 0.5 else "loss"
            records.append(ItemRecord(item_id, first, second, s1, s2, score, outcome, s1 == s2,
                                      len(candidate) > limit, len(reference) > limit))
    finally:
        if own:
            client.close()
    scores = [r.score for r in records]
    lo, hi = bootstrap_ci(scores, ci_level, n_boot, seed)
    return JudgeSummary(
        n=len(records),
        wins=sum(r.outcome == "win" for r in records),
        ties=sum(r.outcome == "tie" for r in records),
        losses=sum(r.outcome == "loss" for r in records),
        win_rate=float(np.mean(scores)),
        ci_low=lo, ci_high=hi, ci_level=ci_level,
        ci_method=f"percentile bootstrap over items ({n_boot} resamples, seed {seed})",
        inconsistent=sum(not r.consistent for r in records),
        new_judgments=client.new_judgments - new0,
        cached_judgments=client.cache_hits - hits0,
        items=tuple(records),
    )
