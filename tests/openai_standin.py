"""A stand-in OpenAI-compatible server for contract tests: checks every request against the
documented shapes and answers as scripted, good replies or bad ones (not JSON, a body cut
short, no choices, 401, 429 with Retry-After, 500, a hang).

Documented shapes checked (an assertion error is recorded and answered with 400):
- Inception FIM: POST /v1/fim/completions with `model`, `prompt` (the prefix), `suffix`,
  `max_tokens`, `stream` (false: we never stream);
- OpenAI completions: POST /v1/completions with `model`, `prompt`, `suffix`, `max_tokens`;
- chat (OpenAI's and Inception's): POST /v1/chat/completions with `model`, `messages` as
  [{role, content}] strings, `max_tokens`;
- every request: `Authorization: Bearer KEY` when a key is expected.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-able, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    cut_short: bool = False  # announce more bytes than are sent, then close
    hang: float = 0.0  # seconds to sleep before answering


def fim_reply(texts: list[str], model: str = "m") -> Reply:
    choices = [{"index": i, "text": t, "finish_reason": "stop"} for i, t in enumerate(texts)]
    usage = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    return Reply(body={"id": "cmpl-1", "object": "text_completion", "model": model,
                       "choices": choices, "usage": usage})  # fmt: skip


def chat_reply(texts: list[str], model: str = "m") -> Reply:
    choices = [{"index": i, "message": {"role": "assistant", "content": t},
                "finish_reason": "stop"} for i, t in enumerate(texts)]  # fmt: skip
    usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    return Reply(body={"id": "chatcmpl-1", "object": "chat.completion", "model": model,
                       "choices": choices, "usage": usage})  # fmt: skip


def models_reply(*ids: str) -> Reply:
    return Reply(body={"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})


def _check(path: str, body: dict) -> None:
    assert isinstance(body.get("model"), str) and body["model"], "model must be a string"
    if path == "/v1/fim/completions":
        assert isinstance(body.get("prompt"), str), "FIM prompt (the prefix) must be a string"
        assert isinstance(body.get("suffix"), str), "FIM suffix must be a string"
        assert isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 0
        assert body.get("stream") is False, "stream must be false"
    elif path == "/v1/completions":
        assert isinstance(body.get("prompt"), str) and isinstance(body.get("suffix"), str)
        assert isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 0
    elif path == "/v1/chat/completions":
        messages = body.get("messages")
        assert isinstance(messages, list) and messages, "messages must be a non-empty list"
        for m in messages:
            assert set(m) == {"role", "content"}, f"message keys {sorted(m)}"
            assert m["role"] in ("system", "user", "assistant")
            assert isinstance(m["content"], str)
        assert isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: dict | None


class StandIn:
    """Requests seen, shape errors found; `script(method, path, body, count)` answers, where
    count is how many requests to that path came before."""

    def __init__(self, script: Callable[[str, str, dict | None, int], Reply],
                 key: str | None = None) -> None:  # fmt: skip
        self.script = script
        self.key = key
        self.seen: list[Seen] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def count(self, path: str) -> int:
        return sum(1 for s in self.seen if s.path == path)

    def answer(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path = handler.path
        with self._lock:
            count = self.count(path)
            self.seen.append(Seen(method, path, dict(handler.headers), body))
        reply = Reply(401, {"error": {"message": "bad key", "type": "auth", "code": None}})
        if self.key is None or handler.headers.get("Authorization") == f"Bearer {self.key}":
            try:
                if method == "POST":
                    _check(path, body or {})
                reply = self.script(method, path, body, count)
            except AssertionError as exc:
                self.errors.append(f"{path}: {exc}")
                reply = Reply(400, {"error": {"message": str(exc), "type": "invalid_request"}})
        if reply.hang:
            time.sleep(reply.hang)
        data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        handler.send_response(reply.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data) + (100 if reply.cut_short else 0)))
        for k, v in reply.headers.items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)
        if reply.cut_short:
            handler.wfile.flush()
            handler.close_connection = True


@contextmanager
def standin(script: Callable[[str, str, dict | None, int], Reply],
            key: str | None = None) -> Iterator[tuple[str, StandIn]]:  # fmt: skip
    """Serve the stand-in on 127.0.0.1; yields (base URL ending in /v1, the stand-in)."""
    state = StandIn(script, key)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            state.answer(self, "GET")

        def do_POST(self) -> None:  # noqa: N802
            state.answer(self, "POST")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    finally:
        server.shutdown()
        server.server_close()
