import math

import pytest
import torch

from multimodal_s2s.data.pauses import split_at_pauses

RATE = 16000


def _tone(seconds: float, frequency: float = 200.0) -> torch.Tensor:
    t = torch.arange(round(seconds * RATE)) / RATE
    return 0.3 * torch.sin(2 * math.pi * frequency * t)


def _silence(seconds: float) -> torch.Tensor:
    return torch.zeros(round(seconds * RATE))


def _single_cut(bounds: list[tuple[int, int]], total: int) -> int:
    (first, second) = bounds
    assert first[0] == 0 and first[1] == second[0] and second[1] == total
    return first[1]


def test_a_pause_between_two_sounds_is_cut_in_its_middle():
    wave = torch.cat([_tone(0.5), _silence(0.5), _tone(0.5)])
    cut = _single_cut(split_at_pauses(wave, RATE), wave.shape[0])
    assert abs(cut - round(0.75 * RATE)) <= RATE // 100


def test_short_pauses_and_leading_or_trailing_silence_are_not_cut():
    wave = torch.cat([_silence(1.0), _tone(0.5), _silence(0.2), _tone(0.5), _silence(1.0)])
    assert split_at_pauses(wave, RATE) == [(0, wave.shape[0])]
    longer_pause = torch.cat([_tone(0.5), _silence(0.5), _tone(0.5)])
    assert split_at_pauses(longer_pause, RATE, min_pause_seconds=0.6) == [
        (0, longer_pause.shape[0])
    ]
    assert split_at_pauses(longer_pause, RATE, min_pause_seconds=0) == [(0, longer_pause.shape[0])]


def test_a_click_does_not_interrupt_a_pause():
    click = _tone(0.02, 1000.0)
    wave = torch.cat([_tone(0.5), _silence(0.24), click, _silence(0.24), _tone(0.5)])
    cut = _single_cut(split_at_pauses(wave, RATE), wave.shape[0])
    assert round(0.5 * RATE) < cut < round(1.0 * RATE)
    leading = torch.cat([_silence(0.3), click, _silence(0.4), _tone(0.5)])
    assert split_at_pauses(leading, RATE) == [(0, leading.shape[0])]


def test_pauses_are_found_above_a_noise_floor():
    generator = torch.Generator().manual_seed(0)
    wave = torch.cat([_tone(0.5), _silence(0.5), _tone(0.5)])
    noisy = wave + 0.01 * torch.randn(wave.shape, generator=generator)
    cut = _single_cut(split_at_pauses(noisy, RATE), wave.shape[0])
    assert abs(cut - round(0.75 * RATE)) <= 3 * RATE // 100
    noise_alone = 0.01 * torch.randn(RATE * 3, generator=generator)
    assert split_at_pauses(noise_alone, RATE) == [(0, noise_alone.shape[0])]


def test_long_chunks_are_cut_at_their_quietest_frame_before_the_limit():
    silence = _silence(1.0)
    wave = torch.cat([_tone(27), silence, _tone(27), silence, _tone(14)])
    assert wave.shape[0] == 70 * RATE
    bounds = split_at_pauses(wave, RATE, max_chunk_seconds=30.0, min_pause_seconds=0)
    assert len(bounds) == 3
    assert bounds[0][0] == 0 and bounds[-1][1] == wave.shape[0]
    for (_, end), (start, _) in zip(bounds, bounds[1:], strict=False):
        assert end == start
    assert 27 * RATE <= bounds[0][1] < 28 * RATE
    assert 55 * RATE <= bounds[1][1] < 56 * RATE
    assert all(end - start <= 30 * RATE for start, end in bounds)


@pytest.mark.parametrize("min_pause_seconds", [0.0, 0.3])
def test_without_a_pause_long_audio_is_cut_at_the_limit(min_pause_seconds):
    wave = _tone(70)
    assert split_at_pauses(wave, RATE, 30.0, min_pause_seconds) == [
        (0, 30 * RATE),
        (30 * RATE, 60 * RATE),
        (60 * RATE, 70 * RATE),
    ]
    assert split_at_pauses(wave[:RATE], RATE, 30.0, min_pause_seconds) == [(0, RATE)]


@pytest.mark.parametrize(("seconds", "limit", "cut"), [(30.01, 30.0, 29.01), (2.01, 2.0, 1.01)])
def test_a_cut_at_the_limit_leaves_at_least_a_second_after_it(seconds, limit, cut):
    wave = _tone(seconds)
    assert split_at_pauses(wave, RATE, limit, 0.0) == [
        (0, round(cut * RATE)),
        (round(cut * RATE), wave.shape[0]),
    ]
    half_second_chunks = split_at_pauses(_tone(1.1), RATE, 0.5, 0.0)  # tails of 0.25 s
    assert half_second_chunks == [(0, 8000), (8000, 13600), (13600, 17600)]


def test_pauses_and_the_limit_combine():
    wave = torch.cat([_tone(3.0), _silence(0.5), _tone(2.5)])
    bounds = split_at_pauses(wave, RATE, max_chunk_seconds=2.0)
    assert len(bounds) == 4
    assert all(end - start <= 2 * RATE for start, end in bounds)
    assert abs(bounds[1][1] - round(3.25 * RATE)) <= RATE // 100


def test_faint_tails_around_digital_silence_count_as_pause():
    """A synthesiser's faint tail (66 dB below the phrase) before and after zeros belongs to
    the pause: the floor is taken at most ``FLOOR_DB`` below the loud frames, not at the
    zeros' -100 dB."""
    tail = _tone(0.15) * 10 ** (-52.5 / 20)
    wave = torch.cat([_tone(0.5), tail, _silence(0.2), tail, _tone(0.5)])
    cut = _single_cut(split_at_pauses(wave, RATE), wave.shape[0])
    assert abs(cut - round(0.75 * RATE)) <= RATE // 100
