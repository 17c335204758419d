"""Real human recordings shipped by Debian packages, used as extra test sets.

- ``klettres-data``: English (``en``) and British English (``en_GB``) letter names, one ogg per
  letter; the label is the file name (``A.ogg`` -> ``"a"``).
- ``pocketsphinx-testdata``: the one TIDIGITS raw recording (``dhd.2934z.raw``, labelled from
  its name: ``z`` zero, ``o`` oh) and the transcribed recordings whose words are all in the
  phone-menu vocabulary (``cards/004.wav``, "five five"). The other TIDIGITS utterances are
  shipped as MFCC features only, and ``numbers.raw`` has no transcription.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from multimodal_s2s.corpora.phone_menu.text import DIGIT_WORDS, VOCABULARY

KLETTRES_DIR = Path("/usr/share/klettres")
POCKETSPHINX_DATA_DIR = Path("/usr/share/pocketsphinx/test/data")
_KLETTRES_LANGUAGES = ("en", "en_GB")
_TIDIGITS_SYMBOLS = {**{str(d): w for d, w in enumerate(DIGIT_WORDS)}, "z": "zero", "o": "oh"}
_TIDIGITS_RAW_RATE = 16000
_TRANSCRIPT_LINE = re.compile(r"<s>(?P<text>.*?)</s>\s*\((?P<name>[^)\s]+)")


@dataclass(frozen=True)
class Recording:
    """A packaged recording: its file, label text, speaker/voice id and utterance id."""

    path: Path
    text: str
    voice: str
    id: str


def klettres_letters(root: Path = KLETTRES_DIR) -> list[Recording]:
    """The English and British English letter recordings under ``root`` (empty if absent)."""
    recordings = []
    for language in _KLETTRES_LANGUAGES:
        for path in sorted((root / language / "alpha").glob("*.ogg")):
            letter = path.stem.lower()
            if len(letter) == 1 and letter.isalpha():
                voice = f"klettres-{language}"
                recordings.append(Recording(path, letter, voice, f"{voice}-{letter}"))
    return recordings


def pocketsphinx_digits(root: Path = POCKETSPHINX_DATA_DIR) -> list[Recording]:
    """The pocketsphinx test recordings under ``root`` whose words are all in the vocabulary."""
    recordings = []
    for path in sorted((root / "tidigits").glob("*.raw")):
        code = path.stem.rsplit(".", 1)[-1]
        if code and all(symbol in _TIDIGITS_SYMBOLS for symbol in code):
            text = " ".join(_TIDIGITS_SYMBOLS[symbol] for symbol in code)
            recordings.append(Recording(path, text, "pocketsphinx-tidigits", f"tidigits-{code}"))
    for transcript in sorted(root.glob("*/*.transcription")):
        for match in _TRANSCRIPT_LINE.finditer(transcript.read_text()):
            text, name = " ".join(match["text"].split()), match["name"]
            path = transcript.parent / f"{name}.wav"
            if path.is_file() and text and set(text.split()) <= VOCABULARY:
                voice = f"pocketsphinx-{transcript.parent.name}"
                recordings.append(Recording(path, text, voice, f"{voice}-{name}"))
    return recordings


def read_recording(path: Path) -> tuple[np.ndarray, int]:
    """Read a packaged recording as mono float32 ``(T,)`` and its sample rate.

    ``.raw`` files are headerless 16 kHz 16-bit little-endian mono (the pocketsphinx format).
    """
    if path.suffix == ".raw":
        audio = np.fromfile(path, dtype="<i2").astype(np.float32) / 32768.0
        return audio, _TIDIGITS_RAW_RATE
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate
