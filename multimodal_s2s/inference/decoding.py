"""What the Python API (``Transcriber``, ``Captioner``) and the decoding commands share: the
result of one input, loading a checkpoint with keyword decoding settings, the n-best list of an
input decoded in pieces, and the JSON Lines record of a result."""

import dataclasses
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import yaml
from tqdm import tqdm

from multimodal_s2s.checkpoint import load_model
from multimodal_s2s.config import DECODING_SECTIONS, Config, ConfigError, decoding_config
from multimodal_s2s.data.files import print_result, report_skipped
from multimodal_s2s.data.manifest import collected_records
from multimodal_s2s.devices import resolve_device
from multimodal_s2s.errors import InputError
from multimodal_s2s.models.model import Seq2Seq
from multimodal_s2s.search.beam import SearchConfig
from multimodal_s2s.text import Tokenizer

# What each decoding class reads: the checkpoint's ``data.name``, and how an error names it.
_MODALITIES = {"speech": "a speech model", "images": "an image captioning model"}


@dataclass
class Result:
    """The output for one input.

    Attributes:
        text: the best hypothesis (for a recording cut into chunks, the chunks' texts joined
            with a space).
        score: its rank score (``search.length_norm``; for chunks, their mean).
        nbest: ``(text, score)`` pairs, best first; ``nbest[0] == (text, score)``.
        attention: only when asked for: ``(L, S)`` float32, the attention weight each output
            token (row) gave each encoder position (column): the encoder frames of a
            recording (for chunks, each chunk's block on the diagonal), the cells of an
            image's ``(H', W')`` grid in row-major order.
        attention_tokens: the ``L`` row labels: the output tokens, and the end token where a
            hypothesis finished.
        attention_times: recordings only: ``(S,)`` where each column starts, in seconds from
            the start of the recording (a chunk's encoder frames spread evenly over it).
        path: the input file; ``None`` for an input given in memory.
        view: the test-time view of the best hypothesis (``{}``: the input as it is; for
            chunks, the first chunk's).
    """

    text: str
    score: float
    nbest: list[tuple[str, float]]
    attention: np.ndarray | None = None
    attention_tokens: list[str] | None = None
    attention_times: np.ndarray | None = None
    path: Path | None = None
    view: dict[str, Any] = field(default_factory=dict)


def load_for_decoding(
    path: str | Path,
    device: str,
    modality: Literal["speech", "images"],
    overrides: Sequence[str] = (),
    settings: Mapping[str, Any] | None = None,
    beam: int | None = None,
    nbest: int | None = None,
) -> tuple[Seq2Seq, Tokenizer, Config]:
    """A checkpoint's model (eval mode, on ``device``), tokenizer and the config to decode
    with: the checkpoint's, then the dotted ``overrides``, the keyword ``settings``
    (``settings_overrides``), ``beam`` and ``nbest`` (``config.decoding_config``).

    Raises:
        InputError: the checkpoint is unusable or is not a ``modality`` model; a setting is
            unknown or has a bad value (``ConfigError``).
    """
    model, tokenizer, config = load_model(path, resolve_device(device))
    if config.data.name != modality:
        raise InputError(f"{path}: not {_MODALITIES[modality]} (data.name={config.data.name})")
    overrides = [*overrides, *settings_overrides(settings or {}, config)]
    return model, tokenizer, decoding_config(config, overrides, DECODING_SECTIONS, beam, nbest)


def settings_overrides(settings: Mapping[str, Any], config: Config) -> list[str]:
    """Keyword decoding settings as dotted overrides: a key of ``SearchConfig`` becomes
    ``search.KEY``, one of the data's test-time views ``data.test_views.KEY``.

    Raises:
        ConfigError: naming a key that is neither.
    """
    views = getattr(config.data, "test_views", None)
    sections = {name: "search" for name in _field_names(SearchConfig)}
    if views is not None:
        sections.update({name: "data.test_views" for name in _field_names(type(views))})
    overrides = []
    for key, value in settings.items():
        if key not in sections:
            known = ", ".join(sorted(sections))
            raise ConfigError(f"unknown decoding setting {key!r} (known: {known})")
        plain = list(value) if isinstance(value, tuple) else value
        overrides.append(f"{sections[key]}.{key}={yaml.safe_dump(plain, default_flow_style=True)}")
    return overrides


