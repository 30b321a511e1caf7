"""`agent serve`: serve a local model (the embedded one by default) over OpenAI-compatible HTTP.

One process, one model, many clients: concurrent requests share forward passes (see
`agent.serve.engine`). The key, when there is one, is read from an environment variable
(`--api-key-env`, default GREENPATCH_API_KEY), never from the command line, where other users
of the machine could read it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer
from greenpatch.agent.commands.common import VerboseOpt, run
from greenpatch.agent.errors import AgentError

DEFAULT_KEY_ENV = "GREENPATCH_API_KEY"
DEVICES = ("auto", "cpu", "cuda")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", metavar="DIR", help="Model directory (default: the embedded model)."
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one, printed).")
    ] = 8000,
    device: Annotated[
        str, typer.Option("--device", metavar="auto|cpu|cuda", help="Where the model runs.")
    ] = "auto",
    max_batch: Annotated[
        int,
        typer.Option(
            "--max-batch", min=1,
            help="Rows (requests x samples) decoded in one batch at most; 1 = one request at a "
            "time.",
        ),
    ] = 64,
    context: Annotated[
        int, typer.Option("--context", min=16, help="Tokens of context around a fill at most.")
    ] = 256,
    cache_every: Annotated[
        int | None,
        typer.Option(
            "--cache-every", min=1, metavar="N",
            help="A full pass every N passes of a request, only its fill's tokens in between "
            "against the cached context (approximate, fewer operations; default: every pass "
            "full).",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads", min=1,
            help="torch threads on CPU (default: torch's choice; on a CPU shared with other "
            "work, 1 avoids threads spinning against each other).",
        ),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            "--api-key-env", metavar="VAR",
            help=f"Environment variable holding the bearer key clients must send (default "
            f"{DEFAULT_KEY_ENV}; unset there: no auth).",
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve a model on /v1/models, /v1/fim/completions, /v1/completions, /v1/chat/completions
    and /v1/fim/score, with /health and /ready. Stops gracefully on SIGTERM or Ctrl-C.

    Exit codes: 0 stopped, 2 bad input or usage (model, device, port, key variable).
    """

    def body() -> int:
        if device not in DEVICES:
            raise AgentError(f"--device must be one of {', '.join(DEVICES)}, got '{device}'")
        key = os.environ.get(api_key_env or DEFAULT_KEY_ENV) or None
        if api_key_env is not None and key is None:
            raise AgentError(f"--api-key-env {api_key_env}: that environment variable is not set")
        if model is not None and not (model / "config.json").is_file():
            raise AgentError(f"not a model directory (no config.json): {model}")
        # Heavy imports (torch, the server) only for a real run.
        import torch
        import uvicorn
        from greenpatch.agent.serve.app import create_app
        from greenpatch.agent.serve.engine import Engine
        from greenpatch.model.checkpoint import load_model

        if device == "cuda" and not torch.cuda.is_available():
            raise AgentError("--device cuda: no CUDA device is available here")
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            sock = socket.create_server((host, port), family=_family(host))
        except OSError as exc:
            raise AgentError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        model_id = "greenpatch-embedded" if model is None else model.resolve().name

        def load() -> Engine:
            lm = load_model(model, device=None if device == "auto" else device)
            return Engine(lm, max_batch=max_batch, context=context, cache_every=cache_every)

        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(message)s")  # fmt: skip
        if key is None and host not in LOOPBACK:
            logging.getLogger("greenpatch.serve").warning(
                "listening on %s without a key: anyone who reaches it can use the model", host)
        app = create_app(load, model_id, api_key=key)
        config = uvicorn.Config(app, log_config=None, access_log=False,
                                timeout_graceful_shutdown=30)  # fmt: skip
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        print(f"serving {model_id} on http://{shown}:{bound}/v1", file=sys.stderr, flush=True)
        # uvicorn turns SIGTERM and SIGINT into a graceful shutdown: no new connections,
        # requests in flight finish, then the engine drains its queue.
        _server_class()(config).run(sockets=[sock])
        return 0

    run(verbose, body)


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            """uvicorn re-raises SIGTERM once it has shut down, so the process would die "by
            the signal"; a server that stopped as asked exits 0 instead."""
            signals = (signal.SIGINT, signal.SIGTERM)
            previous = {s: signal.signal(s, self.handle_exit) for s in signals}
            try:
                yield
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)

    return Server


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
