"""The HTTP side of `agent serve`: OpenAI-compatible routes over the batching engine (Starlette).

Routes (all JSON; errors in OpenAI's shape `{"error": {"message", "type", "param", "code"}}`):
- `GET /health`: the process is up (no auth). `GET /ready`: 200 once the model is loaded, with
  the number of /v1 requests in flight, else 503 (no auth).
- `GET /v1/models`: the one served model (503 until it is loaded); its entry lists
  `capabilities` (`fim`, `completions`, `score`; not `chat`, see below) so a client need not
  probe, and the
  limits `max_tokens` (at most half the model's window) and `max_n` (above them: 400).
- `POST /v1/fim/completions` (Inception's shape: `model`, `prompt` = the prefix, `suffix`,
  `max_tokens`, `stream`, and `n`, `temperature`, `stop`) and `POST /v1/completions` (OpenAI's,
  with `suffix`; `prompt` a string or a list of strings): the diffusion model fills at most
  `max_tokens` masked tokens between prompt and suffix; choices are distinct fills, best first,
  so there may be fewer than `n`.
- `POST /v1/chat/completions`: the messages rendered as text ("role: content" lines) and up to
  `max_tokens` tokens decoded after them. The models served here were not trained on chat:
  this route exists so that any client works, not because its replies are good, and it is not
  listed among the capabilities (the fix loop then sends no chat rewrites).
- `POST /v1/fim/score` (extension): `{model, prompt, suffix, fills: [str]}` ->
  `{object: "list", model, data: [{index, score}]}`, score = mean log-probability per token of
  each fill between prompt and suffix (higher is better): the loop ranks sampled fills with it.

`stream: true` is answered as server-sent events (one chunk per choice, then `[DONE]`) once the
request's fill is decoded: a diffusion model has no tokens to show before then.
With a key set, every /v1 route wants `Authorization: Bearer KEY` (else 401). One access-log
line per request: client, method, path, status, milliseconds; never a body or a header.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from greenpatch.agent.serve.engine import Engine, Sampling, finish_reason
from greenpatch.model.errors import ModelError
from greenpatch.model.sampler import Canvas
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

log = logging.getLogger("greenpatch.serve")
# What clients should use this server for. Chat is served (any OpenAI client works) but not
# listed: the models this serves are infill models, not trained on conversations, and a fix
# loop that asked them to rewrite functions by chat would wait for text that never parses.
CAPABILITIES = ["fim", "completions", "score"]


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; beyond it the answer is a 4xx, never a long wait."""

    max_body_bytes: int = 1 << 20
    max_n: int = 16
    max_tokens: int = 256
    max_prompts: int = 16  # prompts in one /v1/completions request
    max_fills: int = 64  # fills in one /v1/fim/score request


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.kind, self.param, self.code = status, kind, param, code

    def response(self) -> JSONResponse:
        error = {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": error}, status_code=self.status)


class State:
    """The model, once loaded (readiness), and the settings every route reads."""

    def __init__(self, model_id: str, api_key: str | None, limits: Limits) -> None:
        self.model_id = model_id
        self.api_key = api_key
        self.limits = limits
        self.engine: Engine | None = None
        self.load_error: str | None = None
        self.created = int(time.time())
        self.inflight = 0  # /v1 requests being answered (routes run on one event loop)


# -- request parsing ------------------------------------------------------------------------------

async def _body(request: Request, limits: Limits) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise ApiError(413, f"request body over {limits.max_body_bytes} bytes")
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > limits.max_body_bytes:
            raise ApiError(413, f"request body over {limits.max_body_bytes} bytes")
    try:
        body = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def _field(body: dict, name: str, kinds: tuple[type, ...], default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        want = " or ".join(k.__name__ for k in kinds)
        raise ApiError(400, f"'{name}' must be {want}", param=name)
    return value


def _int_in(body: dict, name: str, default: int, limit: int, *aliases: str) -> int:
    for alias in (name, *aliases):
        if body.get(alias) is not None:
            name = alias
            break
    value = _field(body, name, (int,), default)
    if value < 1:
        raise ApiError(400, f"'{name}' must be at least 1", param=name)
    if value > limit:
        raise ApiError(400, f"'{name}' is {value}, above this server's limit of {limit}",
                       param=name)  # fmt: skip
    return value


def _sampling(body: dict, limits: Limits, max_span: int) -> tuple[Sampling, int, list[str]]:
    n = _int_in(body, "n", 1, limits.max_n)
    max_tokens = _int_in(body, "max_tokens", 16, min(limits.max_tokens, max_span),
                         "max_completion_tokens")  # fmt: skip
    temperature = float(_field(body, "temperature", (int, float), 0.8))
    if not 0 <= temperature <= 2:
        raise ApiError(400, "'temperature' must be between 0 and 2", param="temperature")
    stop = _field(body, "stop", (str, list), [])
    stop = [stop] if isinstance(stop, str) else stop
    if not all(isinstance(s, str) for s in stop):
        raise ApiError(400, "'stop' must be a string or a list of strings", param="stop")
    return Sampling(n, temperature), max_tokens, [s for s in stop if s]


def _cut(text: str, stop: list[str]) -> tuple[str, bool]:
    cuts = [text.index(s) for s in stop if s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


# -- the app --------------------------------------------------------------------------------------

def create_app(load: Callable[[], Engine], model_id: str, api_key: str | None = None,
               limits: Limits | None = None) -> Starlette:  # fmt: skip
    """The ASGI app; `load` builds the engine (loads the model) on a thread at startup, so
    /health answers at once and /ready turns 200 when it is done."""
    state = State(model_id, api_key, limits or Limits())

    def loader() -> None:
        try:
            state.engine = load()
        except Exception as exc:  # noqa: BLE001 - reported by /ready and every /v1 route
            state.load_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.error("model failed to load: %s", state.load_error)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        threading.Thread(target=loader, name="model-loader", daemon=True).start()
        yield
        if state.engine is not None:
            await asyncio.to_thread(state.engine.close)

    def engine() -> Engine:
        if state.engine is None:
            detail = f"model failed to load: {state.load_error}" if state.load_error else (
                "the model is still loading")
            raise ApiError(503, detail, kind="server_error", code="not_ready")
        return state.engine

    def check_model(body: dict) -> None:
        asked = _field(body, "model", (str,), state.model_id)
        if asked != state.model_id:
            raise ApiError(404, f"model '{asked}' is not served here (this server serves "
                           f"'{state.model_id}')", param="model", code="model_not_found")

    async def fills(canvases: list[Canvas], sampling: Sampling, stop: list[str]):
        """Per canvas: [(text, finish_reason)], best first."""
        eng = engine()
        futures = [eng.infill(c, sampling) for c in canvases]
        out = []
        for future in futures:
            candidates = await asyncio.wrap_future(future)
            per = []
            for c in candidates[: sampling.n]:
                text, stopped = _cut(c.text, stop)
                per.append((text, "stop" if stopped else finish_reason(eng, c)))
            out.append(per)
        return out

    def usage(prompts: list[str], texts: list[str]) -> dict[str, int]:
        eng = engine()
        prompt = sum(eng.count_tokens(p) for p in prompts)
        completion = sum(eng.count_tokens(t) for t in texts)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}  # fmt: skip

    def answer(payload: dict, stream: bool, chunks: Callable[[dict], list[dict]]) -> Response:
        if not stream:
            return JSONResponse(payload)

        async def events():
            for chunk in chunks(payload):
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    def text_chunks(payload: dict) -> list[dict]:
        base = {k: payload[k] for k in ("id", "object", "created", "model")}
        return [{**base, "choices": [c]} for c in payload["choices"]]

    async def completions(request: Request, fim: bool) -> Response:
        body = await _body(request, state.limits)
        check_model(body)
        sampling, max_tokens, stop = _sampling(body, state.limits, engine().max_span)
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if (not isinstance(prompts, list) or not prompts
                or not all(isinstance(p, str) for p in prompts)):  # fmt: skip
            raise ApiError(400, "'prompt' must be a string" + ("" if fim else
                           " or a non-empty list of strings"), param="prompt")  # fmt: skip
        if fim and not isinstance(prompt, str):
            raise ApiError(400, "'prompt' must be a string", param="prompt")
        if len(prompts) > state.limits.max_prompts:
            raise ApiError(400, f"at most {state.limits.max_prompts} prompts per request",
                           param="prompt")  # fmt: skip
        suffix = _field(body, "suffix", (str,), "")
        stream = bool(_field(body, "stream", (bool,), False))
        results = await fills([Canvas(p, suffix, max_tokens) for p in prompts], sampling, stop)
        choices = [
            {"index": i * sampling.n + j, "text": text, "finish_reason": reason, "logprobs": None}
            for i, per in enumerate(results) for j, (text, reason) in enumerate(per)
        ]  # fmt: skip
        payload = {
            "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
            "created": int(time.time()), "model": state.model_id, "choices": choices,
            "usage": usage([p + suffix for p in prompts], [c["text"] for c in choices]),
        }  # fmt: skip
        return answer(payload, stream, text_chunks)

    async def fim_completions(request: Request) -> Response:
        return await completions(request, fim=True)

    async def plain_completions(request: Request) -> Response:
        return await completions(request, fim=False)

    async def chat_completions(request: Request) -> Response:
        body = await _body(request, state.limits)
        check_model(body)
        sampling, max_tokens, stop = _sampling(body, state.limits, engine().max_span)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str)
            and isinstance(m.get("role"), str) for m in messages
        ):  # fmt: skip
            raise ApiError(400, "'messages' must be a non-empty list of {role, content} "
                           "objects with string content", param="messages")  # fmt: skip
        stream = bool(_field(body, "stream", (bool,), False))
        prompt = "".join(f"{m['role']}: {m['content']}\n\n" for m in messages) + "assistant: "
        (results,) = await fills([Canvas(prompt, "", max_tokens)], sampling, stop)
        choices = [
            {"index": j, "message": {"role": "assistant", "content": text},
             "finish_reason": reason, "logprobs": None}
            for j, (text, reason) in enumerate(results)
        ]  # fmt: skip
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": state.model_id, "choices": choices,
            "usage": usage([prompt], [c["message"]["content"] for c in choices]),
        }  # fmt: skip

        def chat_chunks(payload: dict) -> list[dict]:
            base = {k: payload[k] for k in ("id", "created", "model")}
            return [{**base, "object": "chat.completion.chunk", "choices": [
                {"index": c["index"], "delta": c["message"], "finish_reason": c["finish_reason"]}
            ]} for c in payload["choices"]]  # fmt: skip

        return answer(payload, stream, chat_chunks)

    async def score(request: Request) -> Response:
        body = await _body(request, state.limits)
        check_model(body)
        prefix = _field(body, "prompt", (str,), "")
        suffix = _field(body, "suffix", (str,), "")
        texts = body.get("fills")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "'fills' must be a list of strings", param="fills")
        if len(texts) > state.limits.max_fills:
            raise ApiError(400, f"at most {state.limits.max_fills} fills per request",
                           param="fills")  # fmt: skip
        longest = min(state.limits.max_tokens, engine().max_span)
        if any(engine().count_tokens(t) > longest for t in texts):
            raise ApiError(400, f"a fill is over {longest} tokens", param="fills")
        scores = await asyncio.wrap_future(engine().score(prefix, suffix, texts)) if texts else []
        data = [{"index": i, "score": s} for i, s in enumerate(scores)]
        return JSONResponse({"object": "list", "model": state.model_id, "data": data})

    async def models(request: Request) -> Response:
        longest = min(state.limits.max_tokens, engine().max_span)  # 503 until loaded
        entry = {"id": state.model_id, "object": "model", "created": state.created,
                 "owned_by": "greenpatch", "capabilities": CAPABILITIES,
                 "max_tokens": longest, "max_n": state.limits.max_n}  # fmt: skip
        return JSONResponse({"object": "list", "data": [entry]})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        if state.engine is None:
            status = "failed" if state.load_error else "loading"
            return JSONResponse({"status": status, "error": state.load_error}, status_code=503)
        return JSONResponse({"status": "ready", "model": state.model_id,
                             "inflight": state.inflight})  # fmt: skip

    def guarded(handler: Callable) -> Callable:
        """Auth, then the handler; every ApiError becomes OpenAI's error shape."""

        async def route(request: Request) -> Response:
            state.inflight += 1
            try:
                if state.api_key is not None:
                    given = request.headers.get("authorization", "")
                    scheme, _, token = given.partition(" ")
                    ok = scheme.lower() == "bearer" and hmac.compare_digest(
                        token.strip().encode(), state.api_key.encode())
                    if not ok:
                        raise ApiError(401, "missing or wrong API key (Authorization: Bearer)",
                                       kind="authentication_error", code="invalid_api_key")
                return await handler(request)
            except ApiError as exc:
                return exc.response()
            except ModelError as exc:  # the model cannot do what was asked (window...)
                return ApiError(400, str(exc)).response()
            except Exception as exc:  # noqa: BLE001 - a bug: one log line, OpenAI's shape
                log.error("%s %s failed: %s: %s", request.method, request.url.path,
                          type(exc).__name__, exc)  # fmt: skip
                return ApiError(500, "internal error", kind="server_error").response()
            finally:
                state.inflight -= 1

        return route

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/v1/models", guarded(models), methods=["GET"]),
        Route("/v1/fim/completions", guarded(fim_completions), methods=["POST"]),
        Route("/v1/completions", guarded(plain_completions), methods=["POST"]),
        Route("/v1/chat/completions", guarded(chat_completions), methods=["POST"]),
        Route("/v1/fim/score", guarded(score), methods=["POST"]),
    ]
    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        message = "no such route" if status == 404 else "method not allowed on this route"
        return ApiError(status, f"{message}: {request.method} {request.url.path}").response()

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={404: not_found, 405: not_found})  # fmt: skip
    return AccessLog(app)


class AccessLog:
    """ASGI middleware: one line per HTTP request once its response has started; the path
    (never the query string, a body or a header, so never a prompt or a key)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.monotonic()
        status = 500

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client") or ("-", 0)
            log.info('%s "%s %s" %d %.1fms', client[0], scope["method"], scope["path"], status,
                     (time.monotonic() - began) * 1000)
