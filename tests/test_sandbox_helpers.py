"""Shared by the sandbox tests (no tests here): backends by name, skipped when unavailable."""

from __future__ import annotations

import atexit
import os

import pytest
from greenpatch.sandboxes import Backend, SandboxError, get_backend

_OPEN: dict[str, Backend] = {}


def use_backend(name: str) -> Backend:
    """The session's backend `name`; skips (or, for Docker under CI, fails) when unavailable."""
    if name not in _OPEN:
        try:
            _OPEN[name] = get_backend(name)
        except SandboxError as exc:
            if name == "docker" and os.environ.get("GREENPATCH_REQUIRE_DOCKER") == "1":
                pytest.fail(f"Docker required (GREENPATCH_REQUIRE_DOCKER=1): {exc}")
            # A developer machine without Docker (or bwrap) skips; CI sets
            # GREENPATCH_REQUIRE_DOCKER=1 above, so there it fails instead of hiding.
            pytest.skip(str(exc))
        atexit.register(_OPEN[name].close)
    return _OPEN[name]


ALL_BACKENDS = pytest.mark.parametrize(
    "backend_name",
    [
        pytest.param("bwrap", marks=pytest.mark.bwrap),
        pytest.param("docker", marks=pytest.mark.docker),
        "process",
    ],
)
