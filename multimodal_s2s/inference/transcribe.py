"""Speech to text with a trained checkpoint: ``Transcriber`` (the Python API) and the
``ms2s transcribe`` command built on it.

Inputs are files (and, in Python, waveforms with their sample rate; the command also takes
directories and glob patterns). Each recording is cut in the middle of its pauses of at least
``min_pause_seconds`` (``data/pauses.py``) and where it would run past ``max_chunk_seconds``;
the chunks are decoded as utterances of their own and their transcripts joined with a space.
Recordings are read and decoded in windows of a few batches, sorted by length inside a window;
results come out in input order, a window at a time. The command reports a file that cannot be
read on stderr and skips it.
"""

import argparse
import operator
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from multimodal_s2s.config import DECODING_SECTIONS, Config, split_overrides, with_nbest
from multimodal_s2s.data.audio import SUPPORTED_AUDIO_EXTENSIONS, resampled
from multimodal_s2s.data.base import DataSource
from multimodal_s2s.data.files import add_batch_command_arguments
from multimodal_s2s.data.pauses import split_at_pauses
from multimodal_s2s.data.sources import SOURCES
from multimodal_s2s.errors import InputError
from multimodal_s2s.frontends import decoding_views
from multimodal_s2s.inference.attention_maps import save_alignment_figure
from multimodal_s2s.inference.decoding import (
    Result,
    joined_nbest,
    load_for_decoding,
    read_windows,
)
from multimodal_s2s.inference.file_decoding import FileKind, decode_files
from multimodal_s2s.models.model import Seq2Seq
from multimodal_s2s.search.beam import SearchConfig
from multimodal_s2s.search.decode import Decoded, decode_batch
from multimodal_s2s.text import EOS_ID, Tokenizer

_WINDOW_BATCHES = 4
BATCH_SIZE = 16  # audio chunks a batch
AUDIO_FILES = FileKind("speech", SUPPORTED_AUDIO_EXTENSIONS, "audio", "text", "file")
# A recording: a file, or a waveform (1-D array or tensor) and its sample rate.
AudioItem = str | Path | tuple[Any, int]


