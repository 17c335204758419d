import argparse
import json
import math

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from multimodal_s2s import Captioner, Transcriber
from multimodal_s2s.checkpoint import load_model
from multimodal_s2s.cli import main
from multimodal_s2s.config import ConfigError, config_from_dict
from multimodal_s2s.data.pauses import split_at_pauses
from multimodal_s2s.errors import InputError
from multimodal_s2s.inference.attention_maps import (
    BIN_PIXELS,
    FRAME_PIXELS,
    LABEL_WIDTH,
    PADDING,
    ROW_HEIGHT,
)
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


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_python_api_gives_the_command_lines_texts_and_scores(corpus, checkpoint, tmp_path):
    folder, _ = corpus
    output = tmp_path / "cli.jsonl"
    argv = ["transcribe", "--model", str(checkpoint), str(folder), "--output", str(output)]
    assert main([*argv, "--beam", "2", "--nbest", "2", "--device", "cpu"]) == 0
    records = _records(output)
    asr = Transcriber.from_checkpoint(checkpoint, device="cpu", beam_size=2)
    results = asr.transcribe([record["audio"] for record in records], nbest=2)
    assert [str(result.path) for result in results] == [record["audio"] for record in records]
    assert [(r.text, r.score) for r in results] == [(r["text"], r["score"]) for r in records]
    assert [[list(pair) for pair in r.nbest] for r in results] == [
        [[entry["text"], entry["score"]] for entry in r["nbest"]] for r in records
    ]
    assert all(result.attention is None for result in results)