def _field_names(cls: type) -> list[str]:
    return [spec.name for spec in dataclasses.fields(cls)]


def joined_nbest(
    pieces: Sequence[Sequence[tuple[str, float]]], size: int
) -> list[tuple[str, float]]:
    """The ``size`` best ways to take one hypothesis of each piece of an input (its n-best
    list, best first): texts joined with a space (empty ones left out), scores averaged,
    best first. Keeping the ``size`` best joins of the first pieces at each step loses none
    of the ``size`` best in all, since every join ranks by the sum of its parts."""
    joins: list[tuple[tuple[str, ...], float]] = [((), 0.0)]
    for piece in pieces:
        longer = [
            (texts + (text,), total + score) for texts, total in joins for text, score in piece
        ]
        joins = sorted(longer, key=lambda join: -join[1])[:size]
    return [
        (" ".join(text for text in texts if text), total / len(pieces)) for texts, total in joins
    ]


class FileDecoder(Protocol):
    """What ``write_results`` runs: ``Transcriber`` or ``Captioner``."""

    def results(
        self,
        items: Sequence[Any],
        batch_size: int,
        nbest: int | None = None,
        attention: bool = False,
        skip: Callable[[InputError], None] | None = None,
    ) -> Iterator[Result]: ...

    def save_attention_map(self, result: Result, item: Any, path: str | Path) -> None: ...


def write_results(
    decoder: FileDecoder,
    files: list[Path],
    output: str | Path | None,
    batch_size: int,
    keys: tuple[str, str],
    nbest: bool = False,
    attention_maps: Path | None = None,
    unit: str = "file",
) -> bool:
    """What ``ms2s transcribe`` and ``ms2s caption`` do with the files they found: decode them
    with a progress bar, write JSON Lines records ``{keys[0]: path, keys[1]: text, "score"}``
    (with ``nbest``, also ``"nbest"``, ``nbest_record``) to ``output`` (``collected_records``:
    atomically, or the finished ones to ``<output>.partial`` on Ctrl-C), or ``path<TAB>text``
    lines to stdout when it is None, and with ``attention_maps`` one figure per file at its
    path relative to the files' common folder, ``.png`` appended. A file that cannot be read
    or drawn is reported on stderr and skipped; returns whether any was."""
    root = common_folder(files)
    problems = []
    bar = tqdm(total=len(files), unit=unit, file=sys.stderr, disable=None, dynamic_ncols=True)

    def report(error: InputError) -> None:
        report_skipped(error)
        problems.append(error)

    def skip(error: InputError) -> None:
        report(error)
        bar.update(1)

    with bar, collected_records(output) as records:
        drawing = attention_maps is not None
        for result in decoder.results(files, batch_size, attention=drawing, skip=skip):
            record = {keys[0]: str(result.path), keys[1]: result.text, "score": result.score}
            records.append(record | ({"nbest": nbest_record(result)} if nbest else {}))
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


def nbest_record(result: Result) -> list[dict[str, Any]]:
    """A result's n-best list as JSON Lines values: ``[{"text", "score"}, ...]``, best first."""
    return [{"text": text, "score": score} for text, score in result.nbest]


def common_folder(files: list[Path]) -> Path:
    """The deepest folder containing every file (resolved); ``/`` for no files."""
    if not files:
        return Path("/")
    return Path(os.path.commonpath([path.resolve().parent for path in files]))


def read_windows(
    items: Sequence[Any],
    batch_size: int,
    window_size: int,
    read: Callable[[Any, int], Any],
    skip: Callable[[InputError], None] | None,
) -> Iterator[list[tuple[Any, Any]]]:
    """``items`` in windows of ``window_size``, each item as ``(item, read(item, index))``.
    An item that ``read`` refuses (``InputError``) is handed to ``skip`` and left out, or,
    without ``skip``, raises.

    Raises:
        InputError: ``items`` is a lone path rather than a list (a string would be read as a
            list of one-letter paths), or ``batch_size`` is below 1.
    """
    if isinstance(items, (str, Path)):
        raise InputError(f"give a list of inputs, e.g. [{str(items)!r}], not one path")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    items = list(items)
    for first in range(0, len(items), window_size):
        window = []
        for index in range(first, min(first + window_size, len(items))):
            try:
                window.append((items[index], read(items[index], index)))
            except InputError as error:
                if skip is None:
                    raise
                skip(error)
        yield window
