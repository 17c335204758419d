"""Expanding command-line inputs (files, folders, glob patterns) into source files."""

import glob
from pathlib import Path

from multimodal_s2s.errors import InputError


def find_files(paths: list[str], extensions: tuple[str, ...], kind: str) -> list[Path]:
    """Expand files, directories and glob patterns into files with one of ``extensions``.

    A directory contributes every such file below it (recursively, sorted); a glob pattern
    (``*``, ``?``, ``[...]``, ``**`` to recurse) the files among its sorted matches.
    Extensions compare case-insensitively. Duplicates are dropped, first occurrence kept.

    Raises:
        InputError: naming the entry, when a path is missing, a pattern or directory yields
            no ``kind`` file, or a file named explicitly has an unsupported extension.
    """
    found: dict[Path, None] = {}
    for entry in paths:
        for path in _expand(entry, extensions, kind):
            found.setdefault(path, None)
    return list(found)


def _expand(entry: str, extensions: tuple[str, ...], kind: str) -> list[Path]:
    path = Path(entry)
    if path.is_file():
        if path.suffix.lower() not in extensions:
            raise InputError(
                f"{path}: unsupported {kind} extension (supported: {', '.join(extensions)})"
            )
        return [path]
    if path.is_dir():
        files = _files_in(path, extensions)
        if not files:
            raise InputError(f"{path}: directory contains no {kind} files")
        return files
    if glob.has_magic(entry):
        matches = sorted(Path(match) for match in glob.glob(entry, recursive=True))
        files = [m for m in matches if m.is_file() and m.suffix.lower() in extensions]
        if not files:
            raise InputError(f"{entry}: pattern matches no {kind} files")
        return files
    raise InputError(f"{entry}: {kind} path not found")


def _files_in(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Files below ``folder`` (recursively, sorted) with a listed extension."""
    return [p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix.lower() in extensions]
