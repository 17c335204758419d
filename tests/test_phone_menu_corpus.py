"""Tests of the built-in phone-menu speech corpus (text, pronunciation, voices, preparation)."""

import json
import random
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from multimodal_s2s.corpora.phone_menu import augment
from multimodal_s2s.corpora.phone_menu.prepare import SPLITS, group_by_voice, prepare_corpus
from multimodal_s2s.corpora.phone_menu.pronunciation import respell
from multimodal_s2s.corpora.phone_menu.real import klettres_letters, pocketsphinx_digits
from multimodal_s2s.corpora.phone_menu.text import (
    REQUIRED_WORDS,
    VOCABULARY,
    date_to_words,
    digits_to_words,
    generate_sentences,
    is_valid_label,
    money_to_words,
    number_to_words,
    ordinal,
    time_to_words,
)
from multimodal_s2s.corpora.phone_menu.voices import (
    DEV_VOICE_IDS,
    Speech,
    Voice,
    available_voices,
    split_voices,
)
from multimodal_s2s.errors import InputError

HAS_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng is not installed")
FESTIVAL_DIPHONE = Voice("festival", "kal_diphone", "us")
needs_festival = pytest.mark.skipif(
    FESTIVAL_DIPHONE not in available_voices(), reason="festival with kal_diphone is not installed"
)
RHVOICE = Voice("rhvoice", "slt", "us")
needs_rhvoice = pytest.mark.skipif(
    RHVOICE not in available_voices(), reason="RHVoice with its English slt voice is not installed"
)
ESPEAK_VOICES = [
    Voice("espeak-ng", name, "us")
    for name in ("en-us", "en", "en-029", "en-gb-scotland", "en-gb-x-gbcwmd")
]


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    return generate_sentences(random.Random(0), 2000)


def test_required_words_occur_alone_and_in_longer_utterances(sentences):
    alone = set(sentences)
    inside = {word for s in sentences if len(s.split()) > 1 for word in s.split()}
    assert [w for w in REQUIRED_WORDS if w not in alone] == []
    assert [w for w in REQUIRED_WORDS if w not in inside] == []


def test_required_words_are_spelled_as_the_issue_lists():
    assert len(REQUIRED_WORDS) == len(set(REQUIRED_WORDS))
    for word in ("oh", "niner", "xray", "o'clock", "twentieth", "billionth", "a", "z", "pound"):
        assert word in REQUIRED_WORDS
    assert {"x-ray", "whisky", "fourty", "zeroth"}.isdisjoint(REQUIRED_WORDS)


def test_labels_are_lowercase_words_with_single_spaces_from_the_vocabulary(sentences):
    assert all(is_valid_label(s) for s in sentences)
    assert {w for s in sentences for w in s.split()} <= VOCABULARY
    assert not is_valid_label("Press one")
    assert not is_valid_label("press  one")
    assert not is_valid_label(" press")


def test_generation_is_reproducible_from_the_seed():
    first = generate_sentences(random.Random(3), 300)
    assert first == generate_sentences(random.Random(3), 300)
    assert first != generate_sentences(random.Random(4), 300)
    assert len(first) == 300


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (0, "zero"),
        (13, "thirteen"),
        (42, "forty two"),
        (101, "one hundred one"),
        (1_000, "one thousand"),
        (20_019, "twenty thousand nineteen"),
        (1_000_000_001, "one billion one"),
        (-7, "minus seven"),
        (
            999_999_999_999,
            "nine hundred ninety nine billion nine hundred ninety nine million "
            "nine hundred ninety nine thousand nine hundred ninety nine",
        ),
    ],
)
def test_number_to_words(number, words):
    assert number_to_words(number) == words


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (1, "first"),
        (2, "second"),
        (3, "third"),
        (8, "eighth"),
        (12, "twelfth"),
        (20, "twentieth"),
        (21, "twenty first"),
        (90, "ninetieth"),
        (100, "one hundredth"),
        (3_000, "three thousandth"),
        (1_000_000, "one millionth"),
        (2_000_000_000, "two billionth"),
    ],
)
def test_ordinal(number, words):
    assert ordinal(number) == words


