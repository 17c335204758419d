import argparse
import json
import math

import pytest
import soundfile
import torch

from multimodal_s2s.config import config_from_dict
from multimodal_s2s.data.pauses import split_at_pauses
from multimodal_s2s.errors import InputError
from multimodal_s2s.inference.transcribe import add_transcribe_command, transcribe
from multimodal_s2s.training.train import train

RATE = 16000
DURATIONS = [0.3, 0.5, 0.7, 0.4]


def _tone(seconds: float, frequency: float = 200.0) -> torch.Tensor:
    t = torch.arange(round(seconds * RATE)) / RATE
    return 0.3 * torch.sin(2 * math.pi * frequency * t)


def _write(path, wave: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, wave.numpy(), RATE, subtype="FLOAT")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A folder of tone wav files (one in a sub-folder) and a manifest of them."""
    folder = tmp_path_factory.mktemp("audio")
    records = []
    for index, seconds in enumerate(DURATIONS):
        relative = f"sub/utt{index}.wav" if index == 3 else f"utt{index}.wav"
        _write(folder / relative, _tone(seconds, 200 + 100 * index))
        records.append({"audio": relative, "text": ["ab", "ba", "abba", "b"][index]})
    manifest = tmp_path_factory.mktemp("manifest") / "train.jsonl"
    manifest.write_text(
        "".join(json.dumps({**r, "audio": str(folder / r["audio"])}) + "\n" for r in records)
    )
    return folder, manifest


@pytest.fixture(scope="module")
def checkpoint(corpus, tmp_path_factory):
    _, manifest = corpus
    config = config_from_dict(
        {
            "encoder": {"name": "pblstm", "hidden_dim": 16, "num_layers": 1},
            "decoder": {"hidden_dim": 32, "embedding_dim": 16},
            "search": {"max_length": 12},
            "train": {"epochs": 1, "batch_size": 2, "device": "cpu", "warmup_steps": 1},
            "data": {
                "name": "speech",
                "train": str(manifest),
                "dev": str(manifest),
                "num_workers": 0,
            },
        }
    )
    result = train(config, tmp_path_factory.mktemp("run"), progress=False)
    return result.best_checkpoint


def _audio_files(folder) -> list[str]:
    return [str(folder / f"utt{i}.wav") for i in range(3)] + [str(folder / "sub/utt3.wav")]


def test_directory_to_jsonl_skips_a_corrupt_file(corpus, checkpoint, tmp_path, capsys):
    folder, _ = corpus
    inputs = tmp_path / "inputs"
    for path in _audio_files(folder):
        _write(
            inputs / path.removeprefix(str(folder) + "/"),
            torch.from_numpy(soundfile.read(path, dtype="float32")[0]),
        )
    (inputs / "broken.wav").write_bytes(b"RIFF not really a wav file")
    output = tmp_path / "out" / "hyps.jsonl"

    code = transcribe(checkpoint, [str(inputs)], output, beam=2, batch_size=3, device="cpu")

    assert code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.wav" in errors[0]
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["audio"] for r in records] == [
        str(inputs / name) for name in ("sub/utt3.wav", "utt0.wav", "utt1.wav", "utt2.wav")
    ]
    for record in records:
        assert set(record) == {"audio", "text", "score"}
        assert isinstance(record["text"], str) and isinstance(record["score"], float)
    assert list(output.parent.iterdir()) == [output]


def test_stdout_lines_match_jsonl_in_input_order(corpus, checkpoint, tmp_path, capsys):
    folder, _ = corpus
    files = list(reversed(_audio_files(folder)))
    output = tmp_path / "hyps.jsonl"
    assert transcribe(checkpoint, files, output, beam=1, device="cpu") == 0
    capsys.readouterr()
    assert transcribe(checkpoint, files, None, beam=1, device="cpu") == 0
    lines = capsys.readouterr().out.splitlines()
    expected = [json.loads(line) for line in output.read_text().splitlines()]
    assert lines == [f"{r['audio']}\t{r['text']}" for r in expected]
    assert [r["audio"] for r in expected] == files


def test_missing_inputs_are_reported_and_the_rest_transcribed(corpus, checkpoint, tmp_path, capsys):
    folder, _ = corpus
    output = tmp_path / "hyps.jsonl"
    missing = str(tmp_path / "nothing.wav")
    code = transcribe(checkpoint, [missing, _audio_files(folder)[0]], output, beam=1, device="cpu")
    assert code == 1
    assert f"error: {missing}: audio path not found" in capsys.readouterr().err
    assert len(output.read_text().splitlines()) == 1


@pytest.mark.parametrize(
    ("gap_seconds", "max_chunk_seconds"),
    [(0.1, 1.0), (0.5, 30.0)],
    ids=["cut-at-the-chunk-limit", "cut-at-a-pause"],
)
def test_long_audio_is_chunked_and_joined(checkpoint, tmp_path, gap_seconds, max_chunk_seconds):
    wave = torch.cat([_tone(0.6, 250), torch.zeros(round(gap_seconds * RATE)), _tone(0.5, 250)])
    long_path = tmp_path / "long.wav"
    _write(long_path, wave)
    bounds = split_at_pauses(wave, RATE, max_chunk_seconds)
    assert len(bounds) == 2
    chunk_paths = []
    for index, (start, end) in enumerate(bounds):
        chunk_paths.append(tmp_path / "chunks" / f"c{index}.wav")
        _write(chunk_paths[-1], wave[start:end])

    joined, pieces = tmp_path / "joined.jsonl", tmp_path / "pieces.jsonl"
    transcribe(
        checkpoint,
        [str(long_path)],
        joined,
        beam=1,
        device="cpu",
        max_chunk_seconds=max_chunk_seconds,
    )
    transcribe(checkpoint, [str(p) for p in chunk_paths], pieces, beam=1, device="cpu")

    (record,) = [json.loads(line) for line in joined.read_text().splitlines()]
    chunks = [json.loads(line) for line in pieces.read_text().splitlines()]
    assert record["text"] == " ".join(c["text"] for c in chunks if c["text"])
    assert record["score"] == pytest.approx(sum(c["score"] for c in chunks) / 2, abs=1e-4)


def test_bad_options_and_checkpoints_raise_input_errors(corpus, tmp_path):
    folder, _ = corpus
    files = _audio_files(folder)[:1]
    with pytest.raises(InputError, match="--beam .* got 0 and 16"):
        transcribe(tmp_path / "model.pt", files, None, beam=0)
    with pytest.raises(InputError, match="--min-pause-seconds >= 0, got 30.0 and -1.0"):
        transcribe(tmp_path / "model.pt", files, None, min_pause_seconds=-1.0)
    with pytest.raises(InputError, match="model.pt: checkpoint not found"):
        transcribe(tmp_path / "model.pt", files, None, device="cpu")
    with pytest.raises(InputError, match="model.pt: checkpoint not found"):
        transcribe(tmp_path / "model.pt", [str(tmp_path / "missing.wav")], None, device="cpu")


def test_audio_too_short_for_the_encoder_is_transcribed_as_alone(corpus, checkpoint, tmp_path):
    """80 samples make one feature frame; the checkpoint's encoder needs two."""
    folder, _ = corpus
    click = tmp_path / "click.wav"
    _write(click, _tone(0.005))
    files = [str(click), *_audio_files(folder)]
    together, alone = tmp_path / "together.jsonl", tmp_path / "alone.jsonl"
    assert transcribe(checkpoint, files, together, beam=2, batch_size=5, device="cpu") == 0
    assert transcribe(checkpoint, [str(click)], alone, beam=2, device="cpu") == 0
    records = [json.loads(line) for line in together.read_text().splitlines()]
    (click_alone,) = [json.loads(line) for line in alone.read_text().splitlines()]
    assert [record["audio"] for record in records] == files
    assert records[0]["text"] == click_alone["text"]
    assert records[0]["score"] == pytest.approx(click_alone["score"], abs=1e-5)


