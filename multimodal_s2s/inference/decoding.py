"""What the Python API (``Transcriber``, ``Captioner``) and the decoding commands share: the
result of one input, loading a checkpoint with keyword decoding settings, the n-best list of an
input decoded in pieces, and reading inputs in windows."""

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from multimodal_s2s.checkpoint import load_model
from multimodal_s2s.config import DECODING_SECTIONS, Config, ConfigError, decoding_config
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
