"""Writing a file so that readers see either its old content or the whole new one."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from multimodal_s2s.errors import InputError


@contextmanager
def atomic_write(path: str | Path, binary: bool = False) -> Iterator[IO[Any]]:
    """An open file whose content replaces ``path`` when the ``with`` block ends cleanly.

    The content goes to a temporary file in ``path``'s folder (created if missing), which is
    flushed to disk and renamed over ``path``; if the block raises (Ctrl-C included), the
    temporary file is removed and ``path`` is left as it was. The new file gets the
    permissions a plain ``open`` would give it (``0o666`` less the umask), not the
    owner-only mode of a temporary file. Text mode writes UTF-8.

    Raises:
        InputError: before anything is written, when ``path`` cannot be a file (see
            ``check_writable``) or its folder cannot be made or written in.
    """
    path = Path(path)
    _check_kind(path, folder=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as error:
        raise InputError(f"{path}: cannot write it ({error.strerror})") from error
    try:
        mode, encoding = ("wb", None) if binary else ("w", "utf-8")
        with os.fdopen(handle, mode, encoding=encoding) as file:
            os.fchmod(file.fileno(), 0o666 & ~_umask())
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_writable(path: str | Path, folder: bool = False) -> None:
    """Fail early, before any work whose result would go to ``path``, where that path cannot
    be written: a file path that is a folder, a folder path that is a file, a path below a
    file, or a path whose nearest existing folder does not let this process create a file
    (permissions, a read-only or virtual file system; tried with a temporary file).

    Raises:
        InputError: naming ``path`` and what stands in the way.
    """
    path = Path(path)
    _check_kind(path, folder)
    folders = [path, *path.parents] if folder else list(path.parents)
    existing = next(parent for parent in folders if parent.exists())
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise InputError(f"{path}: cannot write in {existing} ({error.strerror})") from error


def _check_kind(path: Path, folder: bool) -> None:
    """Raise an ``InputError`` where ``path`` (a folder when ``folder``) is the other kind
    of thing or lies below a file."""
    if path.exists() and path.is_dir() != folder:
        raise InputError(f"{path}: is a {'file' if folder else 'folder'}, not a {_kind(folder)}")
    existing = next((parent for parent in path.parents if parent.exists()), None)
    if existing is not None and not existing.is_dir():
        raise InputError(f"{path}: cannot write a {_kind(folder)} below {existing}, a file")


def _kind(folder: bool) -> str:
    return "folder" if folder else "file"


def _umask() -> int:
    """The process's file-creation mask (reading it means setting it, so it is set back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
