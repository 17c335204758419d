"""What every data source (speech, images, toy data) provides to the trainer and the CLI."""

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from multimodal_s2s.data.batching import WHOLE, Shard
from multimodal_s2s.errors import InputError
from multimodal_s2s.metrics import word_error_rate


@dataclass
class ManifestDataConfig:
    """What every manifest-based data source's config holds: the source's registry ``name``,
    ``train``/``dev`` manifest paths, ``test`` mapping more evaluation split names (not
    "train" or "dev") to manifests, and ``num_workers`` loading processes."""

    name: str = ""
    train: str = ""
    dev: str = ""
    test: dict[str, str] = field(default_factory=dict)
    num_workers: int = 2

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise InputError(f"data.num_workers must be >= 0, got {self.num_workers}")
        reserved = {"train", "dev"} & set(self.test)
        if reserved:
            raise InputError(f"data.test: split name {sorted(reserved)[0]!r} is reserved")


class SourceBatch(NamedTuple):
    """A padded batch of sources with their reference texts.

    sources: ``(B, ...)`` padded raw sources; lengths: ``(B,)`` or ``None`` (no padding);
    texts: reference texts (the training targets); keys: an id or path per item;
    references: where a source has several references per item (captions), all of each
    item's, which evaluation scores against; ``None``: ``texts`` are the only ones.
    """

    sources: Tensor
    lengths: Tensor | None
    texts: list[str]
    keys: list[str]
    references: list[list[str]] | None = None

    def tensors_on(self, device: torch.device | str) -> tuple[Tensor, Tensor | None]:
        """``(sources, lengths)`` moved to ``device``."""
        lengths = self.lengths.to(device) if self.lengths is not None else None
        return self.sources.to(device), lengths


class Dropped(NamedTuple):
    """``count`` items of ``split`` left out because of ``reason`` (e.g. a size limit)."""

    split: str
    count: int
    reason: str


class DataSource(ABC):
    """A modality's data: splits of (source, text) pairs, batching, and file reading.

    Splits are named: ``train``, ``dev`` and any evaluation splits in ``eval_splits``.
    Items a split leaves out when it is read (over a size limit) are listed in ``dropped``.
    ``selectable_metrics``: the keys of ``score`` that ``train.select_by`` may rank epochs
    by (besides the loss): ``"wer"`` (select_by "error") and, for captions, ``"cider_d"``
    (select_by "cider").
    """

    selectable_metrics: tuple[str, ...] = ("wer",)

    def __init__(self, config: Any) -> None:
        self.config = config
        self.dropped: list[Dropped] = []

    @property
    def eval_splits(self) -> list[str]:
        return ["dev"]

    @abstractmethod
    def texts(self, split: str) -> list[str]:
        """Reference texts of a split (to build the vocabulary)."""

    @abstractmethod
    def batches(
        self,
        split: str,
        *,
        train: bool,
        batch_size: int,
        epoch: int = 0,
        seed: int = 0,
        start: int = 0,
        shard: Shard = WHOLE,
    ) -> Sequence[SourceBatch] | Iterable[SourceBatch]:
        """Batches of a split, from batch number ``start`` on; ``train`` turns on shuffling
        and augmentation. The order depends only on ``(seed, epoch)``, so a resumed epoch
        replays it exactly; ``len()`` of the result is the number of batches returned.
        ``batch_size`` (and any size cap) is per process: with ``shard`` of ``world``
        processes, training batches are cut for all of them together and split by
        ``shard_batches``, evaluation batches are dealt out whole.
        """

    def score(self, refs: list[str], hyps: list[str]) -> dict[str, float]:
        """Corpus metrics of a decoded split; ``wer`` (lower is better) selects checkpoints.
        A source whose batches carry ``references`` is given each item's list of them."""
        return {"wer": word_error_rate(refs, hyps)}

    def details(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Per-item report records (``key``, ``ref``, ``hyp``, ``score``), e.g. + alignments."""
        return records

    def fit_frontend(self, frontend: nn.Module | None) -> None:  # noqa: B027
        """Estimate frontend statistics (e.g. feature mean/variance) on the training split."""

    @staticmethod
    @abstractmethod
    def read_source(config: Any, path: Path) -> Tensor:
        """One file -> one unbatched source tensor; ``InputError`` naming a bad file."""

    @staticmethod
    @abstractmethod
    def collate_sources(sources: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        """Unbatched sources -> padded batch ``(B, ...)`` and lengths ``(B,)`` or ``None``."""


def pad_sequences(sequences: list[Tensor]) -> tuple[Tensor, Tensor]:
    """``[(T_i, ...)]`` -> ``(B, max T_i, ...)`` zero-padded and lengths ``(B,)`` int64."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    return nn.utils.rnn.pad_sequence(sequences, batch_first=True), lengths
