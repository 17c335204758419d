import json
import os

import numpy as np
import pytest
import soundfile

from multimodal_s2s.cli import main
from multimodal_s2s.data.manifest import (
    collected_records,
    import_fsdd,
    import_kaldi,
    import_librispeech,
    read_manifest,
    write_manifest,
)
from multimodal_s2s.errors import InputError


def _write_audio(path, seconds: float, sample_rate: int = 16000, file_format: str = "WAV"):
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.zeros(round(seconds * sample_rate), dtype=np.float32)
    soundfile.write(path, samples, sample_rate, subtype="PCM_16", format=file_format)
    return path


def test_write_then_read_round_trip_keeps_extra_keys(tmp_path):
    records = [
        {"audio": str(tmp_path / "a.wav"), "text": "héllo world", "duration": 1.5, "spk": 3},
        {"audio": tmp_path / "b.wav", "text": "second", "duration": 0.25},
    ]
    path = tmp_path / "sub" / "train.jsonl"
    write_manifest(records, path)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2
    assert read_manifest(path) == [records[0], {**records[1], "audio": str(tmp_path / "b.wav")}]
    assert os.listdir(path.parent) == ["train.jsonl"]  # no temp file left behind


def test_relative_audio_resolved_against_manifest_dir(tmp_path):
    path = tmp_path / "data" / "dev.jsonl"
    path.parent.mkdir()
    path.write_text(
        '{"audio": "wavs/x.flac", "text": "x"}\n\n{"audio": "/abs/y.wav", "text": ""}\n'
    )
    records = read_manifest(path)
    assert [r["audio"] for r in records] == [
        str(tmp_path / "data" / "wavs" / "x.flac"),
        "/abs/y.wav",
    ]


def test_read_manifest_with_another_source_key(tmp_path):
    path = tmp_path / "captions.jsonl"
    path.write_text('{"image": "img/1.jpg", "text": "a cat"}\n')
    assert read_manifest(path, source_key="image")[0]["image"] == str(tmp_path / "img" / "1.jpg")


def test_write_manifest_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.jsonl"
    write_manifest([{"audio": "a.wav", "text": "old"}], path)

    def records():
        yield {"audio": "b.wav", "text": "new"}
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_manifest(records(), path)
    assert read_manifest(path)[0]["text"] == "old"
    assert os.listdir(tmp_path) == ["m.jsonl"]


def test_missing_manifest_is_named(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(InputError, match=f"{path}: manifest not found"):
        read_manifest(path)


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ('{"audio": "a.wav", "text": ', "invalid JSON"),
        ('["a.wav", "text"]', "expected a JSON object"),
        ('{"text": "no audio"}', "missing key 'audio'"),
        ('{"audio": "a.wav"}', "missing key 'text'"),
        ('{"audio": "a.wav", "text": 5}', "'text' must be a string"),
    ],
)
def test_bad_lines_are_reported_with_line_numbers(tmp_path, bad_line, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"audio": "a.wav", "text": "fine"}\n\n' + bad_line + "\n")
    with pytest.raises(InputError, match=f"{path}:3: {problem}"):
        read_manifest(path)


@pytest.fixture
def librispeech_root(tmp_path):
    root = tmp_path / "LibriSpeech" / "dev-clean"
    chapters = {
        ("84", "121123"): ["GO DO YOU HEAR", "BUT IN LESS THAN FIVE MINUTES"],
        ("1272", "128104"): ["MISTER QUILTER IS THE APOSTLE"],
    }
    for (speaker, chapter), texts in chapters.items():
        folder = root / speaker / chapter
        lines = []
        for number, text in enumerate(texts):
            utterance_id = f"{speaker}-{chapter}-{number:04d}"
            _write_audio(folder / f"{utterance_id}.flac", 0.5 + number * 0.25, file_format="FLAC")
            lines.append(f"{utterance_id} {text}\n")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))
    return root


def test_import_librispeech(librispeech_root, monkeypatch):
    monkeypatch.chdir(librispeech_root.parent)
    records = import_librispeech(librispeech_root.relative_to(librispeech_root.parent))
    folder = librispeech_root / "84" / "121123"
    assert [r["id"] for r in records] == ["1272-128104-0000", "84-121123-0000", "84-121123-0001"]
    assert records[2] == {
        "id": "84-121123-0001",
        "audio": str(folder / "84-121123-0001.flac"),
        "text": "but in less than five minutes",
        "duration": 0.75,
        "speaker": "84",
    }
    assert records[0]["duration"] == 0.5


