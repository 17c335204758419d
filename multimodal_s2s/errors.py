"""Exceptions raised for bad user input (files, configs, checkpoints)."""


class InputError(ValueError):
    """A one-line, user-facing error that names the bad input (a file, a key, a value)."""