def test_waveforms_in_memory_are_transcribed_as_their_files(corpus, checkpoint):
    folder, _ = corpus
    path = folder / "utt1.wav"
    wave, rate = soundfile.read(path, dtype="float32")
    asr = Transcriber.from_checkpoint(checkpoint, device="cpu")
    from_file, from_array, from_tensor = asr.transcribe(
        [path, (wave, rate), (torch.from_numpy(wave), rate)]
    )
    assert (from_file.path, from_array.path, from_tensor.path) == (path, None, None)
    assert from_array.text == from_file.text == from_tensor.text
    assert from_array.score == pytest.approx(from_file.score, abs=1e-6)
    (resampled,) = asr.transcribe([(wave[::2].copy(), rate // 2)])  # resampled to 16 kHz
    assert isinstance(resampled.text, str)
    for bad, problem in (
        ((wave, 16000.5), "integer sample rate"),
        ((np.zeros((2, 3), dtype=np.float32), rate), "must be 1-D"),
        ((np.zeros(0, dtype=np.float32), rate), "zero length"),
        ((np.ones(9, dtype=np.int16), rate), "floats in"),
        (wave, "a path or a"),
        (str(folder / "absent.wav"), "absent.wav: audio file not found"),
    ):
        with pytest.raises(InputError, match=problem):
            asr.transcribe([bad])
    with pytest.raises(InputError, match="give a list of inputs"):
        asr.transcribe(str(path))


def test_keyword_settings_change_the_checkpoints_settings_and_nothing_else(checkpoint):
    _, _, saved = load_model(checkpoint)
    assert Transcriber.from_checkpoint(checkpoint, device="cpu").config.search == saved.search
    changed = Transcriber.from_checkpoint(
        checkpoint, device="cpu", beam_size=3, length_norm="gnmt", speed_factors=(0.9, 1.1)
    ).config
    assert (changed.search.beam_size, changed.search.length_norm) == (3, "gnmt")
    assert changed.search.max_length == saved.search.max_length
    assert changed.data.test_views.speed_factors == [0.9, 1.1]
    with pytest.raises(ConfigError, match="unknown decoding setting 'beam'") as error:
        Transcriber.from_checkpoint(checkpoint, device="cpu", beam=3)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="search.beam_size: expected int"):
        Transcriber.from_checkpoint(checkpoint, device="cpu", beam_size="wide")


def test_an_image_model_is_refused_by_the_transcriber_and_the_reverse(checkpoint, tmp_path):
    with pytest.raises(InputError, match=r"best.pt: not an image captioning model \(data.name="):
        Captioner.from_checkpoint(checkpoint, device="cpu")
    with pytest.raises(InputError, match="model.pt: checkpoint not found"):
        Transcriber.from_checkpoint(tmp_path / "model.pt", device="cpu")


@pytest.mark.parametrize("chunked", [False, True], ids=["whole", "cut-at-a-pause"])
def test_nbest_lists_are_ranked_and_start_with_the_best(checkpoint, tmp_path, chunked):
    wave = _tone(0.6, 250)
    if chunked:
        wave = torch.cat([wave, torch.zeros(RATE // 2), _tone(0.5, 300)])
    path = tmp_path / "input.wav"
    _write(path, wave)
    asr = Transcriber.from_checkpoint(checkpoint, device="cpu", beam_size=4)
    (result,) = asr.transcribe([path], nbest=3)
    assert len(result.nbest) == 3
    assert result.nbest[0] == (result.text, result.score)
    scores = [score for _, score in result.nbest]
    assert scores == sorted(scores, reverse=True)
    (one,) = asr.transcribe([path])
    assert one.nbest == [(one.text, one.score)]
    with pytest.raises(ConfigError, match="nbest 5 is more than the beam keeps .*beam_size=4"):
        asr.transcribe([path], nbest=5)


def test_nbest_on_the_command_line(corpus, checkpoint, tmp_path, capsys):
    folder, _ = corpus
    output = tmp_path / "out.jsonl"
    argv = ["transcribe", "--model", str(checkpoint), str(folder), "--device", "cpu"]
    assert main([*argv, "--output", str(output), "--beam", "3", "--nbest", "3"]) == 0
    for record in _records(output):
        assert len(record["nbest"]) == 3
        assert record["nbest"][0] == {"text": record["text"], "score": record["score"]}
        scores = [entry["score"] for entry in record["nbest"]]
        assert scores == sorted(scores, reverse=True)
    assert main([*argv, "--output", str(output), "--beam", "2", "--nbest", "3"]) == 2
    assert (
        "error: nbest 3 is more than the beam keeps (search.beam_size=2)" in capsys.readouterr().err
    )


def _figure_size(samples: int, tokens: int) -> tuple[int, int]:
    """The alignment figure of a recording of ``samples`` at 16 kHz (80 mel bins, 10 ms hop)
    and ``tokens`` attention rows (``attention_maps`` module docstring)."""
    frames = 1 + samples // 160
    width = PADDING + LABEL_WIDTH + frames * FRAME_PIXELS + PADDING
    return width, 3 * PADDING + 80 * BIN_PIXELS + tokens * ROW_HEIGHT


def test_attention_maps_one_figure_per_recording_sized_by_its_length(corpus, checkpoint, tmp_path):
    folder, _ = corpus
    maps, again = tmp_path / "maps", tmp_path / "again"
    argv = ["transcribe", "--model", str(checkpoint), str(folder), "--beam", "2", "--device", "cpu"]
    assert main([*argv, "--attention-maps", str(maps)]) == 0
    assert main([*argv, "--attention-maps", str(again)]) == 0
    written = sorted(path.relative_to(maps).as_posix() for path in maps.rglob("*.png"))
    assert written == ["sub/utt3.wav.png", "utt0.wav.png", "utt1.wav.png", "utt2.wav.png"]
    files = [folder / name.removesuffix(".png") for name in written]
    results = Transcriber.from_checkpoint(checkpoint, device="cpu", beam_size=2).transcribe(
        files, attention=True
    )
    widths = {}
    for name, path, result in zip(written, files, results, strict=True):
        samples = soundfile.info(path).frames
        with Image.open(maps / name) as figure:
            figure.load()
            assert figure.size == _figure_size(samples, len(result.attention_tokens))
            widths[samples] = figure.size[0]
        assert (maps / name).read_bytes() == (again / name).read_bytes()  # deterministic
    assert [widths[n] for n in sorted(widths)] == sorted(widths.values())
    assert len(set(widths.values())) == len(DURATIONS)  # longer recordings, wider figures


def test_attention_weights_on_request_line_up_with_the_recording(checkpoint, tmp_path):
    wave = torch.cat([_tone(0.6, 250), torch.zeros(RATE // 2), _tone(0.5, 300)])
    path = tmp_path / "two_phrases.wav"
    _write(path, wave)
    asr = Transcriber.from_checkpoint(checkpoint, device="cpu", beam_size=2)
    (result,) = asr.transcribe([path], attention=True)
    tokens, frames = result.attention.shape
    assert tokens == len(result.attention_tokens) and frames == len(result.attention_times)
    assert result.attention_tokens.count("</s>") <= 2
    assert np.allclose(result.attention.sum(axis=1), 1.0, atol=1e-4)
    times = result.attention_times
    assert times[0] == 0.0 and (np.diff(times) > 0).all() and times[-1] < wave.shape[0] / RATE
    figure = tmp_path / "figure.png"
    asr.save_attention_map(result, path, figure)
    with Image.open(figure) as picture:
        assert picture.size == _figure_size(wave.shape[0], tokens)
    with pytest.raises(InputError, match="attention=True"):
        asr.save_attention_map(asr.transcribe([path])[0], path, figure)