class Transcriber:
    """Transcribes recordings with a speech model, e.g.::

    asr = Transcriber.from_checkpoint("exp/phone_menu_asr/best.pt", beam_size=4)
    texts = [result.text for result in asr.transcribe(["a.wav", (wave, 8000)])]
    """

    def __init__(
        self,
        model: Seq2Seq,
        tokenizer: Tokenizer,
        config: Config,
        max_chunk_seconds: float = 30.0,
        min_pause_seconds: float = 0.3,
    ) -> None:
        """``config``: the config to decode with (``inference.decoding.load_for_decoding``);
        ``max_chunk_seconds`` and ``min_pause_seconds``: where recordings are cut
        (``split_at_pauses``)."""
        if max_chunk_seconds <= 0 or min_pause_seconds < 0:
            raise InputError(
                "max_chunk_seconds must be > 0 and min_pause_seconds >= 0, got "
                f"{max_chunk_seconds} and {min_pause_seconds}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.source_class: type[DataSource] = SOURCES[config.data.name][0]
        self.views: list[dict[str, Any]] = decoding_views(config.data)
        self.sample_rate: int = config.data.features.sample_rate
        self.max_chunk_seconds = max_chunk_seconds
        self.min_pause_seconds = min_pause_seconds

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "auto",
        *,
        max_chunk_seconds: float = 30.0,
        min_pause_seconds: float = 0.3,
        **settings: Any,
    ) -> "Transcriber":
        """Load a speech checkpoint on ``device`` ("auto": CUDA when there is one).

        ``settings`` change the checkpoint's decoding settings: keys of ``SearchConfig``
        (``beam_size=4``, ``length_norm="gnmt"``) and of the test-time views
        (``speed_factors=[]``); a setting not given keeps the checkpoint's value.

        Raises:
            InputError: the checkpoint is unusable or not a speech model; a setting is
                unknown (``ConfigError``, naming it) or has a bad value.
        """
        model, tokenizer, config = load_for_decoding(path, device, "speech", settings=settings)
        return cls(model, tokenizer, config, max_chunk_seconds, min_pause_seconds)

    def transcribe(
        self,
        items: Sequence[AudioItem],
        batch_size: int = BATCH_SIZE,
        nbest: int | None = None,
        attention: bool = False,
    ) -> list[Result]:
        """One ``Result`` per item, in order. An item is an audio file (wav, flac, ogg, mp3)
        or a ``(waveform, sample_rate)`` pair (a 1-D float array or tensor in ``[-1, 1]``;
        resampled to the model's rate). ``batch_size``: chunks decoded at once; ``nbest``:
        hypotheses per item (at most the beam size; ``None``: ``search.nbest``, 1 unless
        set); ``attention``: fill ``Result.attention`` and its labels.

        Raises:
            InputError: an item cannot be read (naming it), or a bad option.
        """
        return list(self.results(items, batch_size, nbest, attention))

    def results(
        self,
        items: Sequence[AudioItem],
        batch_size: int = BATCH_SIZE,
        nbest: int | None = None,
        attention: bool = False,
        skip: Callable[[InputError], None] | None = None,
    ) -> Iterator[Result]:
        """``transcribe``, yielding each result as soon as its window of items is decoded.
        With ``skip``, an item that cannot be read is handed to it and left out instead of
        raising."""
        search = with_nbest(self.config.search, nbest)
        window_size = batch_size * _WINDOW_BATCHES
        for window in read_windows(items, batch_size, window_size, self._read, skip):
            yield from self._decode_window(window, search, batch_size, attention)

    def save_attention_map(self, result: Result, item: AudioItem, path: str | Path) -> None:
        """Draw ``result`` (of ``transcribe(..., attention=True)``) for ``item`` as a PNG at
        ``path``: the log-mel spectrogram of the whole recording with the attention of each
        output token under it (``attention_maps.save_alignment_figure``)."""
        if result.attention is None or result.attention_times is None:
            raise InputError("the result has no attention: transcribe with attention=True")
        wave, _ = self._read(item, 0)
        device = next(self.model.parameters()).device
        log_mel_frontend = self.model.frontend.frontend
        with torch.no_grad():
            log_mel, _ = log_mel_frontend(
                wave[None].to(device), torch.tensor([wave.shape[0]], device=device)
            )
        save_alignment_figure(
            log_mel[0],
            log_mel_frontend.hop_length / self.sample_rate,
            result.attention_tokens,
            torch.from_numpy(result.attention),
            torch.from_numpy(result.attention_times),
            Path(path),
        )

    def _read(self, item: AudioItem, index: int) -> tuple[Tensor, Path | None]:
        """An item as a ``(N,)`` waveform at the model's rate, and its path (or ``None``)."""
        if isinstance(item, (str, Path)):
            return self.source_class.read_source(self.config.data, Path(item)), Path(item)
        if not isinstance(item, tuple) or len(item) != 2:
            raise InputError(
                f"input {index}: expected a path or a (waveform, sample_rate) pair, got "
                f"{type(item).__name__}"
            )
        wave, rate = item
        name = f"waveform {index}"
        try:
            samples = torch.as_tensor(np.asarray(wave) if not isinstance(wave, Tensor) else wave)
            rate = operator.index(rate)
        except (TypeError, ValueError) as error:
            raise InputError(f"{name}: not a waveform and an integer sample rate") from error
        if not samples.is_floating_point():
            raise InputError(f"{name}: samples must be floats in [-1, 1], got {samples.dtype}")
        return resampled(samples.cpu(), rate, self.sample_rate, name), None

    def _decode_window(
        self,
        window: list[tuple[AudioItem, tuple[Tensor, Path | None]]],
        search: SearchConfig,
        batch_size: int,
        attention: bool,
    ) -> Iterator[Result]:
        """Results of the read items of one window, in order: each recording cut at its
        pauses, all chunks decoded in sorted batches, the chunks of each joined again."""
        bounds = [
            split_at_pauses(wave, self.sample_rate, self.max_chunk_seconds, self.min_pause_seconds)
            for _, (wave, _) in window
        ]
        pieces = [
            wave[start:end] for (_, (wave, _)), cuts in zip(window, bounds) for start, end in cuts
        ]
        decoded = iter(self._decode_sorted(pieces, search, batch_size))
        for (_, (_, path)), cuts in zip(window, bounds, strict=True):
            chunks = [next(decoded) for _ in cuts]
            nbest = joined_nbest(
                [chunk.nbest or ((chunk.text, chunk.score),) for chunk in chunks], search.nbest
            )
            text, score = nbest[0]
            result = Result(text, score, nbest, path=path, view=chunks[0].variant)
            if attention:
                self._add_attention(result, chunks, cuts)
            yield result

    def _decode_sorted(
        self, waves: list[Tensor], search: SearchConfig, batch_size: int
    ) -> list[Decoded]:
        """Decode ``[(N_i,)]`` waveforms in batches of similar length (padded by the data
        source's ``collate_sources``); results in input order."""
        device = next(self.model.parameters()).device
        order = sorted(range(len(waves)), key=lambda i: -waves[i].shape[0])
        results: list[Decoded | None] = [None] * len(waves)
        for first in range(0, len(order), batch_size):
            batch = order[first : first + batch_size]
            sources, lengths = self.source_class.collate_sources([waves[i] for i in batch])
            sources, lengths = sources.to(device), lengths.to(device)
            decoded = decode_batch(
                self.model, self.tokenizer, sources, lengths, search, views=self.views
            )
            for index, result in zip(batch, decoded, strict=True):
                results[index] = result
        return results

    def _add_attention(
        self, result: Result, chunks: list[Decoded], cuts: list[tuple[int, int]]
    ) -> None:
        """Fill ``result``'s attention: each chunk's ``(L_c, S_c)`` weights on the diagonal
        of ``(sum L_c, sum S_c)``, its tokens, and where its encoder frames start (spread
        evenly over the chunk)."""
        blocks = [
            chunk.hypothesis.attention.to(device="cpu", dtype=torch.float32) for chunk in chunks
        ]
        result.attention = torch.block_diag(*blocks).numpy()
        result.attention_tokens = [
            self.tokenizer.tokens[token]
            for chunk in chunks
            for token in chunk.hypothesis.tokens + ([EOS_ID] if chunk.hypothesis.finished else [])
        ]
        times = [
            start
            + (end - start) * torch.arange(block.shape[1], dtype=torch.float64) / block.shape[1]
            for block, (start, end) in zip(blocks, cuts, strict=True)
        ]
        result.attention_times = (torch.cat(times) / self.sample_rate).numpy()


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
    nbest: int | None = None,
    attention_maps: Path | None = None,
) -> int:
    """``ms2s transcribe``: transcribe audio files with a ``Transcriber``; returns 0, or 1
    when any input could not be read (or any attention figure written).

    Writes JSON Lines ``{"audio", "text", "score"}`` to ``output`` (atomically; Ctrl-C
    leaves the finished files' lines in ``<output>.partial``, ``collected_records``), or
    ``path<TAB>text`` lines to stdout when ``output`` is None. ``score`` is the search's rank
    score, averaged over the chunks of a long file. With ``nbest``, each record also has
    ``"nbest"``: ``[{"text", "score"}, ...]``, best first. ``attention_maps``: a folder for one
    alignment figure per file, at the file's path relative to the folder all inputs share,
    with ``.png`` appended (``a/x.wav`` -> ``DIR/a/x.wav.png``).

    Decoding settings are the checkpoint's, changed by ``overrides`` (``search.KEY=VALUE``
    and ``data.test_views.KEY=VALUE``; ``data.test_views.speed_factors=[]`` decodes each
    utterance once, as it is), then by ``beam`` when given (1 decodes greedily) and ``nbest``.

    Raises:
        InputError: a bad option value, an unusable checkpoint or an unwritable output.
    """
    if max_chunk_seconds <= 0 or min_pause_seconds < 0:
        raise InputError(
            "--max-chunk-seconds must be > 0 and --min-pause-seconds >= 0, got "
            f"{max_chunk_seconds} and {min_pause_seconds}"
        )
    return decode_files(
        AUDIO_FILES,
        partial(
            Transcriber,
            max_chunk_seconds=max_chunk_seconds,
            min_pause_seconds=min_pause_seconds,
        ),
        model_path,
        paths,
        output=output,
        beam=beam,
        batch_size=batch_size,
        device=device,
        overrides=overrides,
        nbest=nbest,
        attention_maps=attention_maps,
    )


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
    parser.add_argument(
        "--attention-maps",
        type=Path,
        help="folder for one figure per recording: its log-mel spectrogram with the attention "
        "of each output token under it",
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
        nbest=args.nbest,
        attention_maps=args.attention_maps,
    )
