"""Errors the runner raises for bad input (not a pytest project, bad patch, missing interpreter)."""


class RunnerError(Exception):
    """The runner cannot do what was asked; the message is one line for the user."""


class OutOfTime(RunnerError):
    """The time the caller gave ran out before the work was done."""
