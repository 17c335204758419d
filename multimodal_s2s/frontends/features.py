"""Batched speech features: log-mel filterbanks, global normalisation, SpecAugment,
vocal tract length perturbation, and waveform augmentation (speed perturbation, additive
noise).

Dimension letters: ``B`` batch, ``N`` samples, ``T`` frames, ``F`` mel bins, ``K`` linear
frequency bins.
"""

import functools
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torchaudio.transforms
from torch import Tensor, nn

from multimodal_s2s.errors import InputError
from multimodal_s2s.masking import padding_mask

LengthT = TypeVar("LengthT", int, Tensor)

_LOG_FLOOR = 1e-6
_STD_FLOOR = 1e-5
_WARP_CUTOFF = 0.8  # share of the Nyquist frequency below which VTLP scales linearly


@dataclass
class FeatureConfig:
    """Feature extraction and augmentation settings.

    Frames are ``win_ms`` long every ``hop_ms``; the FFT size is the smallest power of two
    holding a window (512 for 25 ms at 16 kHz). SpecAugment masks up to
    ``freq_mask_width`` bins ``num_freq_masks`` times and up to ``time_mask_width``
    frames ``num_time_masks`` times. Training waveforms are sped up or slowed down by a
    factor drawn from ``speed_factors`` and, with probability ``noise_prob``, mixed with
    noise at an SNR drawn uniformly from ``[min_snr_db, max_snr_db]``. With
    ``max_freq_warp`` > 0, each training utterance's frequency axis is scaled by a factor
    drawn uniformly from ``[1 - max_freq_warp, 1 + max_freq_warp]`` before the mel
    filterbank (vocal tract length perturbation, :func:`warp_frequencies`). With
    ``utterance_mean_norm``, each utterance's per-bin mean over its valid frames is
    subtracted before the global normalisation (mean normalisation in the log-mel domain,
    which removes a fixed channel or voice colouring and the recording level). With
    ``stack_frames`` = n > 1, every n consecutive frames (after SpecAugment, whose time masks
    count the unstacked frames) are joined into one of ``n * num_mel_bins`` features at n
    times the hop, the last incomplete group dropped: the encoder's ``input_dim`` must be
    ``n * num_mel_bins``. With ``level_range_db`` ``[low, high]``, a waveform whose loud 10
    ms frames (the 95th percentile of their power, :func:`loud_level_db`) lie outside that
    range of dBFS is first scaled to bring them to its nearer end, in training and decoding
    alike: set it to the levels of the training audio, and a much quieter or louder
    recording is heard at a level the model knows (``low == high`` scales every waveform to
    one level).
    """

    sample_rate: int = 16000
    num_mel_bins: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    num_freq_masks: int = 2
    freq_mask_width: int = 27
    num_time_masks: int = 2
    time_mask_width: int = 40
    speed_factors: list[float] = field(default_factory=lambda: [1.0])
    noise_prob: float = 0.0
    min_snr_db: float = 5.0
    max_snr_db: float = 20.0
    max_freq_warp: float = 0.0
    utterance_mean_norm: bool = False
    stack_frames: int = 1
    level_range_db: list[float] | None = None

    def __post_init__(self) -> None:
        positive = ("sample_rate", "num_mel_bins", "win_ms", "hop_ms")
        for name in positive:
            if getattr(self, name) <= 0:
                raise InputError(f"feature config: {name} must be positive")
        counts = ("num_freq_masks", "freq_mask_width", "num_time_masks", "time_mask_width")
        for name in counts:
            if getattr(self, name) < 0:
                raise InputError(f"feature config: {name} must be >= 0")
        if self.hop_length < 1 or self.win_length < self.hop_length:
            raise InputError("feature config: need 1 sample <= hop_ms <= win_ms")
        if not self.speed_factors or any(f <= 0 for f in self.speed_factors):
            raise InputError("feature config: speed_factors must be a non-empty list of > 0")
        if not 0.0 <= self.noise_prob <= 1.0:
            raise InputError("feature config: noise_prob must be in [0, 1]")
        if self.min_snr_db > self.max_snr_db:
            raise InputError("feature config: min_snr_db must be <= max_snr_db")
        if not 0.0 <= self.max_freq_warp < 1.0:
            raise InputError("feature config: max_freq_warp must be in [0, 1)")
        if self.stack_frames < 1:
            raise InputError("feature config: stack_frames must be >= 1")
        levels = self.level_range_db
        if levels is not None and (len(levels) != 2 or not levels[0] <= levels[1] <= 0):
            raise InputError("feature config: level_range_db must be [low, high] <= 0 dBFS")

    @property
    def win_length(self) -> int:
        """Window length in samples (400 at 16 kHz, 25 ms)."""
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        """Hop in samples (160 at 16 kHz, 10 ms)."""
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def n_fft(self) -> int:
        """Smallest power of two >= ``win_length`` (512 at 16 kHz, 25 ms)."""
        return 1 << (self.win_length - 1).bit_length()


