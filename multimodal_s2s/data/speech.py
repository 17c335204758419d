"""Speech recognition data: JSON Lines manifests of (audio, text), length-bucketed batches of
padded waveforms, training-time waveform augmentation, and the log-mel frontend.

Dimension letters: ``B`` batch, ``N`` samples.
"""

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from multimodal_s2s.data.audio import audio_duration, load_audio
from multimodal_s2s.data.base import (
    DataSource,
    Dropped,
    ManifestDataConfig,
    SourceBatch,
    pad_sequences,
)
from multimodal_s2s.data.batching import WHOLE, BucketBatchSampler, Shard, shard_batches
from multimodal_s2s.data.manifest import read_manifest
from multimodal_s2s.errors import InputError
from multimodal_s2s.frontends.features import (
    FeatureConfig,
    FeaturePipeline,
    SpeechViews,
    augment_waveform,
    perturbed_length,
)
from multimodal_s2s.metrics import char_error_rate, wer_alignments, word_error_rate


@dataclass
class SpeechDataConfig(ManifestDataConfig):
    """Manifests and batching of a speech corpus (splits as in ``ManifestDataConfig``).

    A batch holds at most ``max_frames`` padded feature frames (batch size times the
    longest utterance, in ``hop_ms`` frames, after speed perturbation: each training
    utterance's factor is drawn per epoch before batching, so batches are packed by the
    lengths they will have) and at most the trainer's ``batch_size`` utterances. Training
    utterances longer than ``max_duration`` seconds are skipped. ``noise_files`` feed
    additive-noise augmentation (see ``features.noise_prob``). The feature normaliser is
    fitted on at most ``normalizer_utterances`` random training utterances. The first
    ``sorted_epochs`` training epochs visit batches shortest first (SortaGrad), so the
    attention learns to align on short utterances before long ones; later epochs shuffle.
    ``test_views``: the speeds and frequency warps beam search decodes each utterance in
    (``SpeechViews``).
    """

    name: str = "speech"
    features: FeatureConfig = field(default_factory=FeatureConfig)
    max_frames: int = 20000
    max_duration: float = 30.0
    noise_files: list[str] = field(default_factory=list)
    normalizer_utterances: int = 1000
    sorted_epochs: int = 0
    test_views: SpeechViews = field(default_factory=SpeechViews)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_frames < 1:
            raise InputError(f"data.max_frames must be >= 1, got {self.max_frames}")
        if self.max_duration <= 0:
            raise InputError(f"data.max_duration must be positive, got {self.max_duration}")
        if self.normalizer_utterances < 1:
            raise InputError("data.normalizer_utterances must be >= 1")


class _Utterance:
    """One manifest record: audio path, transcript and length in samples."""

    __slots__ = ("audio", "text", "samples")

    def __init__(self, audio: str, text: str, samples: int) -> None:
        self.audio = audio
        self.text = text
        self.samples = samples


