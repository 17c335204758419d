"""One-line, user-facing errors: bad input (files, configs, checkpoints) and failed runs."""


class InputError(ValueError):
    """A one-line, user-facing error that names the bad input (a file, a key, a value)."""


class TrainingError(RuntimeError):
    """A training run that cannot go on (e.g. too many non-finite batches in a row)."""
