"""Audio file input: decode wav/flac/ogg/mp3 with soundfile, mix to mono, resample."""

from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional
from torch import Tensor

from multimodal_s2s.data.files import find_files
from multimodal_s2s.errors import InputError

SUPPORTED_AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3")


def load_audio(path: str | Path, sample_rate: int = 16000) -> Tensor:
    """Read an audio file as a mono waveform at ``sample_rate``.

    Channels are averaged; any file rate is resampled with
    ``torchaudio.functional.resample``.

    Returns:
        ``(N,)`` float32 in ``[-1, 1]``.

    Raises:
        InputError: the file is missing, empty, undecodable, holds no samples or holds
            NaN or infinite samples (a float file can).
    """
    if sample_rate <= 0:
        raise InputError(f"sample_rate must be positive, got {sample_rate}")
    path = Path(path)
    _check_readable(path)
    try:
        samples, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError) as error:
        raise InputError(f"{path}: cannot decode audio ({_one_line(error)})") from error
    if samples.shape[0] == 0:
        raise InputError(f"{path}: audio has zero length")
    if not np.isfinite(samples).all():
        raise InputError(f"{path}: audio holds non-finite samples (NaN or infinity)")
    wave = torch.from_numpy(samples).mean(dim=1)
    if file_rate != sample_rate:
        wave = torchaudio.functional.resample(wave, file_rate, sample_rate)
    return wave.clamp_(-1.0, 1.0)


def audio_duration(path: str | Path) -> float:
    """Duration in seconds, read from the file header only (no decoding).

    Raises:
        InputError: the file is missing, empty, unreadable or holds no samples.
    """
    path = Path(path)
    _check_readable(path)
    try:
        info = soundfile.info(path)
    except (soundfile.SoundFileError, RuntimeError) as error:
        raise InputError(f"{path}: cannot read audio header ({_one_line(error)})") from error
    if info.frames <= 0:
        raise InputError(f"{path}: audio has zero length")
    return info.frames / info.samplerate


def find_audio_files(paths: list[str]) -> list[Path]:
    """Audio files named by files, directories (recursive) and glob patterns; see
    ``files.find_files`` for the rules and errors."""
    return find_files(paths, SUPPORTED_AUDIO_EXTENSIONS, "audio")


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_AUDIO_EXTENSIONS


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: audio file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: audio file is empty (0 bytes)")


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
