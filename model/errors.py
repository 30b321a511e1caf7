"""Errors the model package raises for bad input (missing checkpoint, unknown architecture...)."""


class ModelError(Exception):
    """A model cannot be loaded or asked what was asked; the message is one line for the user."""
