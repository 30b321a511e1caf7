"""One loaded model for every ticket in flight: its forward passes take turns behind a lock.

Tickets draft on their own threads; on a CPU, two forward passes at once only fight over the same
cores, so each pass holds the lock and the other ticket's drafting waits for the next step while
its tests keep running in the sandboxes. Denoising steps are short, so tickets interleave finely.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from greenpatch.model.checkpoint import LoadedModel


class SerialNet:
    """Wraps a network so that calls are serialized; everything else is the network's."""

    def __init__(self, net: Any) -> None:
        self._net = net
        self._lock = threading.Lock()
        self.calls = 0
        self.busy = 0.0  # seconds spent in forward passes, all tickets together

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            began = time.monotonic()
            try:
                return self._net(*args, **kwargs)
            finally:
                self.calls += 1
                self.busy += time.monotonic() - began

    def __getattr__(self, name: str) -> Any:
        return getattr(self._net, name)


def shared_model(lm: LoadedModel) -> LoadedModel:
    """`lm` with its network behind a SerialNet, to hand to every ticket of a batch."""
    if isinstance(lm.net, SerialNet):
        return lm
    return dataclasses.replace(lm, net=SerialNet(lm.net))
