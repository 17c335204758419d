import numpy as np
import pytest
import soundfile
import torch

from multimodal_s2s.data.audio import (
    SUPPORTED_AUDIO_EXTENSIONS,
    audio_duration,
    find_audio_files,
    load_audio,
)
from multimodal_s2s.errors import InputError

FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}


def _sine(frequency: float, sample_rate: int, seconds: float) -> np.ndarray:
    t = np.arange(round(sample_rate * seconds)) / sample_rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def _write(path, samples, sample_rate):
    file_format, subtype = FORMATS[path.suffix.lower()]
    soundfile.write(path, samples, sample_rate, subtype=subtype, format=file_format)
    return path


def _peak_frequency(wave: torch.Tensor, sample_rate: int) -> float:
    spectrum = torch.fft.rfft(wave.double() * torch.hann_window(len(wave), dtype=torch.float64))
    return float(spectrum.abs().argmax()) * sample_rate / len(wave)


def test_supported_extensions_cover_the_four_formats():
    assert set(SUPPORTED_AUDIO_EXTENSIONS) == set(FORMATS)


@pytest.mark.parametrize("extension", sorted(FORMATS))
def test_round_trip_every_format(tmp_path, extension):
    original = _sine(440.0, 16000, 1.0)
    path = _write(tmp_path / f"tone{extension}", original, 16000)
    wave = load_audio(path)
    assert wave.dtype == torch.float32 and wave.dim() == 1
    assert abs(len(wave) - len(original)) <= 1200  # lossy codecs may add priming samples
    assert wave.abs().max() <= 1.0
    n = min(len(wave), len(original))
    correlation = np.corrcoef(wave[:n].numpy(), original[:n])[0, 1]
    assert correlation > 0.99
    assert audio_duration(path) == pytest.approx(1.0, abs=0.075)


def test_stereo_is_mixed_to_mono(tmp_path):
    left = _sine(440.0, 16000, 0.5)
    right = np.full_like(left, 0.25)
    path = _write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 16000)
    wave = load_audio(path)
    assert wave.shape == (len(left),)
    torch.testing.assert_close(wave, torch.from_numpy((left + right) / 2), atol=1e-4, rtol=0)


@pytest.mark.parametrize("source_rate", [8000, 44100])
def test_resampling_preserves_duration_and_frequency(tmp_path, source_rate):
    path = _write(tmp_path / "tone.wav", _sine(1000.0, source_rate, 1.0), source_rate)
    wave = load_audio(path, sample_rate=16000)
    assert len(wave) == 16000
    assert _peak_frequency(wave, 16000) == pytest.approx(1000.0, abs=2.0)


def test_other_target_rate(tmp_path):
    path = _write(tmp_path / "tone.flac", _sine(1000.0, 16000, 0.5), 16000)
    assert len(load_audio(path, sample_rate=8000)) == 4000


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "absent.wav"
    with pytest.raises(InputError, match=f"{path}.*not found"):
        load_audio(path)
    with pytest.raises(InputError, match="not found"):
        audio_duration(path)


def test_corrupt_file_is_named(tmp_path):
    path = tmp_path / "corrupt.flac"
    path.write_bytes(b"this is not audio" * 50)
    with pytest.raises(InputError, match=f"{path}: cannot decode"):
        load_audio(path)
    with pytest.raises(InputError, match=f"{path}: cannot read audio header"):
        audio_duration(path)


def test_empty_file_is_named(tmp_path):
    path = tmp_path / "empty.wav"
    path.touch()
    with pytest.raises(InputError, match=f"{path}: audio file is empty"):
        load_audio(path)


def test_zero_length_audio_is_named(tmp_path):
    path = _write(tmp_path / "silent.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(InputError, match=f"{path}: audio has zero length"):
        load_audio(path)
    with pytest.raises(InputError, match="zero length"):
        audio_duration(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples_are_named(tmp_path, bad):
    samples = _sine(440.0, 16000, 0.5)
    samples[100] = bad
    path = tmp_path / "broken.wav"
    soundfile.write(path, samples, 16000, subtype="FLOAT")
    with pytest.raises(InputError, match=f"{path}: audio holds non-finite samples"):
        load_audio(path)


def test_error_messages_are_one_line(tmp_path):
    path = tmp_path / "corrupt.ogg"
    path.write_bytes(b"\x00\x01" * 100)
    with pytest.raises(InputError) as info:
        load_audio(path)
    assert "\n" not in str(info.value)


def test_audio_duration_reads_header(tmp_path):
    path = _write(tmp_path / "tone.wav", _sine(440.0, 22050, 1.5), 22050)
    assert audio_duration(path) == 1.5


@pytest.fixture
def audio_tree(tmp_path):
    samples = _sine(440.0, 8000, 0.05)
    for name in ["b/two.wav", "b/deep/three.FLAC", "a/one.mp3", "top.ogg"]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, samples, 8000)
    (tmp_path / "b" / "notes.txt").write_text("not audio")
    return tmp_path


def test_find_audio_files_expands_directories_recursively_sorted(audio_tree):
    found = find_audio_files([str(audio_tree)])
    expected = ["a/one.mp3", "b/deep/three.FLAC", "b/two.wav", "top.ogg"]
    assert found == [audio_tree / name for name in expected]


def test_find_audio_files_mixes_files_patterns_and_dedupes(audio_tree):
    found = find_audio_files(
        [str(audio_tree / "top.ogg"), str(audio_tree / "b" / "*"), str(audio_tree / "top.ogg")]
    )
    assert found == [audio_tree / "top.ogg", audio_tree / "b" / "two.wav"]
    recursive = find_audio_files([str(audio_tree / "**" / "*.wav")])
    assert recursive == [audio_tree / "b" / "two.wav"]


@pytest.mark.parametrize("name", ["missing.wav", "missing_dir", "nothing*.wav"])
def test_find_audio_files_rejects_missing_and_empty_patterns(audio_tree, name):
    entry = str(audio_tree / name)
    with pytest.raises(InputError, match=entry.replace("*", r"\*")):
        find_audio_files([str(audio_tree / "top.ogg"), entry])


def test_find_audio_files_rejects_explicit_non_audio(audio_tree):
    with pytest.raises(InputError, match="notes.txt: unsupported audio extension"):
        find_audio_files([str(audio_tree / "b" / "notes.txt")])