def test_times_dates_money_and_digit_strings():
    assert time_to_words(10, 30, "pm") == "ten thirty p m"
    assert time_to_words(7, 0) == "seven o'clock"
    assert time_to_words(9, 5, "am") == "nine oh five a m"
    assert date_to_words(21, 3, weekday=0) == "monday the twenty first of march"
    assert date_to_words(2, 12, style="month") == "december second"
    assert money_to_words(42) == "forty two dollars"
    assert money_to_words(1, 1) == "one dollar and one cent"
    assert digits_to_words("2007", zero="oh") == "two oh oh seven"


@pytest.mark.parametrize(
    "call",
    [
        lambda: number_to_words(10**12),
        lambda: ordinal(0),
        lambda: time_to_words(13, 0),
        lambda: date_to_words(32, 1),
        lambda: digits_to_words("12a"),
        lambda: money_to_words(-1),
    ],
)
def test_bad_values_raise(call):
    with pytest.raises(ValueError):
        call()


def test_respelling_speaks_letters_as_letter_names():
    assert respell("a m") == "eigh em"
    assert respell("k x b seven") == "kay ex bee seven"
    assert respell("z", accent="gb") == "zed"
    assert respell("xray quebec") == "ex ray kebeck"
    assert respell("one thousandth", engine="flite") == "one thousanth"
    assert respell("one thousandth", engine="espeak-ng") == "one thousandth"


@needs_espeak
def test_espeak_pronounces_the_respelled_a_m_as_letters():
    def phonemes(text: str) -> str:
        return subprocess.run(
            ["espeak-ng", "-q", "-x", "-v", "en-us", text], capture_output=True, text=True
        ).stdout

    assert "a#" in phonemes("a m")  # the article: why the respelling exists
    assert phonemes(respell("a m")).split()[0] == "'eI"
    assert phonemes(respell("w")).startswith("d'Vb")


def _speech_seconds(path: Path) -> float:
    audio, rate = sf.read(path, dtype="float32")
    loud = np.flatnonzero(np.abs(audio) > 0.05 * np.abs(audio).max())
    return (loud[-1] - loud[0]) / rate


@needs_espeak
def test_single_letters_last_as_long_as_letter_names(tmp_path):
    voice = ESPEAK_VOICES[0]
    seconds = {}
    for label in ("a", "w", "a m"):
        path = tmp_path / f"{label.replace(' ', '_')}.wav"
        voice.synthesize(label, path)
        seconds[label] = _speech_seconds(path)
    article = tmp_path / "article.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(article), "a m"], check=True)
    assert seconds["a"] > 0.2
    assert seconds["w"] > seconds["a"] + 0.15  # "double you"
    assert seconds["a m"] > _speech_seconds(article) + 0.05


def test_split_voices_are_disjoint_and_hold_out_a_non_espeak_voice_when_installed():
    voices = available_voices() or ESPEAK_VOICES
    splits = split_voices(voices)
    ids = {name: {v.id for v in vs} for name, vs in splits.items()}
    assert ids["train"].isdisjoint(ids["dev"] | ids["test"])
    assert ids["dev"].isdisjoint(ids["test"])
    assert len(ids["test"]) >= 2
    if any(v.engine != "espeak-ng" for v in voices):
        assert any(v.engine != "espeak-ng" for v in splits["test"])


def test_espeak_only_inventory_still_gets_two_test_voices_and_too_few_voices_raise():
    splits = split_voices(ESPEAK_VOICES)
    assert [v.id for v in splits["test"]] == [
        "espeak-ng-en-gb-scotland",
        "espeak-ng-en-gb-x-gbcwmd",
    ]
    assert [v.id for v in splits["dev"]] == ["espeak-ng-en-029"]
    with pytest.raises(InputError, match="too few TTS voices"):
        split_voices(ESPEAK_VOICES[:3])


def test_dev_takes_one_voice_per_listed_engine_and_falls_back_when_none_is_installed():
    inventory = ESPEAK_VOICES + [
        Voice("festival", "don_diphone", "gb"),
        Voice("rhvoice", "clb", "us"),
        Voice("rhvoice", "bdl", "us"),
        Voice("pico", "en-GB", "gb"),
    ]
    splits = split_voices(inventory)
    assert [v.id for v in splits["dev"]] == [
        "espeak-ng-en-029", "festival-don_diphone", "rhvoice-clb",
    ]  # fmt: skip
    assert "rhvoice-bdl" in {v.id for v in splits["train"]}
    no_listed_dev = [v for v in inventory if v.id not in DEV_VOICE_IDS]
    assert [v.id for v in split_voices(no_listed_dev)["dev"]] == ["pico-en-GB"]


