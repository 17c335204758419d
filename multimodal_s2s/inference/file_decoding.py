"""What ``ms2s transcribe`` and ``ms2s caption`` share: check the options, load the checkpoint,
find the files the command line names, decode them and write their results."""

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from tqdm import tqdm

from multimodal_s2s.atomic_file import check_writable
from multimodal_s2s.config import Config
from multimodal_s2s.data.files import find_files_reporting, print_result, report_skipped
from multimodal_s2s.data.manifest import collected_records
from multimodal_s2s.errors import InputError
from multimodal_s2s.inference.decoding import Result, load_for_decoding
from multimodal_s2s.models.model import Seq2Seq
from multimodal_s2s.text import Tokenizer


@dataclass(frozen=True)
class FileKind:
    """The files a decoding command reads and the records it writes.

    Attributes:
        modality: the checkpoint's ``data.name`` the command needs.
        extensions: the files' extensions (``find_files``).
        name: how messages name a file (``"audio"``) and its path's key in a record.
        text_key: the key of the decoded text in a record.
        unit: what the progress bar counts.
    """

    modality: Literal["speech", "images"]
    extensions: tuple[str, ...]
    name: str
    text_key: str
    unit: str


class FileDecoder(Protocol):
    """What ``decode_files`` runs: ``Transcriber`` or ``Captioner``."""

    def results(
        self,
        items: Sequence[Any],
        batch_size: int,
        nbest: int | None = None,
        attention: bool = False,
        skip: Callable[[InputError], None] | None = None,
    ) -> Iterator[Result]: ...

    def save_attention_map(self, result: Result, item: Any, path: str | Path) -> None: ...


def decode_files(
    kind: FileKind,
    make_decoder: Callable[[Seq2Seq, Tokenizer, Config], FileDecoder],
    model_path: str | Path,
    paths: list[str],
    *,
    output: str | Path | None,
    beam: int | None,
    batch_size: int,
    device: str,
    overrides: Sequence[str],
    nbest: int | None,
    attention_maps: Path | None,
) -> int:
    """A decoding command: decode the ``kind`` files that ``paths`` name with the decoder
    ``make_decoder`` builds from the checkpoint at ``model_path`` (its decoding settings
    changed by ``overrides``, ``beam`` and ``nbest``: ``load_for_decoding``) and write their
    results (``_write_results``); returns 0, or 1 when any input was skipped or no file found.

    Raises:
        InputError: ``beam`` or ``batch_size`` is below 1, ``attention_maps`` cannot be
            written, the checkpoint is unusable or not a ``kind.modality`` model, or
            ``output`` cannot be written.
    """
    if (beam is not None and beam < 1) or batch_size < 1:
        raise InputError(f"--beam and --batch-size must be >= 1, got {beam} and {batch_size}")
    if attention_maps is not None:
        check_writable(attention_maps, folder=True)
    loaded = load_for_decoding(model_path, device, kind.modality, overrides, beam=beam, nbest=nbest)
    decoder = make_decoder(*loaded)
    files, failed = find_files_reporting(paths, kind.extensions, kind.name)
    if not files:
        return 1
    skipped = _write_results(decoder, files, output, batch_size, kind, nbest, attention_maps)
    return 1 if failed or skipped else 0


def _write_results(
    decoder: FileDecoder,
    files: list[Path],
    output: str | Path | None,
    batch_size: int,
    kind: FileKind,
    nbest: int | None,
    attention_maps: Path | None,
) -> bool:
    """Decode ``files`` with a progress bar, write JSON Lines records ``{kind.name: path,
    kind.text_key: text, "score"}`` (with ``nbest``, also ``"nbest"``, ``_nbest_record``) to
    ``output`` (``collected_records``: atomically, or the finished ones to
    ``<output>.partial`` on Ctrl-C), or ``path<TAB>text`` lines to stdout when it is None,
    and with ``attention_maps`` one figure per file at its path relative to the files'
    common folder, ``.png`` appended. A file that cannot be read or drawn is reported on
    stderr and skipped; returns whether any was."""
    root = _common_folder(files)
    problems = []
    bar = tqdm(total=len(files), unit=kind.unit, file=sys.stderr, disable=None, dynamic_ncols=True)

    def report(error: InputError) -> None:
        report_skipped(error)
        problems.append(error)

    def skip(error: InputError) -> None:
        report(error)
        bar.update(1)

    with bar, collected_records(output) as records:
        drawing = attention_maps is not None
        for result in decoder.results(files, batch_size, attention=drawing, skip=skip):
            record = {
                kind.name: str(result.path),
                kind.text_key: result.text,
                "score": result.score,
            }
            records.append(record | ({"nbest": _nbest_record(result)} if nbest is not None else {}))
            if output is None:
                print_result(result.path, result.text)
            if attention_maps is not None:
                figure = attention_maps / f"{result.path.resolve().relative_to(root)}.png"
                try:
                    decoder.save_attention_map(result, result.path, figure)
                except InputError as error:
                    report(error)
            bar.update(1)
    return bool(problems)


def _nbest_record(result: Result) -> list[dict[str, Any]]:
    """A result's n-best list as JSON Lines values: ``[{"text", "score"}, ...]``, best first."""
    return [{"text": text, "score": score} for text, score in result.nbest]


def _common_folder(files: list[Path]) -> Path:
    """The deepest folder containing every file (resolved); ``files`` is not empty."""
    return Path(os.path.commonpath([path.resolve().parent for path in files]))
