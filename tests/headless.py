"""A real headless Chromium driven over the DevTools protocol on a pipe (no websocket, no
selenium): open a page, collect every console message, exception and network request, run
JavaScript in it, take a screenshot.

    with Browser() as browser:
        page = browser.open(Path("run.html"))
        page.errors, page.requests, page.evaluate("1 + 1"), page.screenshot(Path("shot.png"))

`--remote-debugging-pipe` makes Chromium read commands from fd 3 and write replies to fd 4,
each a JSON object ended by a NUL byte (the protocol Playwright and Puppeteer use).

    python -m tests.headless PAGE.html OUT.png   # the screenshot alone
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT = 60.0
VIEWPORT = (1200, 900)


class BrowserError(Exception):
    pass


def chromium() -> str | None:
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


@dataclass
class Page:
    browser: Browser
    session: str
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, error logs
    requests: list[str] = field(default_factory=list)  # every URL the page asked for

    def evaluate(self, expression: str) -> Any:
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        reply = self.browser.call("Runtime.evaluate", params, self.session)
        if "exceptionDetails" in reply:
            raise BrowserError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def screenshot(self, out: Path, max_height: int = 4000) -> tuple[int, int]:
        """The whole page (up to `max_height` CSS pixels) as PNG; returns its size."""
        metrics = self.browser.call("Page.getLayoutMetrics", {}, self.session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        width, height = int(size["width"]), min(int(size["height"]), max_height)
        shot = self.browser.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        }, self.session)  # fmt: skip
        out.write_bytes(base64.b64decode(shot["data"]))
        return width, height


class Browser:
    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or chromium()
        if self.binary is None:
            raise BrowserError("no chromium on PATH (apt-get install chromium)")
        self._ids = 0
        self._buffer = b""
        self._events: list[dict] = []
        self._pages: dict[str, Page] = {}

    def __enter__(self) -> Browser:
        self.profile = tempfile.mkdtemp(prefix="gp-chromium-")
        commands_r, self._commands = os.pipe()
        self._replies, replies_w = os.pipe()
        self.log = Path(self.profile) / "stderr.log"
        argv = [
            self.binary, "--headless", "--remote-debugging-pipe", "--no-sandbox",
            "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-background-networking", "--disable-extensions", "--hide-scrollbars",
            "--force-device-scale-factor=1", f"--user-data-dir={self.profile}", "about:blank",
        ]  # fmt: skip
        # fd 3 and 4 in the child are the protocol's; Python's own fds are close-on-exec.
        actions = [
            (os.POSIX_SPAWN_DUP2, commands_r, 3),
            (os.POSIX_SPAWN_DUP2, replies_w, 4),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, str(self.log), os.O_WRONLY | os.O_CREAT, 0o600),
        ]
        self.pid = os.posix_spawn(self.binary, argv, os.environ, file_actions=actions)
        os.close(commands_r)
        os.close(replies_w)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call("Browser.close", {}, timeout=10)
        except (BrowserError, OSError):
            os.kill(self.pid, 9)
        for fd in (self._commands, self._replies):
            os.close(fd)
        deadline = time.monotonic() + 10
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.05)
        shutil.rmtree(self.profile, ignore_errors=True)

    # --- the protocol ------------------------------------------------------------------------

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise BrowserError(f"chromium did not answer in time; stderr: {self._tail()}")
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                raise BrowserError(f"chromium exited; stderr: {self._tail()}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def call(self, method: str, params: dict, session: str | None = None,
             timeout: float = TIMEOUT) -> dict:  # fmt: skip
        self._ids += 1
        message: dict[str, Any] = {"id": self._ids, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._ids:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._event(reply)

    def wait_for(self, method: str, session: str, timeout: float = TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self._events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self._events.pop(index)
            self._event(self._read(deadline))

    def _event(self, event: dict) -> None:
        """Console errors, exceptions and requests go to their page; the rest is kept for
        wait_for."""
        page = self._pages.get(event.get("sessionId", ""))
        method, params = event.get("method"), event.get("params", {})
        if page is not None:
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                text = " ".join(str(a.get("value", a.get("description", "")))
                                for a in params.get("args", []))  # fmt: skip
                page.errors.append(f"console.{params['type']}: {text}")
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                thrown = details.get("exception", {}).get("description") or details.get("text")
                page.errors.append(f"exception: {thrown}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                page.errors.append(f"log: {params['entry'].get('text')}")
            elif method == "Network.requestWillBeSent":
                page.requests.append(params.get("request", {}).get("url", ""))
        self._events.append(event)

    # --- pages -------------------------------------------------------------------------------

    def open(self, path: Path) -> Page:
        """Load a file in a fresh tab and wait for its load event."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = self._pages[session] = Page(self, session)
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable", {}, session)
        width, height = VIEWPORT
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                  "deviceScaleFactor": 1, "mobile": False}, session)  # fmt: skip
        self.call("Page.navigate", {"url": path.resolve().as_uri()}, session)
        self.wait_for("Page.loadEventFired", session)
        return page


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.headless PAGE.html OUT.png", file=sys.stderr)
        return 2
    with Browser() as browser:
        page = browser.open(Path(argv[0]))
        width, height = page.screenshot(Path(argv[1]), max_height=1400)
    print(f"{argv[1]}: {width}x{height}; console errors: {len(page.errors)}")
    for error in page.errors:
        print(f"  {error}")
    return 1 if page.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