def test_telephone_band_removes_energy_above_the_8_khz_band():
    t = np.arange(augment.SAMPLE_RATE) / augment.SAMPLE_RATE
    high = (0.5 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    voice_band = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    assert augment.telephone_band(high).shape == high.shape
    assert np.sqrt(np.mean(augment.telephone_band(high) ** 2)) < 0.02
    assert np.sqrt(np.mean(augment.telephone_band(voice_band) ** 2)) > 0.25


@pytest.mark.parametrize("kind", augment.NOISE_KINDS)
def test_noise_is_mixed_at_the_requested_snr(kind):
    rng = np.random.default_rng(0)
    signal = rng.standard_normal(8000).astype(np.float32) * 0.1
    noise = augment.make_noise(kind, 8000, rng)
    assert noise.shape == (8000,)
    assert np.sqrt(np.mean(noise**2)) == pytest.approx(1.0, rel=1e-3)
    mixed = augment.add_noise(signal, noise, 10.0)
    snr = 10 * np.log10(np.mean(signal**2) / np.mean((mixed - signal) ** 2))
    assert snr == pytest.approx(10.0, abs=1e-3)


def test_real_recordings_are_labelled_from_file_names_and_transcriptions(tmp_path):
    silence = np.zeros(1600, dtype=np.float32)
    for language, name in (("en", "A.ogg"), ("en_GB", "b.ogg"), ("en", "notes.ogg")):
        (tmp_path / "kl" / language / "alpha").mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / "kl" / language / "alpha" / name, silence, 44100)
    letters = klettres_letters(tmp_path / "kl")
    assert [(r.text, r.voice) for r in letters] == [("a", "klettres-en"), ("b", "klettres-en_GB")]

    data = tmp_path / "ps"
    (data / "tidigits").mkdir(parents=True)
    (data / "cards").mkdir()
    np.zeros(160, dtype="<i2").tofile(data / "tidigits" / "dhd.2934z.raw")
    for name in ("001", "004"):
        sf.write(data / "cards" / f"{name}.wav", silence, 16000)
    (data / "cards" / "cards.transcription").write_text(
        "<s> ten of clubs  </s> (001)\n<s> five five  </s> (004)\n"
    )
    digits = pocketsphinx_digits(data)
    assert [(r.text, r.id) for r in digits] == [
        ("two nine three four zero", "tidigits-2934z"),
        ("five five", "pocketsphinx-cards-004"),
    ]


