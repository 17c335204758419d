"""Signal processing for the phone-menu corpus: resampling, telephone band, noise at an SNR.

Audio is a 1-D float32 numpy array ``(T,)`` in [-1, 1].
"""

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16000
TELEPHONE_RATE = 8000
NOISE_KINDS = ("white", "pink", "brown", "alsa")
ALSA_NOISE_PATH = Path("/usr/share/sounds/alsa/Noise.wav")


def resample(audio: np.ndarray, rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample ``(T,)`` audio from ``rate`` to ``target_rate`` Hz -> ``(T * target / rate,)``."""
    if rate == target_rate:
        return audio.astype(np.float32)
    resampled = AF.resample(torch.from_numpy(audio.astype(np.float32)), rate, target_rate)
    return resampled.numpy()


def telephone_band(audio: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Pass ``(T,)`` audio through a telephone channel at ``rate`` Hz; same length out.

    Downsampled to 8 kHz, band-passed to 300-3400 Hz, mu-law (G.711) coded, upsampled back.
    """
    narrow = torch.from_numpy(resample(audio, rate, TELEPHONE_RATE))
    narrow = AF.highpass_biquad(narrow, TELEPHONE_RATE, 300.0)
    narrow = AF.lowpass_biquad(narrow, TELEPHONE_RATE, 3400.0)
    coded = AF.mu_law_encoding(narrow.clamp(-1.0, 1.0), 256)
    narrow = AF.mu_law_decoding(coded, 256)
    wide = resample(narrow.numpy(), TELEPHONE_RATE, rate)
    return _fit_length(wide, len(audio))


def make_noise(kind: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """``(length,)`` noise of unit RMS: "white", "pink" (1/f), "brown" (1/f^2) or "alsa"
    (a random stretch of alsa-utils' ``Noise.wav``, white noise when that file is absent)."""
    if kind == "alsa" and ALSA_NOISE_PATH.is_file():
        recording, rate = sf.read(ALSA_NOISE_PATH, dtype="float32", always_2d=True)
        recording = resample(recording.mean(axis=1), rate)
        noise = np.roll(np.resize(recording, length), rng.integers(len(recording)))
    elif kind in ("pink", "brown"):
        spectrum = np.fft.rfft(rng.standard_normal(length))
        frequencies = np.maximum(np.fft.rfftfreq(length), 1.0 / length)
        spectrum /= np.sqrt(frequencies) if kind == "pink" else frequencies
        noise = np.fft.irfft(spectrum, n=length)
    elif kind in NOISE_KINDS:
        noise = rng.standard_normal(length)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {NOISE_KINDS}")
    return (noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)).astype(np.float32)


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix same-length ``noise`` into ``audio`` at a signal-to-noise ratio of ``snr_db`` dB."""
    signal_power = float(np.mean(audio**2))
    noise_power = max(float(np.mean(noise**2)), 1e-12)
    scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (audio + scale * noise).astype(np.float32)


def normalize_peak(audio: np.ndarray, peak: float) -> np.ndarray:
    """Scale ``(T,)`` audio so its largest absolute sample is ``peak`` (silence unchanged)."""
    largest = float(np.max(np.abs(audio))) if len(audio) else 0.0
    return audio if largest == 0.0 else (audio * (peak / largest)).astype(np.float32)


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    if len(audio) >= length:
        return audio[:length]
    return np.pad(audio, (0, length - len(audio)))