def test_import_librispeech_errors(librispeech_root, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=f"{empty}: no \\*.trans.txt transcripts found"):
        import_librispeech(empty)
    transcript = librispeech_root / "84" / "121123" / "84-121123.trans.txt"
    transcript.write_text("84-121123-0000 GO\n84-121123-0009 MISSING AUDIO\n")
    with pytest.raises(InputError, match="84-121123-0009.flac: audio file not found"):
        import_librispeech(librispeech_root)
    transcript.write_text("84-121123-0000 GO\n84-121123-0001\n")
    with pytest.raises(InputError, match=f"{transcript}:2: expected 'KEY VALUE'"):
        import_librispeech(librispeech_root)
    with pytest.raises(InputError, match="not found"):
        import_librispeech(tmp_path / "absent")


@pytest.fixture
def kaldi_dir(tmp_path):
    data_dir = tmp_path / "data" / "train"
    data_dir.mkdir(parents=True)
    wav_a = _write_audio(tmp_path / "wav" / "a.wav", 1.0, sample_rate=8000)
    wav_b = _write_audio(tmp_path / "wav" / "b.wav", 0.5)
    (data_dir / "wav.scp").write_text(f"utt-a {wav_a}\nutt-b {wav_b}\n")
    (data_dir / "text").write_text("utt-a hello there\nutt-b good bye\n")
    return data_dir


def test_import_kaldi(kaldi_dir, tmp_path):
    records = import_kaldi(kaldi_dir)
    assert records == [
        {
            "id": "utt-a",
            "audio": str(tmp_path / "wav" / "a.wav"),
            "text": "hello there",
            "duration": 1.0,
        },
        {
            "id": "utt-b",
            "audio": str(tmp_path / "wav" / "b.wav"),
            "text": "good bye",
            "duration": 0.5,
        },
    ]


def test_import_kaldi_resolves_relative_paths_against_the_working_dir(
    kaldi_dir, tmp_path, monkeypatch
):
    (kaldi_dir / "wav.scp").write_text("utt-a wav/a.wav\nutt-b wav/b.wav\n")
    monkeypatch.chdir(tmp_path)
    records = import_kaldi(kaldi_dir.relative_to(tmp_path))
    assert [r["audio"] for r in records] == [str(tmp_path / "wav" / n) for n in ("a.wav", "b.wav")]


def test_import_kaldi_skips_unpaired_utterances_with_a_warning(kaldi_dir):
    (kaldi_dir / "text").write_text("utt-a hello there\nutt-z orphan text\n")
    with pytest.warns(UserWarning) as caught:
        records = import_kaldi(kaldi_dir)
    assert [r["id"] for r in records] == ["utt-a"]
    messages = " ".join(str(w.message) for w in caught)
    assert "missing from text (e.g. utt-b)" in messages
    assert "missing from wav.scp (e.g. utt-z)" in messages


def test_import_kaldi_rejects_piped_commands(kaldi_dir):
    wav_scp = kaldi_dir / "wav.scp"
    wav_scp.write_text(wav_scp.read_text() + "utt-c sox in.sph -t wav - |\n")
    with pytest.raises(InputError, match=f"{wav_scp}:3: piped command for 'utt-c' is unsupported"):
        import_kaldi(kaldi_dir)


def test_import_kaldi_errors(kaldi_dir):
    with pytest.raises(InputError, match="absent: Kaldi data directory not found"):
        import_kaldi(kaldi_dir / "absent")
    (kaldi_dir / "text").unlink()
    with pytest.raises(InputError, match=f"{kaldi_dir / 'text'}: file not found"):
        import_kaldi(kaldi_dir)
    (kaldi_dir / "text").write_text("utt-a x\nutt-a y\n")
    with pytest.raises(InputError, match="text:2: duplicate key 'utt-a'"):
        import_kaldi(kaldi_dir)
    (kaldi_dir / "segments").write_text("seg-1 utt-a 0.0 0.5\n")
    with pytest.raises(InputError, match="segments files are unsupported"):
        import_kaldi(kaldi_dir)


