"""Inventory of the Debian text-to-speech voices the phone-menu corpus is synthesised with.

Engines: espeak-ng (accents and variants), mbrola voices driven by espeak-ng, flite, festival
(its own diphone and HTS voices, and the mbrola voices driven by festival's front end), pico
(SVOX) and RHVoice. ``available_voices`` keeps the installed ones. ``Voice.synthesize`` writes a
mono 16-bit wav at the engine's own sample rate; resampling happens in the corpus preparation.
"""

import functools
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import soundfile as sf

from multimodal_s2s.corpora.phone_menu.pronunciation import respell
from multimodal_s2s.errors import InputError

_ESPEAK_VOICES = (
    ("en-us", "us"), ("en-us+f3", "us"), ("en-us+m3", "us"), ("en-us+klatt", "us"),
    ("en-us-nyc", "us"), ("en-us+f5", "us"), ("en", "gb"), ("en+f2", "gb"), ("en+m7", "gb"),
    ("en-gb-scotland", "gb"), ("en-gb-x-rp", "gb"), ("en-gb-x-rp+f4", "gb"),
    ("en-gb-x-gbclan", "gb"), ("en-gb-x-gbcwmd", "gb"), ("en-029", "gb"),
)  # fmt: skip
_MBROLA_VOICES = (("us1", "us"), ("us2", "us"), ("us3", "us"), ("en1", "gb"))
_FLITE_VOICES = (("kal16", "us"), ("awb", "gb"), ("rms", "us"), ("slt", "us"))
_FESTIVAL_VOICES = (
    ("kal_diphone", "us", "english/kal_diphone"),
    ("ked_diphone", "us", "english/ked_diphone"),
    ("cmu_us_slt_arctic_hts", "us", "us/cmu_us_slt_arctic_hts"),
    ("rab_diphone", "gb", "english/rab_diphone"),
    ("don_diphone", "gb", "english/don_diphone"),
    ("us1_mbrola", "us", "english/us1_mbrola"),
    ("us2_mbrola", "us", "english/us2_mbrola"),
    ("us3_mbrola", "us", "english/us3_mbrola"),
    ("en1_mbrola", "gb", "english/en1_mbrola"),
)
_PICO_VOICES = (("en-US", "us"), ("en-GB", "gb"))
_RHVOICE_VOICES = (
    ("alan", "gb"), ("bdl", "us"), ("clb", "us"), ("slt", "us"), ("evgeniy-eng", "us"),
    ("lyubov", "us"),
)  # fmt: skip

_MBROLA_DIR = Path("/usr/share/mbrola")
_FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices")
_PICO_LANG_DIR = Path("/usr/share/pico/lang")
_RHVOICE_VOICE_DIR = Path("/usr/share/RHVoice/voices")
_ESPEAK_RATE_WPM = 175
_ESPEAK_PITCH = 50
_TIMEOUT_S = 60

# Held-out voices: the test set must contain a voice from outside espeak-ng when one is
# installed, and at least two voices in all (espeak-ng fallbacks fill up the count).
TEST_VOICE_IDS = ("flite-rms", "festival-ked_diphone", "espeak-ng-en-gb-scotland")
FALLBACK_TEST_VOICE_IDS = ("espeak-ng-en-gb-x-gbcwmd", "espeak-ng-en-us-nyc")
# Dev voices, one per engine family where installed, so that model selection sees voices
# unlike espeak-ng's as the test set does; the first fallback fills in when none is present.
DEV_VOICE_IDS = ("espeak-ng-en-029", "festival-don_diphone", "rhvoice-clb")
FALLBACK_DEV_VOICE_IDS = ("pico-en-GB", "espeak-ng-en-us+f5")


