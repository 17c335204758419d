"""Expanding command-line inputs (files, folders, glob patterns) into source files."""

import argparse
import glob
import sys
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from multimodal_s2s.errors import InputError


def find_files(paths: list[str], extensions: tuple[str, ...], kind: str) -> list[Path]:
    """Expand files, directories and glob patterns into files with one of ``extensions``.

    A directory contributes every such file below it (recursively, sorted); a glob pattern
    (``*``, ``?``, ``[...]``, ``**`` to recurse) the files among its sorted matches.
    Extensions compare case-insensitively. Duplicates (the same file however spelled) are
    dropped, the first occurrence kept.

    Raises:
        InputError: naming the entry, when a path is missing, a pattern or directory yields
            no ``kind`` file, or a file named explicitly has an unsupported extension.
    """
    found: dict[Path, Path] = {}
    for entry in paths:
        _add_new_files(found, _expand(entry, extensions, kind))
    return list(found.values())


def find_files_reporting(
    paths: list[str], extensions: tuple[str, ...], kind: str
) -> tuple[list[Path], bool]:
    """Like ``find_files``, but an entry that names no usable file is reported with
    ``report_skipped`` and skipped; returns the files and whether any entry was skipped."""
    found: dict[Path, Path] = {}
    skipped = False
    for entry in paths:
        try:
            _add_new_files(found, find_files([entry], extensions, kind))
        except InputError as error:
            report_skipped(error)
            skipped = True
    return list(found.values()), skipped


def _add_new_files(found: dict[Path, Path], paths: Iterable[Path]) -> None:
    """Add each path under its resolved form, unless the same file is there already."""
    for path in paths:
        found.setdefault(path.resolve(), path)


def add_batch_command_arguments(
    parser: argparse.ArgumentParser, kind: str, batch_unit: str, batch_size: int
) -> None:
    """The arguments that the batch decoding commands (``transcribe``, ``caption``) share:
    ``--model``, the ``kind`` inputs (``search.KEY=VALUE`` and ``data.test_views.KEY=VALUE``
    items among them override the checkpoint's settings), ``--output``, ``--beam`` (default:
    the checkpoint's), ``--batch-size`` (of ``batch_unit``, default ``batch_size``),
    ``--nbest`` and ``--device``."""
    parser.add_argument("--model", type=Path, required=True, help="checkpoint")
    parser.add_argument(
        "paths",
        nargs="+",
        help=f"{kind} files, folders (recursive) or glob patterns; search.KEY=VALUE and "
        "data.test_views.KEY=VALUE items override the checkpoint's settings",
    )
    parser.add_argument(
        "--output", type=Path, help="JSON Lines file (default: path<TAB>text lines on stdout)"
    )
    parser.add_argument(
        "--beam",
        type=int,
        help="beam size (1 = greedy; default: the checkpoint's)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=batch_size,
        help=f"{batch_unit} decoded at once (default {batch_size})",
    )
    add_nbest_argument(parser, "--output")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")


def add_nbest_argument(parser: argparse.ArgumentParser, records: str) -> None:
    """``--nbest N``: the N best hypotheses of each input in the ``records`` option's JSON
    Lines records."""
    parser.add_argument(
        "--nbest",
        type=int,
        metavar="N",
        help=f"add each input's N best hypotheses, best first, to the {records} records as "
        '"nbest": [{"text", "score"}, ...]; N may not exceed the beam size (a larger N is '
        "an error, the beam is not widened)",
    )


def print_result(path: Path, text: str) -> None:
    """One ``path<TAB>text`` line on stdout for a batch command without ``--output``,
    written around any progress bar and flushed at once (so a pipe sees it)."""
    tqdm.write(f"{path}\t{text}", file=sys.stdout)
    sys.stdout.flush()


def report_skipped(error: InputError) -> None:
    """One ``error: ...`` line on stderr for an input a batch command skips."""
    tqdm.write(f"error: {error}", file=sys.stderr)


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
