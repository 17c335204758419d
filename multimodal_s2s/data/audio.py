"""Audio file input: decode wav/flac/ogg/mp3 with soundfile, mix to mono, resample."""

from pathlib import Path

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
    return resampled(torch.from_numpy(samples).mean(dim=1), file_rate, sample_rate, str(path))


def resampled(wave: Tensor, rate: int, sample_rate: int, name: str = "waveform") -> Tensor:
    """A ``(N,)`` mono waveform at ``rate`` as float32 at ``sample_rate`` in ``[-1, 1]``
    (``torchaudio.functional.resample``, then clipped).

    Raises:
        InputError: naming ``name``, when ``wave`` is not one-dimensional, holds no samples
            or holds NaN or infinite samples, or ``rate`` is not a positive integer.
    """
    if wave.dim() != 1:
        raise InputError(f"{name}: a waveform must be 1-D (N,), got shape {tuple(wave.shape)}")
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise InputError(f"{name}: sample rate must be a positive integer, got {rate!r}")
    if wave.shape[0] == 0:
        raise InputError(f"{name}: audio has zero length")
    if not torch.isfinite(wave).all():
        raise InputError(f"{name}: audio holds non-finite samples (NaN or infinity)")
    wave = wave.to(torch.float32)
    if rate != sample_rate:
        wave = torchaudio.functional.resample(wave, rate, sample_rate)
    return wave.clamp(-1.0, 1.0)


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
