"""Backends by name: what `--sandbox` and `[tool.greenpatch] sandbox` choose from."""

from __future__ import annotations

import importlib

from greenpatch.sandboxes.base import Backend, SandboxError

# name -> "module:class", imported on demand so a missing SDK only matters to its own backend.
BACKENDS: dict[str, str] = {
    "bwrap": "greenpatch.sandboxes.bwrap:BwrapBackend",
    "docker": "greenpatch.sandboxes.docker_backend:DockerBackend",
    "process": "greenpatch.sandboxes.process:ProcessBackend",
}


def get_backend(name: str, **options: object) -> Backend:
    """A backend instance by name; options go to its constructor. Unknown names: SandboxError."""
    if name not in BACKENDS:
        raise SandboxError(f"unknown sandbox '{name}' (known: {', '.join(BACKENDS)})")
    module_name, class_name = BACKENDS[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise SandboxError(f"sandbox '{name}': bad options: {exc}") from None