@dataclass(frozen=True)
class Voice:
    """One TTS voice: ``engine`` (espeak-ng, mbrola, flite, festival, pico), its voice ``name``
    and ``accent`` ("us" or "gb", which decides how the letter z is spoken)."""

    engine: str
    name: str
    accent: str

    @property
    def id(self) -> str:
        """Stable identifier used in manifests and file names, e.g. ``"flite-slt"``."""
        return f"{self.engine}-{self.name}"

    def synthesize(self, text: str, path: Path, speed: float = 1.0, pitch: float = 1.0) -> None:
        """Speak the label ``text`` into the wav file ``path``.

        ``speed`` > 1 is faster speech, ``pitch`` > 1 a higher voice. The engine is fed a
        pronunciation-friendly respelling of the label (letters as letter names).
        Engines without a pitch control (flite, RHVoice, festival's diphone and mbrola
        voices) speak at ``speed / pitch`` and the wav header's sample rate is scaled by
        ``pitch`` (a tape-speed shift of pitch and formants).
        """
        self.synthesize_many([Speech(text, Path(path), speed, pitch)])

    def synthesize_many(self, requests: list["Speech"]) -> None:
        """``synthesize`` each request. Festival speaks them all from one process: starting
        it and loading the voice is most of a short utterance's cost, and the audio is byte
        for byte what one process per utterance writes. The other engines start quickly, once
        a request."""
        spoken = [(respell(r.text, self.accent, self.engine), *r[1:]) for r in requests]
        if self.engine == "festival":
            script = "".join(_festival_script(self, *arguments) for arguments in spoken)
            _run(["festival", "--pipe"], self, script)
        else:
            for arguments in spoken:
                command, stdin = _command(self, *arguments)
                _run(command, self, stdin)
        for request in requests:
            if not request.path.is_file() or request.path.stat().st_size <= 44:
                raise InputError(
                    f"voice {self.id} wrote no audio to {request.path} for {request.text!r}"
                )
            if self.pitch_by_sample_rate:
                _scale_sample_rate(request.path, request.pitch)

    @property
    def pitch_by_sample_rate(self) -> bool:
        """Whether pitch is shifted by relabelling the sample rate (no pitch control)."""
        if self.engine == "festival":
            return not self.name.endswith("_hts")
        return self.engine in ("flite", "rhvoice")


class Speech(NamedTuple):
    """One request to a voice: the label ``text``, the wav ``path`` to write, ``speed`` and
    ``pitch`` (see ``Voice.synthesize``)."""

    text: str
    path: Path
    speed: float = 1.0
    pitch: float = 1.0


def available_voices() -> list[Voice]:
    """The voices of the inventory whose engine and voice data are installed, in a fixed order."""
    return list(_detect_voices())


def split_voices(voices: list[Voice]) -> dict[str, list[Voice]]:
    """Assign voices to "train", "dev" and "test" (held-out voices never used in training).

    Test takes the ``TEST_VOICE_IDS`` that are present, topped up to two voices from
    ``FALLBACK_TEST_VOICE_IDS``; dev takes the ``DEV_VOICE_IDS`` that are present, or else the
    first present ``FALLBACK_DEV_VOICE_IDS``; train the rest.
    """
    by_id = {voice.id: voice for voice in voices}
    test = [by_id[i] for i in TEST_VOICE_IDS if i in by_id]
    fallbacks = [by_id[i] for i in FALLBACK_TEST_VOICE_IDS if i in by_id]
    test += fallbacks[: max(0, 2 - len(test))]
    dev = [by_id[i] for i in DEV_VOICE_IDS if i in by_id]
    dev = dev or [by_id[i] for i in FALLBACK_DEV_VOICE_IDS if i in by_id][:1]
    train = [voice for voice in voices if voice not in test and voice not in dev]
    if len(test) < 2 or not dev or not train:
        found = ", ".join(by_id) or "none"
        raise InputError(f"too few TTS voices installed for train/dev/test splits (found {found})")
    return {"train": train, "dev": dev, "test": test}


