"""Captioned image files listed in JSON Lines manifests (the image captioning data source).

A manifest line is ``{"image": path, "caption": text, ...}``; relative image paths are
resolved against the manifest's folder and extra keys are ignored. A line may list several
references, ``"captions": [text, ...]`` (what ``ms2s import coco|flickr|caption-tsv`` write,
``data/caption_import.py``), ``caption`` being the first of them; where ``caption`` is not
among them it is put first. Captions are lowercased and their whitespace normalised.
Training batches are shuffled by ``(seed, epoch)`` and hold one reference per image, drawn
for each image by ``(seed, epoch)`` (``drawn_references``), so a resumed epoch sees the same
ones; evaluation batches hold the first reference as their text and all of them in
``references``, which ``score`` scores against. Images are loaded and resized in
``DataLoader`` workers (or once, into memory, with ``preload``).
Batches hold 8-bit pixels: the model's `ImageFrontend` normalises them and, in training,
augments them.
"""

import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from multimodal_s2s.data import scene_scoring as scoring
from multimodal_s2s.data.base import DataSource, Dropped, ManifestDataConfig, SourceBatch
from multimodal_s2s.data.batching import WHOLE, Shard, shard_batches
from multimodal_s2s.data.image import build_image_transform, image_pixels, load_image
from multimodal_s2s.data.manifest import read_manifest
from multimodal_s2s.errors import InputError
from multimodal_s2s.frontends.image import ImageAugmentation, ImageViews
from multimodal_s2s.metrics import bleu4, cider_d, closest_reference_wer


@dataclass
class ImageDataConfig(ManifestDataConfig):
    """Manifests per split (as in ``ManifestDataConfig``; ``test`` splits are evaluated after
    ``dev``) and image options.

    ``image_size`` is the side of the square the images are resized to;
    ``augment`` turns on train-time augmentation (in the model's ``ImageFrontend``), as
    ``augmentation`` says (``ImageAugmentation``: crop, colour jitter, and blur and noise,
    which are off by default);
    ``num_workers`` loads images in parallel; ``preload`` decodes and resizes the training
    images once, on first use, and keeps them in memory (``3 * image_size**2`` bytes each, in
    each training process), so that training batches
    are cut from memory with no loading work;
    ``grammar`` "scenes" says captions follow the built-in scene corpus grammar
    (``data/scene_captions.py``), which adds object and relation accuracy to the scores;
    training images of more than ``max_pixels`` pixels (``width`` x ``height`` from the
    manifest line, else from the file header) are left out and counted in ``dropped``;
    ``test_views``: the corner crops beam search decodes each image in (``ImageViews``).
    """

    name: str = "images"
    image_size: int = 128
    augment: bool = True
    augmentation: ImageAugmentation = field(default_factory=ImageAugmentation)
    grammar: Literal["scenes", "none"] = "none"
    max_pixels: int = 40_000_000
    preload: bool = False
    test_views: ImageViews = field(default_factory=ImageViews)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_pixels < 1:
            raise InputError(f"data.max_pixels must be >= 1, got {self.max_pixels}")


