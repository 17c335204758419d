"""Cutting a long recording into phrases at its pauses, for ``ms2s transcribe``.

An attention model trained on single phrases transcribes a recording of several phrases
badly when it hears them as one utterance (it stops after one phrase or loses its place),
so recordings are cut in the middle of every pause between two sounds. A pause is a run of
quiet 10 ms frames. A frame is quiet when its level lies in the lower ``PAUSE_LEVEL``
fraction of the range between the recording's noise floor and its loud frames (95th
percentile). The floor is the level of its quiet frames (5th percentile), or ``FLOOR_DB``
below the loud frames when the quiet ones are digital silence, so the rule needs no
absolute level and holds for noisy recordings. Sounds shorter than ``MIN_SOUND_SECONDS``
(clicks, a breath) do not interrupt a pause, and a recording whose levels span less than
``MIN_RANGE_DB`` has no pause to find. Pieces still longer than the chunk limit are cut at
their quietest frame before the limit, and early enough to leave at least ``MIN_TAIL_SECONDS``
(half the limit when that is less) after the cut.
"""

import torch
from torch import Tensor
from torch.nn import functional

from multimodal_s2s.frontends.features import frame_levels_db

FRAME_SECONDS = 0.01
PAUSE_LEVEL = 0.2
FLOOR_DB = 60.0
MIN_SOUND_SECONDS = 0.1
MIN_RANGE_DB = 10.0
MIN_TAIL_SECONDS = 1.0
_LIMIT_SEARCH_SECONDS = 5.0
_QUIETEST_RATIO = 0.5


def split_at_pauses(
    wave: Tensor,
    sample_rate: int,
    max_chunk_seconds: float = 30.0,
    min_pause_seconds: float = 0.3,
) -> list[tuple[int, int]]:
    """Cut a ``(N,)`` waveform into contiguous chunks.

    First in the middle of every pause of at least ``min_pause_seconds`` between two sounds
    (none when it is 0), then any chunk still longer than ``max_chunk_seconds`` in the middle
    of the quietest 10 ms frame of the last 5 seconds (at most half a chunk) before the
    limit; when no frame there has less than half the window's mean energy, exactly at the
    limit. The limit moves earlier where it would leave less than ``MIN_TAIL_SECONDS`` (or
    half a chunk) of the chunk after it, so that no cut leaves a sliver of audio to decode
    on its own.

    Returns:
        ``[(start, end), ...]`` sample ranges covering ``[0, N)`` in order.
    """
    frame = max(1, round(sample_rate * FRAME_SECONDS))
    cuts = pause_middles(wave, frame, min_pause_seconds) if min_pause_seconds > 0 else []
    limit = max(1, round(max_chunk_seconds * sample_rate))
    search = min(round(_LIMIT_SEARCH_SECONDS * sample_rate), limit // 2)
    tail = min(round(MIN_TAIL_SECONDS * sample_rate), limit // 2)
    bounds = []
    for start, end in zip([0, *cuts], [*cuts, wave.shape[0]], strict=True):
        while end - start > limit:
            cut = _quietest_cut(wave, min(start + limit, end - tail), search, frame)
            bounds.append((start, cut))
            start = cut
        bounds.append((start, end))
    return bounds


def pause_middles(wave: Tensor, frame: int, min_pause_seconds: float) -> list[int]:
    """The middle sample of every pause of at least ``min_pause_seconds`` that has sound
    before and after it, in order (frames of ``frame`` samples; see the module's rule)."""
    level = frame_levels_db(wave, frame)
    count = level.shape[0]
    if count == 0:
        return []
    quiet_level, loud = torch.quantile(
        level, torch.tensor([0.05, 0.95], dtype=level.dtype)
    ).tolist()
    floor = max(quiet_level, loud - FLOOR_DB)
    if loud - floor < MIN_RANGE_DB:
        return []
    quiet = level < floor + PAUSE_LEVEL * (loud - floor)
    frames_per_second = 1.0 / FRAME_SECONDS
    for start, end in _runs(~quiet):
        if end - start < MIN_SOUND_SECONDS * frames_per_second:
            quiet[start:end] = True
    return [
        (start + end) * frame // 2
        for start, end in _runs(quiet)
        if start > 0 and end < count and end - start >= min_pause_seconds * frames_per_second
    ]


def _runs(mask: Tensor) -> list[tuple[int, int]]:
    """``(start, end)`` frame ranges of the runs of True in a ``(F,)`` bool mask."""
    edges = functional.pad(mask.to(torch.int8), (1, 1)).diff()
    starts = torch.nonzero(edges == 1).flatten().tolist()
    ends = torch.nonzero(edges == -1).flatten().tolist()
    return list(zip(starts, ends, strict=True))


def _quietest_cut(wave: Tensor, limit: int, search: int, frame: int) -> int:
    """The cut before sample ``limit``: the middle of the quietest frame of the ``search``
    samples before it, or ``limit`` itself when there is no pause."""
    count = search // frame
    if count == 0:
        return limit
    first = limit - count * frame
    energy = wave[first:limit].reshape(count, frame).square().mean(dim=1)
    quietest = int(energy.argmin())
    if energy[quietest] >= _QUIETEST_RATIO * energy.mean():
        return limit
    return first + quietest * frame + frame // 2
