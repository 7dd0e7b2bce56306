"""A minimal OpenAI-compatible chat-completions server around one in-process model.

It speaks the subset of the OpenAI REST protocol that vLLM serves and that the pairwise judge
(:mod:`lossmooth.lm.judge.client`) uses, so a fine-tuned decoder can be served and evaluated with the same
client code as an external vLLM endpoint, and so tests can run the judge against a real HTTP server.

Endpoints (all JSON, UTF-8):

- ``POST /v1/chat/completions`` with ``{"model"?, "messages": [{"role", "content"}, ...],
  "max_tokens"? (or "max_completion_tokens"), "temperature"?, "seed"?, "n"?: 1, "stream"?: false}``
  answers ``{"id", "object": "chat.completion", "created", "model", "choices": [{"index": 0,
  "message": {"role": "assistant", "content"}, "finish_reason"}], "usage": {"prompt_tokens",
  "completion_tokens", "total_tokens"}}``. ``content`` may be a string or a list of
  ``{"type": "text", "text"}`` parts (joined). ``finish_reason`` is ``"length"`` when the model
  produced ``max_tokens`` tokens and ``"stop"`` otherwise. ``"guided_choice"``: a list of strings
  (vLLM's extra parameter) restricts the answer to one of them; the model then picks the most likely
  choice (``respond`` is called with ``guided_choice=[...]``).
- ``GET /v1/models`` answers ``{"object": "list", "data": [{"id", "object": "model", "created",
  "owned_by"}]}``; ``GET /health`` answers 200 with an empty JSON object (as vLLM does).

Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``: a malformed request
is 400 (``BadRequestError``), an unknown path or another model name 404 (``NotFoundError``), and an
exception raised by the model 500 (``InternalServerError``) carrying the exception's message.

The model is the callable ``respond(messages, max_tokens, temperature, seed) -> (text,
prompt_tokens, completion_tokens)``; requests are served on threads but, by default, pass through
one lock, since a single model (one accelerator, one set of compiled programs) serves them.
"""
from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from lossmooth.errors import ConfigError

Respond = Callable[[list, int, float, "int | None"], "tuple[str, int, int]"]