def _manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@needs_espeak
def test_tiny_prepare_run_writes_16khz_wavs_and_is_a_cache_hit_the_second_time(tmp_path):
    out = tmp_path / "corpus"
    kwargs = dict(num_train=6, num_dev=2, num_test_per_voice=2, jobs=2, voices=ESPEAK_VOICES)
    manifests = prepare_corpus(out, seed=5, progress=False, **kwargs)
    assert sorted(manifests) == sorted(SPLITS)
    entries = {split: _manifest(path) for split, path in manifests.items()}
    assert [len(entries[s]) for s in ("train", "dev", "test")] == [6, 2, 4]
    for entry in entries["train"] + entries["dev"] + entries["test"]:
        info = sf.info(entry["audio"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert entry["duration"] == pytest.approx(info.frames / 16000, abs=1e-4)
        assert entry["duration"] > 0.3
        assert Path(entry["audio"]).is_absolute() and is_valid_label(entry["text"])
    voices = {s: {e["voice"] for e in entries[s]} for s in ("train", "dev", "test")}
    assert voices["train"].isdisjoint(voices["dev"] | voices["test"])
    assert voices["test"] <= {"espeak-ng-en-gb-scotland", "espeak-ng-en-gb-x-gbcwmd"}

    files = sorted(p for p in out.rglob("*") if p.is_file())
    stamps = [p.stat().st_mtime_ns for p in files]
    texts = {split: path.read_text() for split, path in manifests.items()}
    again = prepare_corpus(out, seed=5, progress=False, **kwargs)
    assert sorted(p for p in out.rglob("*") if p.is_file()) == files
    assert [p.stat().st_mtime_ns for p in files] == stamps
    assert {split: path.read_text() for split, path in again.items()} == texts


@needs_espeak
def test_given_training_texts_are_spoken_in_turn_and_leave_dev_and_test_alone(tmp_path):
    kwargs = dict(num_dev=2, num_test_per_voice=1, jobs=1, voices=ESPEAK_VOICES, progress=False)
    generated = prepare_corpus(tmp_path / "a", seed=5, num_train=4, **kwargs)
    given = ["we call it bear", "zero three five one"]
    spoken = prepare_corpus(tmp_path / "b", seed=5, num_train=4, train_texts=given, **kwargs)
    assert [e["text"] for e in _manifest(spoken["train"])] == given * 2
    for split in ("dev", "test"):
        assert [e["text"] for e in _manifest(spoken[split])] == [
            e["text"] for e in _manifest(generated[split])
        ]
    voices = [[e["voice"] for e in _manifest(m["train"])] for m in (generated, spoken)]
    assert voices[0] == voices[1]  # the same random stream picks the voices


@needs_festival
def test_festival_speaks_many_requests_in_one_process_exactly_as_one_at_a_time(tmp_path):
    requests = [
        Speech("press one", tmp_path / "a.wav", 1.0, 1.0),
        Speech("k x b", tmp_path / "b.wav", 1.2, 0.9),
        Speech("seven o'clock", tmp_path / "c.wav", 0.85, 1.1),
    ]
    FESTIVAL_DIPHONE.synthesize_many(requests)
    for request in requests:
        alone = tmp_path / f"alone-{request.path.name}"
        FESTIVAL_DIPHONE.synthesize(request.text, alone, request.speed, request.pitch)
        assert request.path.read_bytes() == alone.read_bytes()
    rates = [sf.info(request.path).samplerate for request in requests]
    assert rates == [16000, round(16000 * 0.9), round(16000 * 1.1)]  # pitch as a rate shift


def test_jobs_are_grouped_by_voice_in_order_and_capped_in_size():
    voices = [ESPEAK_VOICES[0], ESPEAK_VOICES[1]]
    jobs = [SimpleNamespace(index=i, voice=voices[i % 3 == 0]) for i in range(12)]
    groups = group_by_voice(jobs, size=3)
    assert [[job.index for job in group] for group in groups] == [
        [0, 3, 6], [9], [1, 2, 4], [5, 7, 8], [10, 11],
    ]  # fmt: skip


@pytest.mark.parametrize(
    "voice, by_rate",
    [
        (Voice("espeak-ng", "en-us", "us"), False),
        (Voice("pico", "en-US", "us"), False),
        (Voice("festival", "cmu_us_slt_arctic_hts", "us"), False),
        (Voice("festival", "kal_diphone", "us"), True),
        (Voice("festival", "us1_mbrola", "us"), True),
        (Voice("flite", "rms", "us"), True),
        (Voice("rhvoice", "bdl", "us"), True),
    ],
)
def test_engines_without_a_pitch_control_shift_pitch_by_sample_rate(voice, by_rate):
    assert voice.pitch_by_sample_rate is by_rate


@needs_rhvoice
def test_rhvoice_speaks_at_the_requested_speed_and_pitch(tmp_path):
    durations, rates = {}, {}
    for speed, pitch in [(1.0, 1.0), (1.5, 1.0), (1.0, 1.2)]:
        path = tmp_path / f"{speed}-{pitch}.wav"
        RHVOICE.synthesize("press one two three", path, speed, pitch)
        info = sf.info(path)
        durations[speed, pitch], rates[speed, pitch] = info.duration, info.samplerate
    assert rates == {(1.0, 1.0): 24000, (1.5, 1.0): 24000, (1.0, 1.2): 28800}
    assert durations[1.5, 1.0] == pytest.approx(durations[1.0, 1.0] / 1.5, rel=0.1)
    assert durations[1.0, 1.2] == pytest.approx(durations[1.0, 1.0], rel=0.05)  # tape shift