def test_import_kaldi_reads_ogg_opus_tabs_and_paths_relative_to_the_corpus_root(tmp_path):
    corpus = tmp_path / "corpus"
    data_dir = corpus / "train"
    data_dir.mkdir(parents=True)
    for name, seconds, subtype in (("S1/u1", 1.5, "VORBIS"), ("S2/u2", 0.5, "OPUS")):
        path = corpus / "WAVE" / f"{name}.ogg"
        path.parent.mkdir(parents=True)
        samples = np.zeros(round(seconds * 16000), np.float32)
        soundfile.write(path, samples, 16000, format="OGG", subtype=subtype)
    (data_dir / "wav.scp").write_text("u1\tWAVE/S1/u1.ogg\nu2\tWAVE/S2/u2.ogg\n")
    (data_dir / "text").write_text("u1\tWE CALL IT BEAR\nu2 ZERO  ONE\n")
    (data_dir / "utt2spk").write_text("u1 S1\nu2 S2\n")
    (data_dir / "spk2age").write_text("S1 6\nS2 30\n")
    (data_dir / "spk2gender").write_text("S1 f\n")
    records = import_kaldi(data_dir)
    assert [(r["audio"], r["text"], r["speaker"], r["age"]) for r in records] == [
        (str(corpus / "WAVE" / "S1" / "u1.ogg"), "we call it bear", "S1", 6),
        (str(corpus / "WAVE" / "S2" / "u2.ogg"), "zero  one", "S2", 30),
    ]
    assert [r.get("gender") for r in records] == ["f", None]
    assert records[0]["duration"] == pytest.approx(1.5, abs=0.01)
    assert records[1]["duration"] == pytest.approx(0.5, abs=0.01)
    assert import_kaldi(data_dir, lowercase=False)[0]["text"] == "WE CALL IT BEAR"


def test_import_kaldi_names_a_missing_audio_file_and_its_line(kaldi_dir):
    wav_scp = kaldi_dir / "wav.scp"
    wav_scp.write_text(wav_scp.read_text() + "utt-c\tgone/c.wav\n")
    (kaldi_dir / "text").write_text("utt-a x\nutt-b y\nutt-c z\n")
    with pytest.raises(
        InputError, match=f"^{wav_scp}:3: audio file not found for 'utt-c': gone/c.wav$"
    ):
        import_kaldi(kaldi_dir)


def test_ms2s_import_writes_a_manifest(kaldi_dir, tmp_path, capsys):
    out = tmp_path / "out" / "train.jsonl"
    assert main(["import", "kaldi", str(kaldi_dir), str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["utt-a", "utt-b"]
    assert "wrote 2 utterances" in capsys.readouterr().out
    assert main(["import", "librispeech", str(tmp_path / "absent"), str(out)]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {tmp_path / 'absent'}: LibriSpeech directory not found\n"
    )


def test_collected_records_are_written_when_the_block_ends(tmp_path):
    output = tmp_path / "out.jsonl"
    with collected_records(output) as records:
        records.append({"audio": "a.wav", "text": "one"})
        assert not output.exists()
    assert output.read_text() == '{"audio": "a.wav", "text": "one"}\n'
    with collected_records(None) as records:
        records.append({"audio": "b.wav", "text": "two"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


@pytest.mark.parametrize(
    ("exception", "why"),
    [(KeyboardInterrupt, "interrupted"), (RuntimeError, "stopped by an error")],
)
def test_an_interrupt_or_error_leaves_the_collected_records_in_a_partial_file(
    tmp_path, capsys, exception, why
):
    output = tmp_path / "out.jsonl"
    with pytest.raises(exception), collected_records(output) as records:
        records.append({"audio": "a.wav", "text": "one"})
        raise exception
    assert not output.exists()
    partial = tmp_path / "out.jsonl.partial"
    assert partial.read_text() == '{"audio": "a.wav", "text": "one"}\n'
    assert f"{why}: 1 finished results kept in" in capsys.readouterr().err


def test_collected_records_refuse_an_unwritable_path_before_the_block_runs(tmp_path):
    ran = []
    with pytest.raises(InputError, match="is a folder"), collected_records(tmp_path):
        ran.append(True)
    assert ran == []


def test_import_fsdd_names_each_digit_and_speaker(tmp_path):
    recordings = tmp_path / "fsdd" / "recordings"
    for name in ("0_jackson_0", "7_theo_12", "9_yweweler_49"):
        _write_audio(recordings / f"{name}.wav", 0.25, sample_rate=8000)
    (recordings / "notes.wav").write_bytes(b"")  # not a recording name: ignored
    records = import_fsdd(tmp_path / "fsdd")
    assert [(r["id"], r["text"], r["speaker"], r["duration"]) for r in records] == [
        ("0_jackson_0", "zero", "jackson", 0.25),
        ("7_theo_12", "seven", "theo", 0.25),
        ("9_yweweler_49", "nine", "yweweler", 0.25),
    ]
    assert records == import_fsdd(recordings)
    with pytest.raises(InputError, match="no FSDD recordings"):
        import_fsdd(tmp_path)