def test_command_line_registers_transcribe(corpus, checkpoint, tmp_path):
    folder, _ = corpus
    parser = argparse.ArgumentParser()
    add_transcribe_command(parser.add_subparsers(required=True))
    output = tmp_path / "hyps.jsonl"
    argv = ["transcribe", "--model", str(checkpoint), str(folder), "--output", str(output)]
    args = parser.parse_args([*argv, "--beam", "1", "--device", "cpu"])
    assert (args.beam, args.batch_size, args.max_chunk_seconds) == (1, 16, 30.0)
    assert args.min_pause_seconds == 0.3
    assert args.run(args) == 0
    assert len(output.read_text().splitlines()) == len(DURATIONS)


def test_search_overrides_on_the_command_line_change_the_checkpoints_search(
    corpus, checkpoint, tmp_path
):
    folder, _ = corpus
    parser = argparse.ArgumentParser()
    add_transcribe_command(parser.add_subparsers(required=True))
    scores = {}
    for speeds in ("[]", "[0.9, 1.1]"):
        output = tmp_path / f"{speeds}.jsonl"
        argv = [
            "transcribe",
            "--model",
            str(checkpoint),
            str(folder),
            f"data.test_views.speed_factors={speeds}",
        ]
        args = parser.parse_args([*argv, "--output", str(output), "--device", "cpu"])
        assert args.run(args) == 0
        records = [json.loads(line) for line in output.read_text().splitlines()]
        assert len(records) == len(DURATIONS)
        scores[speeds] = [r["score"] for r in records]
    assert scores["[]"] != scores["[0.9, 1.1]"]
    with pytest.raises(
        InputError, match=r"can only override search.\* and data.test_views.\* here"
    ):
        transcribe(checkpoint, [str(folder)], None, device="cpu", overrides=["data.x=1"])
    with pytest.raises(InputError, match="'search.speed_factors' is now 'data.test_views.speed"):
        transcribe(
            checkpoint, [str(folder)], None, device="cpu", overrides=["search.speed_factors=[]"]
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("speeds", ["[]", "[0.9, 1.1]"])
def test_cuda_transcripts_match_cpu(corpus, checkpoint, tmp_path, speeds):
    folder, _ = corpus
    on_cpu, on_cuda = tmp_path / "cpu.jsonl", tmp_path / "cuda.jsonl"
    overrides = [f"data.test_views.speed_factors={speeds}"]
    for output, device in ((on_cpu, "cpu"), (on_cuda, "cuda")):
        status = transcribe(
            checkpoint, [str(folder)], output, beam=2, device=device, overrides=overrides
        )
        assert status == 0
    expected = [json.loads(line) for line in on_cpu.read_text().splitlines()]
    results = [json.loads(line) for line in on_cuda.read_text().splitlines()]
    assert [r["text"] for r in results] == [r["text"] for r in expected]
    for result, reference in zip(results, expected, strict=True):
        assert result["score"] == pytest.approx(reference["score"], abs=1e-3)
