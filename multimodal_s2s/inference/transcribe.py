"""``ms2s transcribe``: audio files to text with a trained speech checkpoint.

Inputs are files, directories (every supported audio file below them) and glob patterns.
A file that cannot be read is reported on stderr and skipped. Each file is cut in the
middle of its pauses of at least ``min_pause_seconds`` (``data/pauses.py``) and where it
would run past ``max_chunk_seconds``; the chunks are decoded as utterances of their own and
their transcripts joined with a space. Files are read and decoded in windows of a few
batches, sorted by length inside a window; results come out in input order.
"""

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor
from tqdm import tqdm

from multimodal_s2s.checkpoint import load_model
from multimodal_s2s.config import DECODING_SECTIONS, Config, decoding_config, split_overrides
from multimodal_s2s.data.audio import SUPPORTED_AUDIO_EXTENSIONS
from multimodal_s2s.data.base import DataSource
from multimodal_s2s.data.files import (
    add_batch_command_arguments,
    find_files_reporting,
    print_result,
    report_skipped,
)
from multimodal_s2s.data.manifest import collected_records
from multimodal_s2s.data.pauses import split_at_pauses
from multimodal_s2s.data.sources import SOURCES
from multimodal_s2s.devices import resolve_device
from multimodal_s2s.errors import InputError
from multimodal_s2s.frontends import decoding_views
from multimodal_s2s.models.model import Seq2Seq
from multimodal_s2s.search.decode import Decoded, decode_batch
from multimodal_s2s.text import Tokenizer

_WINDOW_BATCHES = 4
BATCH_SIZE = 16  # audio chunks a batch


def transcribe(
    model_path: str | Path,
    paths: list[str],
    output: str | Path | None = None,
    beam: int | None = None,
    batch_size: int = BATCH_SIZE,
    device: str = "auto",
    max_chunk_seconds: float = 30.0,
    min_pause_seconds: float = 0.3,
    overrides: Sequence[str] = (),
) -> int:
    """Transcribe audio files; returns 0, or 1 when any input could not be read.

    Writes JSON Lines ``{"audio", "text", "score"}`` to ``output`` (atomically; Ctrl-C
    leaves the finished files' lines in ``<output>.partial``, ``collected_records``), or
    ``path<TAB>text`` lines to stdout when ``output`` is None. ``score`` is the search's rank
    score, averaged over the chunks of a long file.

    Decoding settings are the checkpoint's, changed by ``overrides`` (``search.KEY=VALUE``
    and ``data.test_views.KEY=VALUE``; ``data.test_views.speed_factors=[]`` decodes each
    utterance once, as it is) and then by ``beam`` when given (1 decodes greedily).

    Raises:
        InputError: a bad option value or an unusable checkpoint.
    """
    if (beam is not None and beam < 1) or batch_size < 1:
        raise InputError(f"--beam and --batch-size must be >= 1, got {beam} and {batch_size}")
    if max_chunk_seconds <= 0 or min_pause_seconds < 0:
        raise InputError(
            "--max-chunk-seconds must be > 0 and --min-pause-seconds >= 0, got "
            f"{max_chunk_seconds} and {min_pause_seconds}"
        )
    model, tokenizer, config = load_model(model_path, resolve_device(device))
    if getattr(config.data, "features", None) is None:
        raise InputError(f"{model_path}: not a speech model (data.name={config.data.name})")
    config = decoding_config(config, overrides, DECODING_SECTIONS, beam)
    files, failed = find_files_reporting(paths, SUPPORTED_AUDIO_EXTENSIONS, "audio")
    if not files:
        return 1
    transcriber = _Transcriber(
        model, tokenizer, config, batch_size, max_chunk_seconds, min_pause_seconds
    )
    window_size = batch_size * _WINDOW_BATCHES
    bar = tqdm(total=len(files), unit="file", file=sys.stderr, disable=None, dynamic_ncols=True)
    with bar, collected_records(output) as records:
        for first in range(0, len(files), window_size):
            window = files[first : first + window_size]
            chunks: dict[Path, list[Tensor]] = {}
            for path in window:
                try:
                    chunks[path] = transcriber.read(path)
                except InputError as error:
                    report_skipped(error)
                    failed = True
            for path, text, score in transcriber.decode(chunks):
                records.append({"audio": str(path), "text": text, "score": score})
                if output is None:
                    print_result(path, text)
            bar.update(len(window))
    return 1 if failed else 0


