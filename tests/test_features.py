import math
import random

import pytest
import torch
import torchaudio
from torch import nn

from multimodal_s2s.errors import InputError
from multimodal_s2s.frontends.features import (
    FeatureConfig,
    FeaturePipeline,
    GlobalNormalizer,
    LogMelFrontend,
    SpecAugment,
    add_noise,
    augment_waveform,
    frame_levels_db,
    loud_level_db,
    perturbed_length,
    speed_perturb,
    stack_frames,
    warp_frequencies,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _padded_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    waves = torch.rand(len(lengths), max(lengths), generator=generator) * 2 - 1
    lengths_tensor = torch.tensor(lengths)
    waves[torch.arange(max(lengths)) >= lengths_tensor.unsqueeze(1)] = 0.7  # non-zero padding
    return waves, lengths_tensor


def _tone(frequency: float, sample_rate: int, samples: int) -> torch.Tensor:
    t = torch.arange(samples, dtype=torch.float64) / sample_rate
    return (0.5 * torch.sin(2 * math.pi * frequency * t)).float()


def test_config_derives_window_sizes():
    config = FeatureConfig()
    assert (config.win_length, config.hop_length, config.n_fft) == (400, 160, 512)
    narrow = FeatureConfig(sample_rate=8000)
    assert (narrow.win_length, narrow.hop_length, narrow.n_fft) == (200, 80, 256)


@pytest.mark.parametrize(
    "bad",
    [
        {"num_mel_bins": 0},
        {"speed_factors": []},
        {"noise_prob": 1.5},
        {"min_snr_db": 30},
        {"max_freq_warp": 1.0},
        {"stack_frames": 0},
        {"level_range_db": [-10.0, -20.0]},
        {"level_range_db": [-10.0]},
        {"level_range_db": [-10.0, 3.0]},
    ],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(InputError, match=next(iter(bad))):
        FeatureConfig(**bad)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_frontend_shapes_follow_the_frame_formula(device, dtype):
    # Centred frames: T = 1 + N // hop, hop = 160 samples at 16 kHz.
    frontend = LogMelFrontend().to(device=device, dtype=dtype)
    waves, lengths = _padded_batch([16000, 8000, 161, 1])
    features, frame_lengths = frontend(waves.to(device, dtype), lengths.to(device))
    assert features.shape == (4, 1 + 16000 // 160, 80)
    assert features.dtype == dtype
    assert frame_lengths.tolist() == [101, 51, 2, 1]
    assert torch.all(features[1, 51:] == 0) and torch.all(features[2, 2:] == 0)
    assert torch.isfinite(features).all()


@pytest.mark.parametrize("level_range_db", [None, [-16.0, -16.0]])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_frontend_is_padding_invariant(dtype, level_range_db):
    frontend = LogMelFrontend(FeatureConfig(level_range_db=level_range_db)).to(dtype=dtype)
    waves, lengths = _padded_batch([12345, 4000, 700])
    waves = waves.to(dtype)
    batched, frame_lengths = frontend(waves, lengths)
    for row, length in enumerate(lengths.tolist()):
        alone, alone_frames = frontend(waves[row : row + 1, :length], lengths[row : row + 1])
        assert alone_frames.item() == frame_lengths[row].item()
        valid = batched[row, : frame_lengths[row]]
        torch.testing.assert_close(valid, alone[0], atol=1e-4, rtol=1e-5)


def test_loud_level_is_the_95th_percentile_of_valid_frames():
    rate = 16000
    tone = _tone(500.0, rate, rate)  # 5 periods a frame: mean power 0.125 in every frame
    quiet_start = torch.cat([torch.zeros(rate // 2), tone])
    waves = torch.zeros(3, 2 * rate)
    waves[0, :rate] = tone
    waves[1, : quiet_start.shape[0]] = quiet_start
    waves[2, :rate] = 0.01 * tone
    waves[0, rate:] = 1.0  # padding is not counted
    levels = loud_level_db(waves, torch.tensor([rate, quiet_start.shape[0], rate]), rate)
    expected = 10 * math.log10(0.125)
    target = torch.tensor([expected, expected, expected - 40], dtype=torch.float64)
    torch.testing.assert_close(levels, target, atol=1e-4, rtol=0)


def test_loud_level_is_the_95th_percentile_of_the_valid_frames_levels():
    """As ``torch.nanquantile`` over the levels of each waveform's valid frames (it is
    computed with a sort, which exports to ONNX)."""
    torch.manual_seed(0)
    waves = torch.randn(5, 16000) * torch.rand(5, 1)
    waves[:, 8000:] *= 0.01
    lengths = torch.tensor([16000, 9000, 3000, 100, 170])
    levels = frame_levels_db(nn.functional.pad(waves, (0, 160)), 160)
    valid = torch.arange(levels.shape[1]) < (lengths // 160).clamp(min=1).unsqueeze(1)
    expected = torch.nanquantile(levels.masked_fill(~valid, math.nan), 0.95, dim=1)
    torch.testing.assert_close(loud_level_db(waves, lengths, 16000), expected, rtol=0, atol=1e-12)


def test_one_level_makes_features_independent_of_the_gain():
    config = FeatureConfig(num_mel_bins=20, level_range_db=[-16.0, -16.0])
    plain, levelled = LogMelFrontend(FeatureConfig(num_mel_bins=20)), LogMelFrontend(config)
    waves, lengths = _padded_batch([6400, 3000, 500])
    for gain in (0.01, 3.0):
        quieter, _ = plain(waves * gain, lengths)
        assert (quieter - plain(waves, lengths)[0]).abs().max() > 1.0
        torch.testing.assert_close(
            levelled(waves * gain, lengths)[0], levelled(waves, lengths)[0], atol=1e-4, rtol=0
        )
    levels = loud_level_db(waves, lengths, 16000)
    louder = waves * 10 ** ((-16.0 - levels) / 20).float().unsqueeze(1)
    torch.testing.assert_close(levelled(waves, lengths)[0], plain(louder, lengths)[0])


def test_a_level_range_scales_only_waveforms_outside_it_to_its_nearer_end():
    rate = 16000
    tone = _tone(500.0, rate, rate)  # loud frames at 10 log10(0.125) = -9.03 dBFS
    waves = torch.stack([tone, 0.1 * tone, 0.001 * tone, 3.0 * tone])  # -9, -29, -69, +0.5
    lengths = torch.full((4,), rate)
    config = FeatureConfig(num_mel_bins=20, level_range_db=[-40.0, -5.0])
    ranged, plain = LogMelFrontend(config), LogMelFrontend(FeatureConfig(num_mel_bins=20))
    expected_waves = waves.clone()
    levels = loud_level_db(waves, lengths, rate)
    expected_waves[2] *= 10 ** ((-40.0 - levels[2].item()) / 20)
    expected_waves[3] *= 10 ** ((-5.0 - levels[3].item()) / 20)
    torch.testing.assert_close(ranged(waves, lengths)[0], plain(expected_waves, lengths)[0])
    assert levels[:2].tolist() == pytest.approx([-9.03, -29.03], abs=0.01)


def test_utterance_mean_norm_removes_each_utterances_mean_and_a_gain():
    plain = LogMelFrontend(FeatureConfig(num_mel_bins=20))
    normed = LogMelFrontend(FeatureConfig(num_mel_bins=20, utterance_mean_norm=True))
    waves, lengths = _padded_batch([6400, 3000, 500])
    raw, frame_lengths = plain(waves, lengths)
    features, _ = normed(waves, lengths)
    louder, _ = normed(waves * 4.0, lengths)
    for row, frames in enumerate(frame_lengths.tolist()):
        expected = raw[row, :frames] - raw[row, :frames].mean(dim=0)
        torch.testing.assert_close(features[row, :frames], expected, atol=1e-5, rtol=0)
        assert torch.all(features[row, frames:] == 0)
        alone, _ = normed(waves[row : row + 1, : lengths[row]], lengths[row : row + 1])
        torch.testing.assert_close(alone[0], features[row, :frames], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(louder, features, atol=1e-4, rtol=0)


def test_stack_frames_joins_consecutive_frames_and_drops_a_last_partial_group():
    features = torch.arange(2 * 7 * 3, dtype=torch.float32).view(2, 7, 3)
    stacked, lengths = stack_frames(features, torch.tensor([7, 4]), 2)
    assert stacked.shape == (2, 3, 6)
    assert lengths.tolist() == [3, 2]
    torch.testing.assert_close(stacked[1, 1], torch.cat([features[1, 2], features[1, 3]]))
    same, same_lengths = stack_frames(features, torch.tensor([7, 4]), 1)
    assert same is features and same_lengths.tolist() == [7, 4]


def test_feature_pipeline_stacks_after_masking_and_keeps_padding_invariance():
    config = FeatureConfig(num_mel_bins=10, stack_frames=3, freq_mask_width=10)
    pipeline = FeaturePipeline(config).eval()
    waves, lengths = _padded_batch([4800, 1000])
    features, frame_lengths = pipeline(waves, lengths)
    assert features.shape == (2, (1 + 4800 // 160) // 3, 30)
    assert frame_lengths.tolist() == [31 // 3, 7 // 3]
    alone, alone_lengths = pipeline(waves[1:, :1000], lengths[1:])
    assert alone_lengths.tolist() == [2]
    torch.testing.assert_close(alone[0], features[1, :2], atol=1e-4, rtol=1e-5)


def test_frontend_finds_a_tone_in_the_right_mel_bin():
    frontend = LogMelFrontend()
    low, _ = frontend(_tone(300.0, 16000, 4000).unsqueeze(0), torch.tensor([4000]))
    high, _ = frontend(_tone(3000.0, 16000, 4000).unsqueeze(0), torch.tensor([4000]))
    low_bin = int(low[0, 10].argmax())
    high_bin = int(high[0, 10].argmax())
    assert low_bin < high_bin


@pytest.mark.parametrize("device", DEVICES)
def test_normalizer_fits_valid_frames_only(device):
    features = torch.zeros(2, 4, 3)
    features[0, :4] = torch.tensor([[1.0, 2.0, 3.0]]).repeat(4, 1) * torch.arange(1, 5).view(4, 1)
    features[1, :2] = torch.tensor([[5.0, 10.0, 15.0], [5.0, 10.0, 15.0]])
    features[1, 2:] = 1000.0  # padding, must be ignored
    features, lengths = features.to(device), torch.tensor([4, 2], device=device)
    valid = torch.cat([features[0], features[1, :2]])
    normalizer = GlobalNormalizer(3).to(device).fit([(features, lengths)])
    torch.testing.assert_close(normalizer.mean, valid.mean(0))
    torch.testing.assert_close(normalizer.std, valid.std(0, unbiased=False))
    normalized = normalizer(features, lengths)
    assert torch.all(normalized[1, 2:] == 0)
    flat = torch.cat([normalized[0], normalized[1, :2]])
    torch.testing.assert_close(flat.mean(0), torch.zeros(3, device=device), atol=1e-6, rtol=0)
    torch.testing.assert_close(flat.std(0, unbiased=False), torch.ones(3, device=device))


def test_normalizer_accumulates_over_batches_and_is_checkpointed():
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(3, 7, 5, generator=generator) * 2 + 3, torch.tensor([7, 3, 5]))]
    batches.append((torch.randn(2, 4, 5, generator=generator), torch.tensor([4, 1])))
    valid = torch.cat([f[b, :n] for f, ls in batches for b, n in enumerate(ls.tolist())])
    normalizer = GlobalNormalizer(5).fit(iter(batches))
    torch.testing.assert_close(normalizer.mean, valid.mean(0))
    torch.testing.assert_close(normalizer.std, valid.std(0, unbiased=False))
    state = FeaturePipeline(FeatureConfig(num_mel_bins=5)).state_dict()
    assert {"normalizer.mean", "normalizer.std"} <= set(state)
    restored = GlobalNormalizer(5)
    restored.load_state_dict(normalizer.state_dict())
    torch.testing.assert_close(restored.std, normalizer.std)


def test_normalizer_without_frames_is_an_error():
    with pytest.raises(InputError, match="no valid frames"):
        GlobalNormalizer(4).fit([])


def test_spec_augment_is_identity_in_eval_mode():
    features = torch.randn(3, 50, 80)
    augment = SpecAugment(num_freq_masks=2, freq_mask_width=20, num_time_masks=2).eval()
    assert augment(features, torch.tensor([50, 30, 10])) is features


@pytest.mark.parametrize("device", DEVICES)
def test_spec_augment_masks_stay_within_limits_in_training(device):
    torch.manual_seed(0)
    augment = SpecAugment(
        num_freq_masks=1, freq_mask_width=8, num_time_masks=1, time_mask_width=200
    ).train()
    lengths = torch.tensor([60, 25, 5], device=device)
    saw_time_mask = False
    for _ in range(50):
        features = torch.rand(3, 70, 40, device=device) + 1.0  # positive: zeros are masks
        masked = augment(features, lengths)
        zero = masked == 0
        full_bins = zero.all(dim=1)  # (B, F): frequency masks span every frame
        full_frames = zero.all(dim=2)  # (B, T): time masks span every bin
        assert full_bins.sum(dim=1).max() <= 8
        assert torch.equal(zero, full_bins.unsqueeze(1) | full_frames.unsqueeze(2))
        for row, length in enumerate(lengths.tolist()):
            assert not full_frames[row, length:].any()
            assert full_frames[row].sum() <= length
        saw_time_mask |= bool(full_frames.any())
    assert saw_time_mask


def test_feature_pipeline_normalises_then_masks_in_training_only():
    pipeline = FeaturePipeline(FeatureConfig(num_freq_masks=1, freq_mask_width=80))
    waves, lengths = _padded_batch([3200, 1600])
    raw, raw_lengths = pipeline.frontend(waves, lengths)
    pipeline.normalizer.fit([(raw, raw_lengths)])
    features, frame_lengths = pipeline.eval()(waves, lengths)
    assert torch.equal(frame_lengths, torch.tensor([21, 11]))
    valid = torch.cat([features[0], features[1, :11]])
    torch.testing.assert_close(valid.mean(0), torch.zeros(80), atol=1e-4, rtol=0)
    torch.manual_seed(0)
    trained, _ = pipeline.train()(waves, lengths)
    assert (trained == 0).sum() > (features == 0).sum()


@pytest.mark.parametrize("factor", [0.9, 1.15])
def test_frequency_warp_moves_a_tone_and_keeps_the_band_edges(factor):
    frontend = LogMelFrontend(FeatureConfig(num_mel_bins=40))
    tone = _tone(2000.0, 16000, 4000).unsqueeze(0)
    spectrum = frontend.mel_spectrogram.spectrogram(tone)  # (1, 257, T), 31.25 Hz bins
    warped = warp_frequencies(spectrum, torch.tensor([factor]))
    assert warped.shape == spectrum.shape
    assert int(spectrum[0, :, 5].argmax()) == 64
    assert int(warped[0, :, 5].argmax()) == round(64 / factor)
    torch.testing.assert_close(warped[:, [0, -1]], spectrum[:, [0, -1]])
    identity = warp_frequencies(spectrum, torch.tensor([1.0]))
    torch.testing.assert_close(identity, spectrum, rtol=1e-5, atol=1e-9)


def test_frequency_warp_draws_one_factor_per_utterance_in_training_only():
    waves, lengths = _padded_batch([3200, 3200])
    waves[1] = waves[0]
    plain = LogMelFrontend(FeatureConfig(num_mel_bins=40))
    warping = LogMelFrontend(FeatureConfig(num_mel_bins=40, max_freq_warp=0.2))
    expected, _ = plain(waves, lengths)
    torch.testing.assert_close(warping.eval()(waves, lengths)[0], expected, rtol=0, atol=0)
    torch.manual_seed(0)
    warped, frame_lengths = warping.train()(waves, lengths)
    assert warped.shape == expected.shape and torch.equal(frame_lengths, torch.tensor([21, 21]))
    assert not torch.allclose(warped[0], expected[0], atol=1e-3)
    assert not torch.allclose(warped[0], warped[1], atol=1e-3)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturb_changes_length_and_pitch(factor):
    wave = _tone(1000.0, 16000, 16000)
    perturbed = speed_perturb(wave, 16000, factor)
    assert len(perturbed) == math.ceil(16000 * 16000 / round(16000 * factor))
    spectrum = torch.fft.rfft(perturbed.double() * torch.hann_window(len(perturbed)).double())
    peak_hz = float(spectrum.abs().argmax()) * 16000 / len(perturbed)
    assert peak_hz == pytest.approx(1000.0 * factor, abs=3.0)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
@pytest.mark.parametrize("factor", [0.9, 1.1, 1.25])
def test_speed_perturb_equals_torchaudio_resampling_for_a_batch(factor, device):
    waves = torch.randn(3, 5003, generator=torch.Generator().manual_seed(0))
    expected = torchaudio.functional.resample(waves, round(16000 * factor), 16000)
    perturbed = speed_perturb(waves.to(device), 16000, factor).cpu()
    assert perturbed.shape == expected.shape
    torch.testing.assert_close(perturbed, expected)
    torch.testing.assert_close(speed_perturb(waves[1].to(device), 16000, factor).cpu(), expected[1])


def test_speed_perturb_identity_and_errors():
    wave = torch.randn(100)
    assert speed_perturb(wave, 16000, 1.0) is wave
    with pytest.raises(InputError, match="positive"):
        speed_perturb(wave, 16000, 0.0)


def test_perturbed_length_of_a_tensor_equals_it_per_length():
    lengths = [1, 999, 1000, 1001, 16000, 16001, 123457]
    for factor in (0.9, 0.95, 1.05, 1.1, 1.25):
        tensor = perturbed_length(torch.tensor(lengths), 16000, factor)
        assert tensor.dtype == torch.int64
        assert tensor.tolist() == [perturbed_length(n, 16000, factor) for n in lengths]
        assert tensor.tolist() == [math.ceil(n * 16000 / round(16000 * factor)) for n in lengths]


@pytest.mark.parametrize("speed", [0.9, 1.1])
def test_a_given_speed_factor_gives_each_utterance_the_features_of_its_sped_up_audio(speed):
    waves, lengths = _padded_batch([4000, 2500, 3100])
    frontend = LogMelFrontend(FeatureConfig(num_mel_bins=40)).eval()
    features, frame_lengths = frontend(waves, lengths, speed=speed)
    sped = [perturbed_length(int(n), 16000, speed) for n in lengths]
    assert frame_lengths.tolist() == [1 + n // 160 for n in sped]
    assert features.shape[1] == 1 + perturbed_length(4000, 16000, speed) // 160
    for row, length in enumerate(lengths.tolist()):
        wave = speed_perturb(waves[row, :length], 16000, speed)
        alone, alone_lengths = frontend(wave.unsqueeze(0), torch.tensor([len(wave)]))
        frames = int(alone_lengths[0])
        assert frames == frame_lengths[row]
        torch.testing.assert_close(features[row, :frames], alone[0], rtol=1e-5, atol=1e-5)
        assert not features[row, frames:].any()
    plain = frontend(waves, lengths)
    for same in (frontend(waves, lengths, speed=1.0), frontend(waves, lengths, speed=None)):
        torch.testing.assert_close(same, plain, rtol=0, atol=0)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 23.5])
def test_add_noise_reaches_the_exact_snr(snr_db):
    generator = torch.Generator().manual_seed(0)
    wave = torch.randn(16000, generator=generator, dtype=torch.float64) * 0.3
    noise = torch.randn(5000, generator=generator, dtype=torch.float64)  # shorter: tiled
    mixed = add_noise(wave, noise, snr_db)
    assert mixed.shape == wave.shape
    added = mixed - wave
    measured = 10 * torch.log10(wave.square().mean() / added.square().mean())
    assert measured.item() == pytest.approx(snr_db, abs=1e-9)
    torch.testing.assert_close(added[5000:10000] / added[:5000], torch.full((5000,), 1.0).double())


def test_add_noise_rejects_silent_or_empty_noise():
    with pytest.raises(InputError, match="silent"):
        add_noise(torch.randn(10), torch.zeros(10), 5.0)
    with pytest.raises(InputError, match="empty"):
        add_noise(torch.randn(10), torch.zeros(0), 5.0)


def test_augment_waveform_applies_the_given_speed_and_configured_noise():
    config = FeatureConfig(noise_prob=1.0, min_snr_db=10, max_snr_db=10)
    wave = _tone(500.0, 16000, 8000)
    noise = torch.randn(8000)
    augmented = augment_waveform(wave, config, 1.1, [noise], random.Random(0))
    sped = speed_perturb(wave, 16000, 1.1)
    assert augmented.shape == sped.shape
    measured = 10 * torch.log10(sped.square().mean() / (augmented - sped).square().mean())
    assert measured.item() == pytest.approx(10.0, abs=1e-3)
    clean = augment_waveform(wave, FeatureConfig(), 1.0, [noise], random.Random(0))
    assert torch.equal(clean, wave)


def test_a_given_warp_factor_applies_in_either_mode_and_one_is_none():
    waves, lengths = _padded_batch([3200, 2400])
    frontend = LogMelFrontend(FeatureConfig(num_mel_bins=40, max_freq_warp=0.2))
    plain, _ = frontend.eval()(waves, lengths)
    unpadded = waves.clone()
    unpadded[1, 2400:] = 0.0
    spectrum = frontend.mel_spectrogram.spectrogram(
        torch.nn.functional.pad(unpadded, (frontend.n_fft // 2, frontend.n_fft // 2))
    )
    power = frontend.mel_spectrogram.mel_scale(warp_frequencies(spectrum, torch.tensor([0.9, 0.9])))
    expected = power.clamp_min(1e-6).log().transpose(1, 2)
    expected[1, 16:] = 0.0  # 2400 samples: 16 frames
    for mode in (frontend.eval(), frontend.train()):
        warped, _ = mode(waves, lengths, 0.9)
        torch.testing.assert_close(warped, expected)
    torch.testing.assert_close(frontend.train()(waves, lengths, 1.0)[0], plain, rtol=0, atol=0)