@dataclass
class SpeechViews:
    """Test-time views of an utterance (``data.test_views`` of a speech config).

    Beam search (``search.decode.decode_batch``) decodes every utterance once per
    combination of a speed and a warp (``variants``) and keeps its best-scoring hypothesis
    (maximum-likelihood selection, as in vocal tract length normalisation).
    ``speed_factors``: the audio played that many times as fast, as speed perturbation does
    in training; ``warp_factors``: the spectrum's frequency axis scaled, as vocal tract
    length perturbation does; an empty list: that change is not made.
    """

    speed_factors: list[float] = field(default_factory=list)
    warp_factors: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("speed_factors", "warp_factors"):
            factors = getattr(self, name)
            if any(factor <= 0 for factor in factors):
                raise InputError(f"data.test_views.{name} must be > 0, got {factors}")

    def variants(self) -> list[dict[str, Any]]:
        """Keyword arguments of ``FeaturePipeline.forward``, one per (speed, warp) pair;
        ``[{}]`` when neither is set."""
        speeds = [{"speed": factor} for factor in self.speed_factors] or [{}]
        warps = [{"warp": factor} for factor in self.warp_factors] or [{}]
        return [{**speed, **warp} for speed in speeds for warp in warps]


def frame_levels_db(waveforms: Tensor, frame: int) -> Tensor:
    """``(..., N)`` waveforms -> ``(..., N // frame)`` mean power in dB of their consecutive
    frames of ``frame`` samples (a last incomplete frame dropped; silence is -100 dB)."""
    count = waveforms.shape[-1] // frame
    frames = waveforms[..., : count * frame].reshape(*waveforms.shape[:-1], -1, frame)
    return 10 * torch.log10(frames.double().square().mean(dim=-1) + 1e-10)


