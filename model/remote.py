"""A model behind an OpenAI-compatible HTTP API: Inception's (Mercury), vLLM, SGLang, `agent serve`.

The transport only: fill-in-the-middle, chat and (on `agent serve`) fill scoring requests, with
- capabilities checked once at start (`connect`): the model must be listed by `GET /models`;
  FIM is `POST /fim/completions` (Inception's shape: model, prompt = the prefix, suffix,
  max_tokens, stream), else `POST /completions` with `suffix` (OpenAI's), else none (the caller
  falls back to chat). A server that lists `capabilities` for the model (`agent serve` does)
  is taken at its word; others get one probe of a single token.
- retries with exponential backoff on 429, 5xx, timeouts, dropped connections and malformed
  replies (not JSON, no choices, a body cut short), honouring Retry-After; 401/403 and other 4xx
  are not retried;
- a cap on requests in flight, shared by every thread using this object (a batch's tickets);
- token usage, added to the `Usage` each call is given.

The key is sent in the Authorization header only: it is never part of a message, an exception
or `repr` (messages are scrubbed of it in case a server echoes it back).
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from greenpatch.model.errors import ModelError

# Exit codes carried by RemoteError (the command line's convention: 2 = bad input or usage).
EXIT_USAGE = 2
EXIT_MODEL_SERVER = 4  # the model server failed during a run, after retries
KEY_VARIABLE = "GREENPATCH_API_KEY"
# The provider's usual variable when GREENPATCH_API_KEY is not set, by host; others (vLLM,
# SGLang, most gateways) follow OpenAI's client convention.
PROVIDER_KEYS = {"api.inceptionlabs.ai": "INCEPTION_API_KEY", "api.openai.com": "OPENAI_API_KEY"}
DEFAULT_PROVIDER_KEY = "OPENAI_API_KEY"
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER = 60.0


class RemoteError(ModelError):
    """One line for the user and the exit code to leave with."""

    def __init__(self, message: str, code: int = EXIT_MODEL_SERVER) -> None:
        super().__init__(message)
        self.code = code


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


@dataclass
class Usage:
    """Requests and tokens spent: one per fix in its JSON report."""

    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, usage: Any, retries: int) -> None:
        usage = usage if isinstance(usage, dict) else {}
        with self._lock:
            self.requests += 1
            self.retries += retries
            for name in ("prompt_tokens", "completion_tokens"):
                value = usage.get(name)
                if isinstance(value, int) and not isinstance(value, bool):
                    setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "retries": self.retries,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}  # fmt: skip


def is_url(model: object) -> bool:
    return isinstance(model, str) and model.startswith(("http://", "https://"))


def key_from_env(base_url: str, environ: dict[str, str]) -> str | None:
    """GREENPATCH_API_KEY, else the provider's usual variable for this host."""
    host = urlsplit(base_url).hostname or ""
    for name in (KEY_VARIABLE, PROVIDER_KEYS.get(host, DEFAULT_PROVIDER_KEY)):
        if environ.get(name):
            return environ[name]
    return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        seconds = parsed.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class RemoteModel:
    """An OpenAI-compatible server and one of the models it lists; thread-safe."""

    def __init__(
        self,
        base_url: str,
        model: str | None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 0.5,
        concurrency: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not is_url(base_url):
            raise RemoteError(f"not an http(s) URL: {base_url}", EXIT_USAGE)
        if "@" in urlsplit(base_url).netloc:
            # The URL is shown in reports, PR bodies and process lists: no secret may ride in it.
            raise RemoteError("credentials in the model URL: put the key in GREENPATCH_API_KEY "
                              "instead", EXIT_USAGE)  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.retries = retries
        self.backoff = backoff
        self.concurrency = concurrency
        self.timeout = timeout
        self._key = api_key
        self._slots = threading.BoundedSemaphore(concurrency)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout, transport=transport)
        # Set by connect():
        self.fim_route: str | None = None  # "/fim/completions", "/completions" or None
        self.can_score = False  # the /fim/score extension (agent serve)
        self.exact_spans = False  # fills exactly max_tokens masks (a diffusion model we serve)
        self.chat = True
        self.max_tokens = 4096
        self.max_n = 8

    def __repr__(self) -> str:
        return f"RemoteModel({self.base_url!r}, {self.model!r})"

    @property
    def name(self) -> str:
        return f"{self.model} @ {self.base_url}"

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    def close(self) -> None:
        self._client.close()

    # -- start-up -----------------------------------------------------------------------------

    def connect(self) -> RemoteModel:
        """List the models (unreachable server, refused key or unknown model: RemoteError with
        exit code 2) and find out what the server can do."""
        try:
            # Retried like any request: a server still loading its model answers 503.
            listing = self._request("GET", "/models", None, Usage(), start=True)
        except RemoteError as exc:
            raise RemoteError(str(exc), EXIT_USAGE) from None
        entries = [e for e in listing.get("data") or [] if isinstance(e, dict) and "id" in e]
        ids = [str(e["id"]) for e in entries]
        if self.model is None:
            if len(ids) != 1:
                raise RemoteError(f"{self.host} serves {len(ids)} models ({', '.join(ids[:8])}): "
                                  "choose one with --model-name", EXIT_USAGE)  # fmt: skip
            self.model = ids[0]
        if self.model not in ids:
            listed = ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else "")
            raise RemoteError(f"model '{self.model}' is not served by {self.host} (it lists: "
                              f"{listed or 'nothing'})", EXIT_USAGE)  # fmt: skip
        entry = entries[ids.index(self.model)]
        declared = entry.get("capabilities")
        if isinstance(declared, list):
            self.fim_route = "/fim/completions" if "fim" in declared else (
                "/completions" if "completions" in declared else None)
            self.chat = "chat" in declared
            self.can_score = self.exact_spans = "score" in declared
        else:
            self.fim_route = self._probe_fim()
        for name in ("max_tokens", "max_n"):
            value = entry.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                setattr(self, name, value)
        return self

    def _probe_fim(self) -> str | None:
        """The first FIM route that answers a one-token request; None if neither does."""
        body = {"model": self.model, "prompt": "def f():\n    return ", "suffix": "\n",
                "max_tokens": 1, "stream": False}  # fmt: skip
        for route in ("/fim/completions", "/completions"):
            try:
                self._request("POST", route, body, Usage(), retries=1, start=True)
                return route
            except RemoteError as exc:
                if getattr(exc, "status", None) in (400, 404, 405, 422, 501):
                    continue
                raise RemoteError(str(exc), EXIT_USAGE) from None
        return None

    # -- requests -----------------------------------------------------------------------------

    def fim(self, prefix: str, suffix: str, max_tokens: int, n: int, usage: Usage, *,
            temperature: float = 0.8, stop: Sequence[str] = ()) -> list[str]:  # fmt: skip
        """Fills between prefix and suffix, in the server's order."""
        if self.fim_route is None:
            raise RemoteError(f"{self.host} has no fill-in-the-middle route", EXIT_USAGE)
        body: dict[str, Any] = {
            "model": self.model, "prompt": prefix, "suffix": suffix,
            "max_tokens": min(max_tokens, self.max_tokens), "stream": False,
            "n": min(n, self.max_n), "temperature": temperature,
        }  # fmt: skip
        if stop:
            body["stop"] = list(stop)
        reply = self._request("POST", self.fim_route, body, usage)
        return [c["text"] for c in reply["choices"] if isinstance(c.get("text"), str)]

    def complete_chat(self, messages: list[dict[str, str]], max_tokens: int, usage: Usage, *,
                      n: int = 1, temperature: float = 0.2) -> list[str]:  # fmt: skip
        """The replies' texts."""
        body = {"model": self.model, "messages": messages, "stream": False,
                "max_tokens": min(max_tokens, self.max_tokens), "n": min(n, self.max_n),
                "temperature": temperature}  # fmt: skip
        reply = self._request("POST", "/chat/completions", body, usage)
        texts = []
        for choice in reply["choices"]:
            message = choice.get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                texts.append(message["content"])
        return texts

    def score(self, prefix: str, suffix: str, fills: list[str], usage: Usage) -> list[float]:
        """Mean log-probability per token of each fill (the /fim/score extension)."""
        body = {"model": self.model, "prompt": prefix, "suffix": suffix, "fills": fills}
        reply = self._request("POST", "/fim/score", body, usage, key="data")
        scores = {d.get("index"): d.get("score") for d in reply["data"] if isinstance(d, dict)}
        out = [scores.get(i) for i in range(len(fills))]
        if not all(isinstance(s, int | float) for s in out):
            raise RemoteError(f"{self.host}: /fim/score did not score every fill")
        return [float(s) for s in out]

    def _request(self, method: str, route: str, body: dict | None, usage: Usage, *,
                 retries: int | None = None, start: bool = False,
                 key: str = "choices") -> dict:  # fmt: skip
        """The reply's JSON, retried on transient trouble; RemoteError when it does not come."""
        attempts = (self.retries if retries is None else retries) + 1
        url = self.base_url + route
        problem = ""
        for attempt in range(attempts):
            try:
                with self._slots:
                    reply = self._once(method, url, route, body, key, start)
                usage.add(reply.get("usage"), attempt)
                return reply
            except _Retry as retry:
                problem = str(retry)
                if attempt + 1 < attempts:
                    time.sleep(retry.wait if retry.wait is not None
                               else min(self.backoff * 2**attempt, 8.0))  # fmt: skip
        raise RemoteError(self._scrub(f"model server {self.host}: {problem} on {method} {route}"
                                      f" (after {attempts} attempt{'s' * (attempts > 1)})"))

    def _once(self, method: str, url: str, route: str, body: dict | None, key: str,
              start: bool) -> dict:  # fmt: skip
        try:
            response = self._client.request(method, url, json=body)
        except httpx.TimeoutException:
            raise _Retry(f"no answer within {self.timeout:g}s") from None
        except httpx.TransportError as exc:
            what = "cannot connect" if isinstance(exc, httpx.ConnectError) else (
                "the connection broke off")
            if start and isinstance(exc, httpx.ConnectError):
                raise RemoteError(f"model server {self.host} is unreachable ({what})",
                                  EXIT_USAGE) from None  # fmt: skip
            raise _Retry(what) from None
        status = response.status_code
        if status in RETRY_STATUS:
            raise _Retry(f"HTTP {status}{self._detail(response)}", _retry_after(response))
        if status in (401, 403):
            raise self._error(response, f"the model server refused the key (HTTP {status}"
                              f"{self._detail(response)}): set {KEY_VARIABLE}", EXIT_USAGE)
        if status >= 400:
            raise self._error(response, f"model server {self.host}: HTTP {status} on {route}"
                              f"{self._detail(response)}")  # fmt: skip
        try:
            reply = response.json()
        except ValueError:
            raise _Retry("the reply is not JSON") from None
        if not isinstance(reply, dict):
            raise _Retry("the reply is not a JSON object")
        if method == "POST" and (not isinstance(reply.get(key), list) or not reply[key]):
            raise _Retry(f"the reply has no {key}")
        if method == "POST" and not all(isinstance(c, dict) for c in reply[key]):
            raise _Retry(f"the reply's {key} are not objects")
        return reply

    def _error(self, response: httpx.Response, message: str,
               code: int = EXIT_MODEL_SERVER) -> RemoteError:  # fmt: skip
        error = RemoteError(self._scrub(message), code)
        error.status = response.status_code  # type: ignore[attr-defined]
        return error

    def _detail(self, response: httpx.Response) -> str:
        """The server's own error message, if it sent one in OpenAI's shape (trimmed)."""
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            return ""
        message = error.get("message") if isinstance(error, dict) else error
        if not isinstance(message, str) or not message.strip():
            return ""
        return ": " + " ".join(message.split())[:200]

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text
