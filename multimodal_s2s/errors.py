"""One-line, user-facing errors: bad input (files, configs, checkpoints) and failed runs."""


class InputError(ValueError):
    """A one-line, user-facing error that names the bad input (a file, a key, a value)."""


class TrainingError(RuntimeError):
    """A training run that cannot go on (e.g. too many non-finite batches in a row)."""


def one_line(error: BaseException) -> str:
    """The user-facing line of an error. A ``DataLoader`` worker re-raises an error as
    ``"Caught InputError in DataLoader worker process 0.\\n<traceback>\\n<module.Class>:
    <message>"``; that gives back ``<message>``, the error's own line."""
    text = str(error)
    if not text.startswith("Caught ") or "\n" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    prefix = f"{type(error).__module__}.{type(error).__qualname__}: "
    return last.removeprefix(prefix)