class _Transcriber:
    """Reads audio files as chunks and decodes chunks of many files in sorted batches."""

    def __init__(
        self,
        model: Seq2Seq,
        tokenizer: Tokenizer,
        config: Config,
        batch_size: int,
        max_chunk_seconds: float,
        min_pause_seconds: float,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.data_config = config.data
        self.source_class: type[DataSource] = SOURCES[config.data.name][0]
        self.search = config.search
        self.views: list[dict[str, Any]] = decoding_views(config.data)
        self.batch_size = batch_size
        self.max_chunk_seconds = max_chunk_seconds
        self.min_pause_seconds = min_pause_seconds

    def read(self, path: Path) -> list[Tensor]:
        """An audio file as ``[(N_i,)]`` chunks, cut at its pauses and at the chunk limit
        (``split_at_pauses``)."""
        wave = self.source_class.read_source(self.data_config, path)
        sample_rate = self.data_config.features.sample_rate
        bounds = split_at_pauses(wave, sample_rate, self.max_chunk_seconds, self.min_pause_seconds)
        return [wave[start:end] for start, end in bounds]

    def decode(self, chunks: dict[Path, list[Tensor]]) -> Iterator[tuple[Path, str, float]]:
        """``(path, text, score)`` per file, in the order of ``chunks``: chunk texts joined
        with a space, chunk scores averaged."""
        pieces = [piece for file_chunks in chunks.values() for piece in file_chunks]
        decoded = iter(self._decode_sorted(pieces))
        for path, file_chunks in chunks.items():
            results = [next(decoded) for _ in file_chunks]
            text = " ".join(result.text for result in results if result.text)
            yield path, text, sum(result.score for result in results) / len(results)

    def _decode_sorted(self, waves: list[Tensor]) -> list[Decoded]:
        """Decode ``[(N_i,)]`` waveforms in batches of similar length (padded by the data
        source's ``collate_sources``); results in input order."""
        device = next(self.model.parameters()).device
        order = sorted(range(len(waves)), key=lambda i: -waves[i].shape[0])
        results: list[Decoded | None] = [None] * len(waves)
        for first in range(0, len(order), self.batch_size):
            batch = order[first : first + self.batch_size]
            sources, lengths = self.source_class.collate_sources([waves[i] for i in batch])
            sources, lengths = sources.to(device), lengths.to(device)
            decoded = decode_batch(
                self.model, self.tokenizer, sources, lengths, self.search, views=self.views
            )
            for index, result in zip(batch, decoded, strict=True):
                results[index] = result
        return results


def add_transcribe_command(commands: argparse._SubParsersAction) -> None:
    """Register ``transcribe`` on the ``ms2s`` sub-command parsers."""
    parser = commands.add_parser("transcribe", help="transcribe audio files with a checkpoint")
    add_batch_command_arguments(parser, "audio", batch_unit="chunks", batch_size=BATCH_SIZE)
    parser.add_argument(
        "--max-chunk-seconds",
        type=float,
        default=30.0,
        help="longer chunks are cut at their quietest moment before this length",
    )
    parser.add_argument(
        "--min-pause-seconds",
        type=float,
        default=0.3,
        help="cut the audio in the middle of every pause this long (0: only at the chunk limit)",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    paths, overrides = split_overrides(args.paths, DECODING_SECTIONS)
    return transcribe(
        args.model,
        paths,
        args.output,
        beam=args.beam,
        batch_size=args.batch_size,
        device=args.device,
        max_chunk_seconds=args.max_chunk_seconds,
        min_pause_seconds=args.min_pause_seconds,
        overrides=overrides,
    )
