"""Tiny built-in toy tasks: digit names from 'audio-like' feature frames, colour words from
'image-like' quadrant pictures. They need no files and train in seconds (demo and tests)."""

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from multimodal_s2s.data.base import DataSource, SourceBatch, pad_sequences
from multimodal_s2s.data.batching import WHOLE, Shard, shard_batches
from multimodal_s2s.errors import InputError

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COLOURS = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "white": (1.0, 1.0, 1.0),
}


@dataclass
class ToySequenceConfig:
    """Each digit word is ``3..6`` noisy frames of its own random ``feature_dim`` vector."""

    name: str = "toy_sequences"
    num_train: int = 256
    num_dev: int = 32
    max_words: int = 4
    feature_dim: int = 80  # the default encoder's input_dim
    noise: float = 0.1
    seed: int = 0


@dataclass
class ToyImageConfig:
    """``image_size`` squares whose four quadrants have colours; caption lists them
    in reading order (top left, top right, bottom left, bottom right)."""

    name: str = "toy_images"
    num_train: int = 256
    num_dev: int = 32
    image_size: int = 32
    noise: float = 0.05
    seed: int = 0


class _ToyData(DataSource):
    """Examples are generated in memory from the seed; split ``dev`` uses another stream."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self._examples = {
            "train": self._generate(config.num_train, config.seed),
            "dev": self._generate(config.num_dev, config.seed + 1),
        }

    def _split(self, split: str) -> list[tuple[Tensor, str]]:
        if split not in self._examples:
            raise InputError(f"toy data has no split {split!r} (train, dev)")
        return self._examples[split]

    def texts(self, split: str) -> list[str]:
        return [text for _, text in self._split(split)]

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
    ) -> list[SourceBatch]:
        examples = self._split(split)
        order = list(range(len(examples)))
        if train:
            random.Random(f"{seed}-{epoch}").shuffle(order)
        size = batch_size * shard.world if train else batch_size
        chunks = [order[first : first + size] for first in range(0, len(order), size)]
        sizes = [len(source) for source, _ in examples]
        batches = []
        for chunk in shard_batches(chunks, shard, train, sizes)[start:]:
            sources, lengths = self.collate_sources([examples[i][0] for i in chunk])
            texts = [examples[i][1] for i in chunk]
            batches.append(SourceBatch(sources, lengths, texts, [f"{split}-{i}" for i in chunk]))
        return batches

    @staticmethod
    def read_source(config, path: Path) -> Tensor:
        if not path.is_file():
            raise InputError(f"{path}: file not found")
        try:
            return torch.load(path, weights_only=True)
        except Exception as error:
            raise InputError(f"{path}: not a saved toy source tensor ({error})") from error


class ToySequences(_ToyData):
    def _generate(self, count: int, seed: int) -> list[tuple[Tensor, str]]:
        config = self.config
        prototypes = torch.randn(
            len(DIGIT_WORDS), config.feature_dim, generator=torch.Generator().manual_seed(1234)
        )
        rng = random.Random(seed)
        noise = torch.Generator().manual_seed(seed)
        examples = []
        for _ in range(count):
            words = rng.choices(range(len(DIGIT_WORDS)), k=rng.randint(1, config.max_words))
            frames = torch.cat([prototypes[w].repeat(rng.randint(3, 6), 1) for w in words])
            frames = frames + config.noise * torch.randn(frames.shape, generator=noise)
            examples.append((frames, " ".join(DIGIT_WORDS[w] for w in words)))
        return examples

    @staticmethod
    def collate_sources(sources: list[Tensor]) -> tuple[Tensor, Tensor]:
        return pad_sequences(sources)


class ToyImages(_ToyData):
    def _generate(self, count: int, seed: int) -> list[tuple[Tensor, str]]:
        size, half = self.config.image_size, self.config.image_size // 2
        names = list(COLOURS)
        rng = random.Random(seed)
        noise = torch.Generator().manual_seed(seed)
        examples = []
        for _ in range(count):
            quadrants = rng.choices(names, k=4)
            image = torch.zeros(3, size, size)
            for index, name in enumerate(quadrants):
                top, left = (index // 2) * half, (index % 2) * half
                colour = torch.tensor(COLOURS[name]).view(3, 1, 1)
                image[:, top : top + half, left : left + half] = colour
            image += self.config.noise * torch.randn(image.shape, generator=noise)
            examples.append((image, " ".join(quadrants)))
        return examples

    @staticmethod
    def collate_sources(sources: list[Tensor]) -> tuple[Tensor, None]:
        return torch.stack(sources), None
