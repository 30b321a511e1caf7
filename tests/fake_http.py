"""A local JSON HTTP server for fakes of remote services (GitHub) that check each request."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# handle(request, method) -> (status, payload) or (status, payload, extra headers)
Handle = Callable[[BaseHTTPRequestHandler, str], tuple]


@contextmanager
def json_server(handle: Handle) -> Iterator[str]:
    """Serve `handle` on 127.0.0.1; yields the base URL, shuts down on exit."""

    class Handler(BaseHTTPRequestHandler):
        def answer(self, method: str) -> None:
            status, payload, *rest = handle(self, method)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (rest[0] if rest else {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.answer("GET")

        def do_POST(self) -> None:  # noqa: N802
            self.answer("POST")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