@functools.cache
def _detect_voices() -> tuple[Voice, ...]:
    voices = []
    if shutil.which("espeak-ng"):
        voices += [Voice("espeak-ng", name, accent) for name, accent in _ESPEAK_VOICES]
        voices += [
            Voice("mbrola", name, accent)
            for name, accent in _MBROLA_VOICES
            if (_MBROLA_DIR / name / name).is_file() and shutil.which("mbrola")
        ]
    if shutil.which("flite"):
        listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout.split()
        voices += [Voice("flite", name, accent) for name, accent in _FLITE_VOICES if name in listed]
    if shutil.which("festival"):
        voices += [
            Voice("festival", name, accent)
            for name, accent, folder in _FESTIVAL_VOICES
            if (_FESTIVAL_VOICE_DIR / folder).is_dir()
        ]
    if shutil.which("RHVoice-test"):
        voices += [
            Voice("rhvoice", name, accent)
            for name, accent in _RHVOICE_VOICES
            if (_RHVOICE_VOICE_DIR / name).is_dir()
        ]
    if shutil.which("pico2wave"):
        voices += [
            Voice("pico", name, accent)
            for name, accent in _PICO_VOICES
            if (_PICO_LANG_DIR / f"{name}_ta.bin").is_file()
        ]
    return tuple(voices)


def _command(
    voice: Voice, text: str, path: Path, speed: float, pitch: float
) -> tuple[list[str], str | None]:
    """The command line that speaks ``text`` into ``path``, and its standard input (every
    engine but festival)."""
    if voice.engine in ("espeak-ng", "mbrola"):
        return _espeak_command(voice, text, path, speed, pitch), None
    if voice.engine == "pico":
        return _pico_command(voice, text, path, speed, pitch), None
    if voice.engine == "flite":
        return _flite_command(voice, text, path, speed / pitch), None
    if voice.engine == "rhvoice":
        rate = str(round(100 * speed / pitch))
        return ["RHVoice-test", "-p", voice.name, "-r", rate, "-o", str(path)], text
    raise InputError(f"unknown TTS engine {voice.engine!r} of voice {voice.id}")


def _espeak_command(voice: Voice, text: str, path: Path, speed: float, pitch: float) -> list[str]:
    name = f"mb-{voice.name}" if voice.engine == "mbrola" else voice.name
    rate = round(_ESPEAK_RATE_WPM * speed)
    level = min(99, max(0, round(_ESPEAK_PITCH * pitch)))
    return ["espeak-ng", "-v", name, "-s", str(rate), "-p", str(level), "-w", str(path), text]


def _pico_command(voice: Voice, text: str, path: Path, speed: float, pitch: float) -> list[str]:
    markup = (
        f"<speed level='{round(100 * speed)}'><pitch level='{round(100 * pitch)}'>"
        f"{text}</pitch></speed>"
    )
    return ["pico2wave", "-l", voice.name, "-w", str(path), markup]


def _flite_command(voice: Voice, text: str, path: Path, speed: float) -> list[str]:
    stretch = f"duration_stretch={1 / speed:.4f}"
    return ["flite", "-voice", voice.name, "--setf", stretch, "-t", text, "-o", str(path)]


def _festival_script(voice: Voice, text: str, path: Path, speed: float, pitch: float) -> str:
    quoted_text = text.replace("\\", "\\\\").replace('"', '\\"')
    if voice.pitch_by_sample_rate:
        tempo = f"(Parameter.set 'Duration_Stretch {pitch / speed:.4f})"
    else:
        options = f'(list "-r" {speed:.4f}) (list "-fm" {12 * math.log2(pitch):.4f})'
        tempo = f"(set! hts_engine_params (append hts_engine_params (list {options})))"
    return (
        f"(voice_{voice.name}) {tempo} "
        f'(utt.save.wave (utt.synth (Utterance Text "{quoted_text}")) "{path}" \'riff)\n'
    )


def _run(command: list[str], voice: Voice, stdin: str | None = None) -> None:
    result = subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT_S
    )
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["no message"])[-1]
        status = f"{command[0]} exit {result.returncode}"
        raise InputError(f"voice {voice.id} failed ({status}): {message}")


def _scale_sample_rate(path: Path, factor: float) -> None:
    """Relabel the wav's sample rate by ``factor``: played back, pitch and tempo scale by it."""
    if factor == 1.0:
        return
    audio, rate = sf.read(path, dtype="int16")
    sf.write(path, audio, round(rate * factor), subtype="PCM_16")