def loud_level_db(waveforms: Tensor, lengths: Tensor, sample_rate: int) -> Tensor:
    """The level in dBFS of each waveform's loud 10 ms frames: the 95th percentile of the
    power of its frames before ``lengths`` (its first frame for one shorter than a frame).

    Args:
        waveforms: ``(B, N)`` padded.
        lengths: ``(B,)`` int64 valid samples.

    Returns:
        ``(B,)`` float64.
    """
    frame = max(1, sample_rate // 100)
    padded = nn.functional.pad(waveforms, (0, frame))
    levels = frame_levels_db(padded, frame)
    counts = (lengths // frame).clamp(min=1).unsqueeze(1)
    valid = torch.arange(levels.shape[1], device=levels.device) < counts
    # torch.nanquantile's linear interpolation, written with a sort so that it exports
    # (ONNX has no quantile): valid levels first in ascending order, padding after them
    ordered = levels.masked_fill(~valid, math.inf).sort(dim=1).values
    rank = 0.95 * (counts - 1).to(levels.dtype)
    below = rank.floor().long()
    low, high = ordered.gather(1, below), ordered.gather(1, rank.ceil().long())
    return torch.lerp(low, high, rank - below.to(rank.dtype)).squeeze(1)


def num_frames(num_samples: Tensor, hop_length: int) -> Tensor:
    """Frames of centred analysis: ``T = 1 + N // hop_length`` (elementwise)."""
    return num_samples // hop_length + 1


class LogMelFrontend(nn.Module):
    """Log-mel filterbanks of a padded batch of waveforms.

    Frames are centred: frame ``t`` covers samples ``[t*hop - n_fft/2, t*hop + n_fft/2)``,
    zeros outside ``[0, N)``. Padding each waveform with zeros (rather than reflecting)
    makes a waveform's frames identical whether it is computed alone or in a padded batch.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        super().__init__()
        config = config or FeatureConfig()
        self.sample_rate = config.sample_rate
        self.hop_length = config.hop_length
        self.n_fft = config.n_fft
        self.num_mel_bins = config.num_mel_bins
        self.max_freq_warp = config.max_freq_warp
        self.utterance_mean_norm = config.utterance_mean_norm
        self.level_range_db = config.level_range_db
        self.mel_spectrogram = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            win_length=config.win_length,
            hop_length=config.hop_length,
            n_mels=config.num_mel_bins,
            center=False,
            power=2.0,
        )

    def forward(
        self,
        waveforms: Tensor,
        lengths: Tensor,
        warp: float | None = None,
        speed: float | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Compute features.

        Args:
            waveforms: ``(B, N)`` float, padded; samples at or after ``lengths`` are ignored.
            lengths: ``(B,)`` int64, valid samples of each waveform.
            warp: a frequency-warp factor for every utterance (``warp_frequencies``), in
                either mode, instead of training's random ones; 1 or ``None``: none.
            speed: play every utterance this many times as fast first (``speed_perturb``;
                lengths become ``perturbed_length(lengths)``); 1 or ``None``: as it is.

        Returns:
            ``(features, frame_lengths)``: ``(B, T, F)`` with ``T = 1 + N // hop_length``
            and padded frames set to 0, and ``(B,)`` int64 ``1 + lengths // hop_length``
            (``N`` and ``lengths`` after the speed change).
        """
        waveforms = waveforms.masked_fill(padding_mask(lengths, waveforms.shape[1]), 0.0)
        if self.level_range_db is not None:
            level = loud_level_db(waveforms, lengths, self.sample_rate)
            change = level.clamp(*self.level_range_db) - level
            waveforms = waveforms * (10 ** (change / 20)).to(waveforms.dtype).unsqueeze(1)
        if speed is not None and speed != 1.0:
            # the resampling filter rings past each utterance's end: cut there, as alone
            waveforms = speed_perturb(waveforms, self.sample_rate, speed)
            lengths = perturbed_length(lengths, self.sample_rate, speed)
            waveforms = waveforms.masked_fill(padding_mask(lengths, waveforms.shape[1]), 0.0)
        half = self.n_fft // 2
        padded = nn.functional.pad(waveforms, (half, half))
        spectrum = self.mel_spectrogram.spectrogram(padded)
        if warp is not None and warp != 1.0:
            spectrum = warp_frequencies(spectrum, spectrum.new_full(spectrum.shape[:1], warp))
        elif warp is None and self.training and self.max_freq_warp > 0:
            factors = torch.empty(spectrum.shape[0], device=spectrum.device)
            factors.uniform_(1.0 - self.max_freq_warp, 1.0 + self.max_freq_warp)
            spectrum = warp_frequencies(spectrum, factors)
        power = self.mel_spectrogram.mel_scale(spectrum)
        features = power.clamp_min(_LOG_FLOOR).log().transpose(1, 2)
        frame_lengths = num_frames(lengths, self.hop_length)
        padding = padding_mask(frame_lengths, features.shape[1]).unsqueeze(-1)
        features = features.masked_fill(padding, 0.0)
        if self.utterance_mean_norm:
            means = features.sum(dim=1, keepdim=True) / frame_lengths.view(-1, 1, 1)
            features = (features - means).masked_fill(padding, 0.0)
        return features, frame_lengths


def warp_frequencies(spectrum: Tensor, factors: Tensor) -> Tensor:
    """Vocal tract length perturbation (Jaitly and Hinton, 2013) of linear spectra.

    Output bin ``k`` of utterance ``b`` reads the input at frequency ``k * factors[b]``
    (linearly interpolated) up to a cutoff, ``0.8 * (K - 1) * min(factor, 1) / factor``;
    above it the map is linear again so that the Nyquist bin stays the Nyquist bin. A
    factor above 1 moves energy to lower bins (a longer vocal tract), below 1 to higher ones.

    Args:
        spectrum: ``(B, K, T)`` non-negative spectra, ``K`` bins from 0 Hz to Nyquist.
        factors: ``(B,)`` positive warp factors; 1 leaves an utterance unchanged.

    Returns:
        ``(B, K, T)`` warped spectra.
    """
    top = spectrum.shape[1] - 1
    bins = torch.arange(top + 1, device=spectrum.device, dtype=spectrum.dtype)
    factor = factors.to(spectrum.dtype).unsqueeze(1)
    cutoff = _WARP_CUTOFF * top * factor.clamp(max=1.0) / factor
    above = top - (top - cutoff * factor) * (top - bins) / (top - cutoff)
    source = torch.where(bins <= cutoff, bins * factor, above).clamp(0, top)
    lower = source.floor().long().clamp(max=top - 1)
    weight = (source - lower).unsqueeze(-1)
    index = lower.unsqueeze(-1).expand(-1, -1, spectrum.shape[2])
    return spectrum.gather(1, index) * (1 - weight) + spectrum.gather(1, index + 1) * weight


class GlobalNormalizer(nn.Module):
    """Per-bin mean/variance normalisation with statistics kept as buffers (checkpointed)."""

    mean: Tensor
    std: Tensor

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))

    @torch.no_grad()
    def fit(self, batches: Iterable[tuple[Tensor, Tensor]]) -> "GlobalNormalizer":
        """Set mean/std from valid frames only.

        Args:
            batches: ``(features, lengths)`` pairs, ``(B, T, F)`` and ``(B,)``.

        Raises:
            InputError: no valid frame was seen.
        """
        total = torch.zeros_like(self.mean, dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        count = 0
        for features, lengths in batches:
            valid = features[~padding_mask(lengths, features.shape[1])].to(total)
            total += valid.sum(dim=0)
            total_sq += valid.square().sum(dim=0)
            count += valid.shape[0]
        if count == 0:
            raise InputError("cannot fit feature normaliser: no valid frames")
        mean = total / count
        variance = (total_sq / count - mean.square()).clamp_min(0.0)
        self.mean.copy_(mean)
        self.std.copy_(variance.sqrt().clamp_min(_STD_FLOOR))
        return self

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        """Normalise ``(B, T, F)`` features; padded frames (``t >= lengths``) stay 0."""
        normalized = (features - self.mean) / self.std
        padding = padding_mask(lengths, features.shape[1]).unsqueeze(-1)
        return normalized.masked_fill(padding, 0.0)


class SpecAugment(nn.Module):
    """Frequency and time masking (set to 0), active only in training mode.

    Each mask has a width drawn uniformly from ``[0, max_width]``; time masks are also no
    wider than, and lie within, each utterance's valid frames.
    """

    def __init__(
        self,
        num_freq_masks: int = 2,
        freq_mask_width: int = 27,
        num_time_masks: int = 2,
        time_mask_width: int = 40,
    ) -> None:
        super().__init__()
        self.num_freq_masks = num_freq_masks
        self.freq_mask_width = freq_mask_width
        self.num_time_masks = num_time_masks
        self.time_mask_width = time_mask_width

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        """Mask ``(B, T, F)`` features whose valid frames are ``(B,)`` ``lengths``."""
        if not self.training:
            return features
        batch, frames, bins = features.shape
        device = features.device
        bin_limit = torch.full((batch,), bins, device=device)
        freq = _random_spans(bin_limit, self.num_freq_masks, self.freq_mask_width, bins)
        time = _random_spans(lengths.to(device), self.num_time_masks, self.time_mask_width, frames)
        masked = freq.unsqueeze(1) | time.unsqueeze(2)
        return features.masked_fill(masked, 0.0)


def _random_spans(limits: Tensor, count: int, max_width: int, size: int) -> Tensor:
    """``(B, size)`` bool, True inside ``count`` random spans lying within ``[0, limits[b])``."""
    positions = torch.arange(size, device=limits.device)
    covered = torch.zeros(limits.shape[0], size, dtype=torch.bool, device=limits.device)
    widest = limits.clamp(max=max_width).unsqueeze(1)
    for _ in range(count):
        width = (torch.rand(widest.shape, device=limits.device) * (widest + 1)).floor().long()
        room = limits.unsqueeze(1) - width + 1
        start = (torch.rand(room.shape, device=limits.device) * room).floor().long()
        covered |= (positions >= start) & (positions < start + width)
    return covered


class FeaturePipeline(nn.Module):
    """Log-mel frontend, global normalisation, SpecAugment and frame stacking as one module,
    with ``output_dim`` features per output frame.

    Keeping this inside a model stores the normaliser statistics in its checkpoints.
    ``variants``: the test-time changes ``forward`` takes (``SpeechViews``).
    """

    variants = frozenset({"speed", "warp"})

    def __init__(self, config: FeatureConfig | None = None) -> None:
        super().__init__()
        config = config or FeatureConfig()
        self.frontend = LogMelFrontend(config)
        self.normalizer = GlobalNormalizer(config.num_mel_bins)
        self.spec_augment = SpecAugment(
            config.num_freq_masks,
            config.freq_mask_width,
            config.num_time_masks,
            config.time_mask_width,
        )
        self.stack_frames = config.stack_frames
        self.output_dim = config.stack_frames * config.num_mel_bins

    def forward(
        self,
        waveforms: Tensor,
        lengths: Tensor,
        warp: float | None = None,
        speed: float | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``(B, N)`` waveforms and ``(B,)`` lengths to ``(B, T // n, n * F)`` features and
        ``(B,)`` frame lengths ``T_b // n`` (``n = stack_frames``), normalised, and masked in
        training mode. ``warp``, ``speed``: as for ``LogMelFrontend``."""
        features, frame_lengths = self.frontend(waveforms, lengths, warp, speed)
        features = self.spec_augment(self.normalizer(features, frame_lengths), frame_lengths)
        return stack_frames(features, frame_lengths, self.stack_frames)


def stack_frames(features: Tensor, lengths: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """Join every ``count`` consecutive frames: ``(B, T, F)`` -> ``(B, T // count, count * F)``
    and lengths ``(B,)`` -> ``lengths // count`` (a last incomplete group is dropped, so an
    utterance's stacked frames are the same alone and in a padded batch)."""
    if count == 1:
        return features, lengths
    batch, frames, bins = features.shape
    kept = frames // count * count
    stacked = features[:, :kept].reshape(batch, kept // count, count * bins)
    return stacked, lengths // count


def speed_perturb(wave: Tensor, sample_rate: int, factor: float) -> Tensor:
    """Play ``(..., N)`` audio ``factor`` times faster by resampling (pitch shifts too).

    torchaudio's resampling (``transforms.Resample``, its windowed-sinc kernel built once per
    rate pair) with its polyphase filter applied as one matrix product over strided windows
    of the waveform instead of a strided ``conv1d``: the same arithmetic up to float
    rounding, faster on the CPU, which matters in a data-loading worker that shares the
    training's cores.

    Returns:
        ``(..., perturbed_length(N, sample_rate, factor))``, about ``N / factor``.
    """
    if factor <= 0:
        raise InputError(f"speed factor must be positive, got {factor}")
    source_rate = round(sample_rate * factor)
    if source_rate == sample_rate:
        return wave
    resampler = _resampler(source_rate, sample_rate)
    step = resampler.orig_freq // resampler.gcd
    phases = resampler.kernel.to(wave.device, wave.dtype).squeeze(1)
    padded = nn.functional.pad(wave, (resampler.width, resampler.width + step))
    windows = padded.unfold(-1, phases.size(1), step)
    resampled = (windows @ phases.t()).flatten(-2)
    return resampled[..., : perturbed_length(wave.size(-1), sample_rate, factor)]


def perturbed_length(samples: LengthT, sample_rate: int, factor: float) -> LengthT:
    """The length of ``samples`` (an int or an int64 tensor of lengths) played ``factor``
    times faster by ``speed_perturb`` (torchaudio's resampled length,
    ``ceil(N * sample_rate / round(sample_rate * factor))``, in exact integer arithmetic)."""
    return -(-samples * sample_rate // round(sample_rate * factor))


@functools.lru_cache(maxsize=16)
def _resampler(source_rate: int, target_rate: int) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(source_rate, target_rate)


def add_noise(wave: Tensor, noise: Tensor, snr_db: float) -> Tensor:
    """Mix ``noise`` into a ``(N,)`` waveform at exactly ``snr_db`` (mean power ratio).

    ``noise`` ``(M,)`` is tiled or cut to ``N`` samples. The result is not clipped.

    Raises:
        InputError: the noise is empty or silent.
    """
    if noise.numel() == 0:
        raise InputError("noise waveform is empty")
    repeats = math.ceil(wave.shape[-1] / noise.shape[-1])
    noise = noise.repeat(repeats)[: wave.shape[-1]]
    noise_power = noise.square().mean()
    if noise_power == 0:
        raise InputError("noise waveform is silent")
    signal_power = wave.square().mean()
    scale = torch.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return wave + scale * noise


def augment_waveform(
    wave: Tensor,
    config: FeatureConfig,
    speed: float = 1.0,
    noises: Sequence[Tensor] = (),
    rng: random.Random | None = None,
) -> Tensor:
    """Training-time waveform augmentation of a ``(N,)`` waveform.

    Plays it ``speed`` times faster (the caller draws the factor from
    ``config.speed_factors``, so that batches can be packed by the perturbed lengths), then,
    with probability ``config.noise_prob`` and if ``noises`` is not empty, mixes in a random
    noise at a random SNR.
    """
    rng = rng or random.Random()
    wave = speed_perturb(wave, config.sample_rate, speed)
    if noises and rng.random() < config.noise_prob:
        snr_db = rng.uniform(config.min_snr_db, config.max_snr_db)
        wave = add_noise(wave, rng.choice(noises), snr_db)
    return wave