_ROLES = ("system", "user", "assistant", "tool", "developer")
# a request body larger than this is refused before it is read (prompts of the LM setting are a few KB)
_MAX_BODY_BYTES = 16 * 1024 * 1024


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _RequestError(Exception):
    """A request the server refuses: HTTP status, OpenAI error type, message, offending parameter."""

    def __init__(self, status: int, kind: str, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.param = status, kind, message, param


def _bad(message: str, param: str | None = None) -> _RequestError:
    return _RequestError(400, "BadRequestError", message, param)


def _text_of(content: Any, where: str) -> str:
    """A message's text: a string, or the concatenation of a list of ``{"type": "text", "text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise _bad(f"{where}.content[{j}] must be {{'type': 'text', 'text': <string>}}", where)
            parts.append(part["text"])
        return "".join(parts)
    raise _bad(f"{where}.content must be a string or a list of text parts", where)


def _int_field(body: dict, name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int subclass in Python; JSON true is not a token count
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(f"'{name}' must be an integer >= {minimum}, got {value!r}", name)
    return value


def parse_chat_request(body: Any, model_name: str, default_max_tokens: int) -> dict:
    """Validate a decoded chat-completions request body; returns the normalised fields
    ``messages`` (list of ``{"role", "content": str}``), ``max_tokens``, ``temperature``, ``seed``.

    Raises the server's request error (400, or 404 for a model this server does not serve).
    """
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("'model' must be a string", "model")
    if model is not None and model != model_name:
        # vLLM answers 404 for a model it does not serve; the client then knows to fix its model name
        raise _RequestError(404, "NotFoundError", f"The model `{model}` does not exist; this server serves "
                            f"`{model_name}`", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list of {'role', 'content'} objects", "messages")
    clean = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(f"{where} must be an object with 'role' and 'content'", "messages")
        if m.get("role") not in _ROLES:
            raise _bad(f"{where}.role must be one of {', '.join(_ROLES)}, got {m.get('role')!r}", "messages")
        clean.append({"role": m["role"], "content": _text_of(m.get("content"), where)})
    max_tokens = _int_field(body, "max_tokens", 1)
    if max_tokens is None:
        max_tokens = _int_field(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = default_max_tokens
    temperature = body.get("temperature", 1.0)  # OpenAI's default
    if temperature is None:
        temperature = 1.0
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise _bad(f"'temperature' must be a number in [0, 2], got {temperature!r}", "temperature")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _bad(f"'seed' must be an integer or null, got {seed!r}", "seed")
    n = body.get("n", 1)
    if n not in (1, None):
        raise _bad(f"only n=1 is supported, got {n!r}", "n")
    if body.get("stream"):
        raise _bad("stream=true is not supported; request a whole completion", "stream")
    choice = body.get("guided_choice")
    if choice is not None and (not isinstance(choice, list) or not choice
                               or not all(isinstance(c, str) and c for c in choice)):
        raise _bad(f"'guided_choice' must be a non-empty list of non-empty strings, got {choice!r}", "guided_choice")
    return {"messages": clean, "max_tokens": max_tokens, "temperature": float(temperature), "seed": seed,
            "guided_choice": choice}


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps the client's connection alive between judgments; every reply sets Content-Length
    protocol_version = "HTTP/1.1"
    # headers and body go out as two writes; with Nagle on, the body waits for the client's delayed ACK
    # (~40 ms per request on Linux), which would dominate an 8-token judgment
    disable_nagle_algorithm = True
    server: "_HTTPServer"

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        # the default writes one stderr line per request; the evaluation's own logs are enough
        pass

    def _send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, err: _RequestError) -> None:
        self._send_json(err.status, {"error": {"message": err.message, "type": err.kind, "param": err.param,
                                               "code": err.status}})

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    def do_GET(self):  # noqa: N802 - the stdlib's name
        owner = self.server.owner
        path = self._path()
        if path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [
                {"id": owner.model_name, "object": "model", "created": owner.created, "owned_by": "lossmooth"}]})
        elif path == "/health":
            self._send_json(200, {})
        else:
            self._send_error(_RequestError(404, "NotFoundError", f"no route GET {path or '/'}"))

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # stdlib http.server does not decode chunked bodies; the unread bytes would poison the connection
            self.close_connection = True
            raise _bad("chunked request bodies are not supported; send Content-Length")
        try:
            n = int(length)
        except (TypeError, ValueError):
            self.close_connection = True
            raise _bad("a Content-Length header is required") from None
        if n < 0 or n > _MAX_BODY_BYTES:
            self.close_connection = True
            raise _RequestError(413, "BadRequestError", f"request body of {n} bytes exceeds the limit of "
                                f"{_MAX_BODY_BYTES} bytes")
        return self.rfile.read(n)

    def do_POST(self):  # noqa: N802 - the stdlib's name
        owner = self.server.owner
        try:
            raw = self._read_body()
            if self._path() != "/v1/chat/completions":
                raise _RequestError(404, "NotFoundError", f"no route POST {self._path() or '/'}")
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise _bad(f"request body is not valid JSON ({e})") from None
            req = parse_chat_request(body, owner.model_name, owner.default_max_tokens)
        except _RequestError as err:
            self._send_error(err)
            return
        try:
            with owner._lock:
                extra = {} if req["guided_choice"] is None else {"guided_choice": req["guided_choice"]}
                out = owner.respond(req["messages"], req["max_tokens"], req["temperature"], req["seed"], **extra)
            text, prompt_tokens, completion_tokens = out
            if not isinstance(text, str):
                raise TypeError(f"respond() returned text of type {type(text).__name__}, expected str")
            prompt_tokens, completion_tokens = int(prompt_tokens), int(completion_tokens)
        except Exception as e:  # noqa: BLE001 - any model failure becomes the client's 500, not a dead thread
            msg = str(e) or type(e).__name__
            self._send_error(_RequestError(500, "InternalServerError", msg))
            return
        self._send_json(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": owner.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None,
                         "finish_reason": "length" if completion_tokens >= req["max_tokens"] else "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })


class _HTTPServer(ThreadingHTTPServer):
    # daemon request threads: a client that hangs up mid-request never blocks shutdown
    daemon_threads = True
    owner: "ChatServer"


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class ChatServer:
    """Serve ``respond`` as an OpenAI-compatible chat-completions endpoint (see the module docstring).

    ``port=0`` picks a free port; :attr:`base_url` is ``http://host:port/v1``, what
    :class:`lossmooth.lm.judge.client.JudgeConfig` takes. Use it as a context manager (serves on a background
    thread, shuts down on exit) or call :meth:`serve_forever` in the foreground (the CLI). The server
    has no authentication, so a non-loopback ``host`` needs ``allow_remote=True``. ``serialize``
    passes requests through one lock (one model). ``default_max_tokens`` applies when a request
    names no ``max_tokens``.
    """

    def __init__(self, respond: Respond, model_name: str, host: str = "127.0.0.1", port: int = 0, *,
                 allow_remote: bool = False, serialize: bool = True, default_max_tokens: int = 256):
        if not callable(respond):
            raise ConfigError("ChatServer: respond must be callable (messages, max_tokens, temperature, seed) "
                              "-> (text, prompt_tokens, completion_tokens)")
        if not isinstance(model_name, str) or not model_name.strip():
            raise ConfigError("ChatServer: model_name must be a non-empty string (the name clients send as 'model')")
        if not is_loopback(host) and not allow_remote:
            raise ConfigError(f"ChatServer: host '{host}' is not a loopback address and the server has no "
                              "authentication; serve on 127.0.0.1 or pass allow_remote=True")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"ChatServer: port={port!r} must be an integer in [0, 65535] (0 picks a free port)")
        if isinstance(default_max_tokens, bool) or not isinstance(default_max_tokens, int) or default_max_tokens < 1:
            raise ConfigError(f"ChatServer: default_max_tokens={default_max_tokens!r} must be an integer >= 1")
        self.respond = respond
        self.model_name = model_name
        self.default_max_tokens = default_max_tokens
        self.created = int(time.time())
        # a real lock when serializing; a no-op context otherwise
        self._lock = threading.Lock() if serialize else _NoLock()
        bind = host.strip("[]")
        cls = _HTTPServer6 if ":" in bind else _HTTPServer
        try:
            self._httpd = cls((bind, port), _Handler)
        except OSError as e:
            raise ConfigError(f"ChatServer: cannot listen on {host}:{port} ({e.strerror or e}); choose another "
                              "port or port=0 for a free one") from None
        self._httpd.owner = self
        self._thread: threading.Thread | None = None
        self._serving = False  # a serve_forever loop is running (background thread or foreground)
        self._closed = False

    @property
    def host(self) -> str:
        return self._httpd.server_address[0]

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://host:port/v1``, the OpenAI-style base URL clients append ``/chat/completions`` to."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> "ChatServer":
        """Serve on a background daemon thread; returns self."""
        if self._closed:
            raise ConfigError("ChatServer: the server is closed; create a new one")
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"ChatServer:{self.port}", daemon=True)
            self._serving = True
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`close` (from another thread) or KeyboardInterrupt."""
        if self._closed:
            raise ConfigError("ChatServer: the server is closed; create a new one")
        if self._serving:
            raise ConfigError("ChatServer: already serving (started as a context manager or by start())")
        self._serving = True
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self._serving = False
            self._httpd.server_close()
            self._closed = True

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._serving:
            self._httpd.shutdown()  # returns once serve_forever's loop has exited
            self._serving = False
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self._closed:
            self._httpd.server_close()
            self._closed = True

    def __enter__(self) -> "ChatServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