class SpeechData(DataSource):
    """Speech splits read lazily from manifests; batches are padded waveforms ``(B, N)``."""

    config: SpeechDataConfig

    def __init__(self, config: SpeechDataConfig) -> None:
        super().__init__(config)
        self._splits: dict[str, list[_Utterance]] = {}
        self._noises: list[Tensor] | None = None

    @property
    def eval_splits(self) -> list[str]:
        return ["dev", *self.config.test]

    def texts(self, split: str) -> list[str]:
        return [utterance.text for utterance in self._utterances(split)]

    def audio_seconds(self, split: str) -> float:
        """Total audio duration of a split in seconds (the denominator of a real-time factor)."""
        samples = sum(utterance.samples for utterance in self._utterances(split))
        return samples / self.config.features.sample_rate

    def score(self, refs: list[str], hyps: list[str]) -> dict[str, float]:
        """Corpus ``wer`` and ``cer`` (jiwer: total edits over total reference words/chars)."""
        return {"wer": word_error_rate(refs, hyps), "cer": char_error_rate(refs, hyps)}

    def details(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each record plus its word alignment: ``substitutions``, ``deletions``,
        ``insertions``, ``hits`` and the three-line ``alignment`` drawing."""
        alignments = wer_alignments([r["ref"] for r in records], [r["hyp"] for r in records])
        return [
            {**record, **{k: v for k, v in alignment.items() if k not in ("ref", "hyp")}}
            for record, alignment in zip(records, alignments, strict=True)
        ]

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
        """A ``DataLoader`` of ``SourceBatch(sources (B, N), lengths (B,) samples, texts,
        keys = audio paths)``, from batch ``start`` of the epoch's order on (of this
        ``shard``'s batches; in training the frame and size caps apply per process)."""
        utterances = self._utterances(split)
        features = self.config.features
        speeds = _speeds(len(utterances), features.speed_factors if train else [1.0], seed, epoch)
        frames = [
            _frames(perturbed_length(u.samples, features.sample_rate, speed), features)
            for u, speed in zip(utterances, speeds, strict=True)
        ]
        shuffle = train and epoch >= self.config.sorted_epochs
        processes = shard.world if train else 1
        sampler = BucketBatchSampler(
            frames,
            self.config.max_frames * processes,
            max_batch_size=batch_size * processes,
            shuffle=shuffle,
            seed=seed,
        )
        sampler.set_epoch(epoch)
        dataset = _SpeechDataset(
            utterances,
            features,
            noises=self._noise_waveforms() if train else [],
            augment_seed=f"{seed}:{epoch}" if train else None,
            speeds=speeds,
        )
        return DataLoader(
            dataset,
            batch_sampler=shard_batches(list(sampler), shard, train, frames)[start:],
            collate_fn=_collate_batch,
            num_workers=self.config.num_workers,
        )

    @torch.no_grad()
    def fit_frontend(self, frontend: nn.Module | None) -> None:
        """Fit the normaliser of a ``FeaturePipeline`` on up to ``normalizer_utterances``
        training utterances (a fixed random subset), without augmentation."""
        if not isinstance(frontend, FeaturePipeline):
            raise InputError("speech data needs the FeaturePipeline frontend it builds")
        utterances = self._utterances("train")
        count = min(len(utterances), self.config.normalizer_utterances)
        subset = random.Random("normalizer").sample(utterances, count)
        features = self.config.features
        sampler = BucketBatchSampler(
            [_frames(u.samples, features) for u in subset], self.config.max_frames, shuffle=False
        )
        loader = DataLoader(
            _SpeechDataset(subset, features, noises=[], augment_seed=None),
            batch_sampler=sampler,
            collate_fn=_collate_batch,
            num_workers=self.config.num_workers,
        )
        device = frontend.normalizer.mean.device
        was_training = frontend.training
        frontend.eval()
        frontend.normalizer.fit(
            frontend.frontend(batch.sources.to(device), batch.lengths.to(device))
            for batch in loader
        )
        frontend.train(was_training)

    @staticmethod
    def read_source(config: SpeechDataConfig, path: Path) -> Tensor:
        """An audio file as a ``(N,)`` mono waveform at ``config.features.sample_rate``."""
        return load_audio(path, config.features.sample_rate)

    @staticmethod
    def collate_sources(sources: list[Tensor]) -> tuple[Tensor, Tensor]:
        """``[(N_i,)]`` -> ``(B, max N_i)`` zero-padded waveforms and ``(B,)`` lengths."""
        return pad_sequences(sources)

    def _utterances(self, split: str) -> list[_Utterance]:
        if split not in self._splits:
            self._splits[split] = self._read_split(split)
        return self._splits[split]

    def _read_split(self, split: str) -> list[_Utterance]:
        manifest = self._manifest_path(split)
        sample_rate = self.config.features.sample_rate
        utterances = [
            _Utterance(record["audio"], record["text"], _samples(record, manifest, sample_rate))
            for record in read_manifest(manifest)
        ]
        if split == "train":
            utterances = self._drop_long(utterances, manifest)
        if not utterances:
            raise InputError(f"{manifest}: manifest of split {split!r} has no usable utterance")
        return utterances

    def _manifest_path(self, split: str) -> str:
        paths = {"train": self.config.train, "dev": self.config.dev, **self.config.test}
        if split not in paths:
            raise InputError(f"speech data has no split {split!r} ({', '.join(paths)})")
        if not paths[split]:
            key = split if split in ("train", "dev") else f"test.{split}"
            raise InputError(f"speech data: no manifest for split {split!r} (set data.{key})")
        return paths[split]

    def _drop_long(self, utterances: list[_Utterance], manifest: str) -> list[_Utterance]:
        limit = round(self.config.max_duration * self.config.features.sample_rate)
        kept = [u for u in utterances if u.samples <= limit]
        if len(kept) < len(utterances):
            reason = f"longer than data.max_duration={self.config.max_duration} s"
            self.dropped.append(Dropped("train", len(utterances) - len(kept), reason))
        return kept

    def _noise_waveforms(self) -> list[Tensor]:
        if self._noises is None:
            rate = self.config.features.sample_rate
            self._noises = [load_audio(path, rate) for path in self.config.noise_files]
        return self._noises


class _SpeechDataset(Dataset):
    """Item ``i`` -> ``(waveform (N,), text, audio path)``; with ``augment_seed``, the waveform
    is played ``speeds[i]`` times faster and augmented with randomness seeded by
    ``(augment_seed, i)`` alone (replayable)."""

    def __init__(
        self,
        utterances: list[_Utterance],
        features: FeatureConfig,
        noises: list[Tensor],
        augment_seed: str | None,
        speeds: list[float] | None = None,
    ) -> None:
        self.utterances = utterances
        self.features = features
        self.noises = noises
        self.augment_seed = augment_seed
        self.speeds = speeds or [1.0] * len(utterances)

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> tuple[Tensor, str, str]:
        utterance = self.utterances[index]
        wave = load_audio(utterance.audio, self.features.sample_rate)
        if self.augment_seed is not None:
            rng = random.Random(f"speech-augment:{self.augment_seed}:{index}")
            wave = augment_waveform(wave, self.features, self.speeds[index], self.noises, rng)
        return wave, utterance.text, utterance.audio


def _collate_batch(items: list[tuple[Tensor, str, str]]) -> SourceBatch:
    waves, texts, keys = zip(*items, strict=True)
    sources, lengths = pad_sequences(list(waves))
    return SourceBatch(sources, lengths, list(texts), list(keys))


def _samples(record: dict, manifest: str, sample_rate: int) -> int:
    """Length in samples at ``sample_rate``, from the record's ``duration`` or the header."""
    duration = record.get("duration")
    if duration is None:
        duration = audio_duration(record["audio"])
    elif isinstance(duration, bool) or not isinstance(duration, (int, float)):
        raise InputError(f"{manifest}: {record['audio']}: 'duration' must be a number")
    return round(duration * sample_rate)


def _speeds(count: int, factors: list[float], seed: int, epoch: int) -> list[float]:
    """Each of ``count`` utterances' speed factor in one epoch, drawn from ``factors``; a
    function of ``(seed, epoch)`` alone, so a resumed epoch draws the same ones."""
    rng = random.Random(f"speech-speed:{seed}:{epoch}")
    return [rng.choice(factors) for _ in range(count)]


def _frames(samples: int, features: FeatureConfig) -> int:
    """Feature frames of a waveform: ``1 + N // hop_length`` (see ``LogMelFrontend``)."""
    return 1 + samples // features.hop_length
