"""Exit codes, the error that carries one up to the command line, and the errors a user can act
on (each package's own: printed as one line, never a traceback)."""

from __future__ import annotations

from greenpatch.model.errors import ModelError
from greenpatch.runner.errors import RunnerError
from greenpatch.sandboxes.base import SandboxError

EXIT_GREEN = 0
EXIT_NO_FIX = 1
EXIT_USAGE = 2
EXIT_CANNOT_REPRODUCE = 3


class AgentError(Exception):
    """A problem the user can act on: printed as one line, then the process exits with `code`."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


USER_ERRORS = (AgentError, ModelError, RunnerError, SandboxError)