class ImageData(DataSource):
    """Splits ``train``, ``dev`` and each ``test`` name; manifests are read on first use."""

    selectable_metrics = ("wer", "cider_d")

    def __init__(self, config: ImageDataConfig) -> None:
        super().__init__(config)
        self._records: dict[str, list[tuple[str, list[str]]]] = {}
        self._preloaded: Tensor | None = None

    @property
    def eval_splits(self) -> list[str]:
        return ["dev", *self.config.test]

    def texts(self, split: str) -> list[str]:
        """Every reference caption of a split (all of an image's, in order)."""
        return [caption for _, captions in self._split(split) for caption in captions]

    def references(self, split: str) -> list[list[str]]:
        """The reference captions of each image of a split, in manifest order."""
        return [list(captions) for _, captions in self._split(split)]

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
    ) -> DataLoader:
        """A ``DataLoader`` of ``SourceBatch(sources=(B, 3, S, S) uint8, lengths=None, texts,
        keys, references)``, keys being image paths, ``S = image_size``. In training the
        texts are the references ``drawn_references`` picks for ``(seed, epoch)``, else each
        image's first; ``references`` holds all of each image's. Batches before ``start`` (of
        this ``shard``'s batches) are never loaded."""
        records = self._split(split)
        order = list(range(len(records)))
        references = [captions for _, captions in records]
        if train:
            random.Random(f"images:{seed}:{epoch}").shuffle(order)
            captions = drawn_references(references, seed, epoch)
        else:
            captions = [texts[0] for texts in references]
        items = [(path, caption, texts) for (path, texts), caption in zip(records, captions)]
        size = batch_size * shard.world if train else batch_size
        chunks = [order[first : first + size] for first in range(0, len(order), size)]
        chunks = shard_batches(chunks, shard, train)
        if split == "train" and self.config.preload:
            preloaded = self._preload(progress=shard.rank == 0)
            dataset = _ImageDataset(items, self.config.image_size, preloaded)
            workers = 0
        else:
            dataset = _ImageDataset(items, self.config.image_size)
            workers = self.config.num_workers
        return DataLoader(
            dataset,
            batch_sampler=chunks[start:],
            num_workers=workers,
            collate_fn=_collate_batch,
            generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch),
        )

    def score(self, refs: Sequence[str | list[str]], hyps: list[str]) -> dict[str, float]:
        """Corpus metrics of captions; ``refs`` holds each image's reference or its list of
        references (an evaluation record's ``refs``).

        ``wer`` against each image's closest reference (``closest_reference_wer``; with
        ``train.select_by: error`` it selects checkpoints), ``bleu4`` and ``cider_d`` over
        all references (the COCO caption evaluation's scorers; ``select_by: cider``),
        ``exact_match`` (equal to any reference); with ``grammar: scenes`` also
        ``object_accuracy`` and ``relation_accuracy`` against the first reference
        (``data/scene_scoring.py``; NaN when no reference has two objects)."""
        references = [[ref] if isinstance(ref, str) else list(ref) for ref in refs]
        firsts = [texts[0] for texts in references]
        metrics = {
            "wer": closest_reference_wer(references, hyps),
            "bleu4": bleu4(references, hyps),
            "cider_d": cider_d(references, hyps),
            "exact_match": _matches(hyps, references) / len(hyps),
        }
        if self.config.grammar == "scenes":
            metrics["object_accuracy"] = scoring.object_accuracy(hyps, firsts)
            metrics["relation_accuracy"] = scoring.relation_accuracy(hyps, firsts)
        return metrics

    def details(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each record plus ``exact_match`` (bool); with ``grammar: scenes`` also
        ``object_accuracy`` (share of its reference objects named in place) and
        ``relation_correct`` (bool; None for a one-object reference)."""
        return [self._item_details(record) for record in records]

    def _item_details(self, record: dict[str, Any]) -> dict[str, Any]:
        hyps, refs = [record["hyp"]], [record["ref"]]
        exact = _matches(hyps, [record.get("refs", refs)]) == 1
        detailed = {**record, "exact_match": exact}
        if self.config.grammar == "scenes":
            relation = scoring.relation_accuracy(hyps, refs)
            detailed["object_accuracy"] = scoring.object_accuracy(hyps, refs)
            detailed["relation_correct"] = None if math.isnan(relation) else relation == 1.0
        return detailed

    @staticmethod
    def read_source(config: ImageDataConfig, path: Path) -> Tensor:
        """One image file -> ``(3, S, S)`` uint8 tensor (resized)."""
        return build_image_transform(config.image_size)(load_image(path))

    @staticmethod
    def collate_sources(sources: list[Tensor]) -> tuple[Tensor, None]:
        """``[(3, S, S)]`` -> ``(B, 3, S, S)`` and no lengths (images are never padded)."""
        return torch.stack(sources), None

    def _preload(self, progress: bool) -> Tensor:
        """All training images as one ``(N, 3, S, S)`` uint8 tensor, decoded on first use;
        ``progress`` shows a bar (on a terminal), which only the first process does."""
        if self._preloaded is None:
            records = self._split("train")
            loader = DataLoader(
                _ImageDataset(
                    [(path, texts[0], texts) for path, texts in records], self.config.image_size
                ),
                batch_size=256,
                num_workers=self.config.num_workers,
                collate_fn=_collate_batch,
            )
            bar = tqdm(
                total=len(records),
                desc="preloading training images",
                unit="image",
                file=sys.stderr,
                disable=None if progress else True,
                dynamic_ncols=True,
            )
            with bar:
                chunks = []
                for batch in loader:
                    chunks.append(batch.sources)
                    bar.update(len(batch.keys))
            self._preloaded = torch.cat(chunks)
        return self._preloaded

    def _split(self, split: str) -> list[tuple[str, list[str]]]:
        """``(image path, normalised reference captions)`` of each image of a split, read
        once."""
        if split not in self._records:
            self._records[split] = self._read_split(split)
        return self._records[split]

    def _read_split(self, split: str) -> list[tuple[str, list[str]]]:
        path = self._manifest(split)
        records = read_manifest(path, source_key="image", text_key="caption")
        if not records:
            raise InputError(f"{path}: manifest has no entries")
        if split == "train":
            limit = self.config.max_pixels
            kept = [r for r in records if _pixels(r) <= limit]
            if len(kept) < len(records):
                reason = f"more than data.max_pixels={limit} pixels"
                self.dropped.append(Dropped("train", len(records) - len(kept), reason))
            records = kept
        return [(r["image"], _references(r, path)) for r in records]

    def _manifest(self, split: str) -> Path:
        if split in ("train", "dev"):
            path, key = getattr(self.config, split), f"data.{split}"
        elif split in self.config.test:
            path, key = self.config.test[split], f"data.test.{split}"
        else:
            raise InputError(
                f"image data has no split {split!r} (train, {', '.join(self.eval_splits)})"
            )
        if not path:
            raise InputError(f"{key}: no manifest given for split {split!r}")
        return Path(path)


def normalise_caption(caption: str) -> str:
    """Lowercase and collapse whitespace: ``" A  Red\\tSquare "`` -> ``"a red square"``."""
    return " ".join(caption.lower().split())


def drawn_references(references: list[list[str]], seed: int, epoch: int) -> list[str]:
    """One of each image's references for a training epoch, drawn from ``(seed, epoch)``
    alone (the same in every process and on resume; another draw each epoch)."""
    rng = random.Random(f"captions:{seed}:{epoch}")
    return [texts[rng.randrange(len(texts))] for texts in references]


def _references(record: dict, manifest: Path) -> list[str]:
    """A manifest record's normalised references: ``captions``, with ``caption`` first where
    it is not among them, or ``[caption]``."""
    captions = record.get("captions", [])
    if not isinstance(captions, list) or not all(
        isinstance(c, str) and c.strip() for c in captions
    ):
        raise InputError(
            f"{manifest}: 'captions' of {record['image']} must be a list of non-empty strings"
        )
    references = [normalise_caption(caption) for caption in captions]
    first = normalise_caption(record["caption"])
    return references if first in references else [first, *references]


def _matches(hyps: list[str], references: list[list[str]]) -> int:
    """How many hypotheses equal one of their references (ignoring spaces)."""
    return sum(
        any(hyp.split() == ref.split() for ref in refs)
        for hyp, refs in zip(hyps, references, strict=True)
    )


def _pixels(record: dict) -> int:
    """Width times height of a manifest line's image: its ``width``/``height``, else the
    file header."""
    if isinstance(record.get("width"), int) and isinstance(record.get("height"), int):
        return record["width"] * record["height"]
    return image_pixels(record["image"])


class _ImageDataset(Dataset):
    """Item ``i`` -> ``(uint8 image (3, S, S), caption, path, references)`` of
    ``(path, caption, references)`` items: row ``i`` of ``pixels`` (preloaded) when given,
    else read from its file and resized to ``image_size``."""

    def __init__(
        self,
        items: list[tuple[str, str, list[str]]],
        image_size: int,
        pixels: Tensor | None = None,
    ) -> None:
        self.items = items
        self.transform = build_image_transform(image_size)
        self.pixels = pixels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, str, str, list[str]]:
        path, caption, references = self.items[index]
        if self.pixels is not None:
            return self.pixels[index], caption, path, references
        return self.transform(load_image(path)), caption, path, references


def _collate_batch(items: list[tuple[Tensor, str, str, list[str]]]) -> SourceBatch:
    images, captions, paths, references = zip(*items, strict=True)
    sources, lengths = ImageData.collate_sources(list(images))
    return SourceBatch(sources, lengths, list(captions), list(paths), list(references))
