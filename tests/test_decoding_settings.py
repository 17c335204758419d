"""One source of truth per decoding setting: a checkpoint's config, then a command's dotted
overrides, then its explicit flags; a flag that is not given changes nothing."""

import json
import math

import pytest
import soundfile
import torch
from PIL import Image

import multimodal_s2s.inference.caption as caption_module
import multimodal_s2s.inference.transcribe as transcribe_module
import multimodal_s2s.training.evaluate as evaluate_module
from multimodal_s2s.checkpoint import save_checkpoint
from multimodal_s2s.cli import main
from multimodal_s2s.config import config_to_dict, load_config
from multimodal_s2s.models.model import build_model
from multimodal_s2s.search.decode import Decoded
from multimodal_s2s.text import Tokenizer

SAVED_BEAM = ["search.beam_size=3", "search.max_length=3"]
MODELS = {
    "evaluate": [
        "data.name=toy_sequences",
        "data.num_dev=4",
        "data.feature_dim=8",
        "encoder.input_dim=8",
        "encoder.hidden_dim=8",
        "encoder.num_layers=1",
    ],
    "transcribe": [
        "data.name=speech",
        "data.features.num_mel_bins=8",
        "encoder.input_dim=8",
        "encoder.hidden_dim=8",
    ],
    "caption": [
        "data.name=images",
        "data.image_size=16",
        "encoder.name=cnn",
        "encoder.channels=[4]",
    ],
}
SMALL = ["decoder.hidden_dim=8", "decoder.embedding_dim=4"]
COMMAND_MODULES = {
    "evaluate": evaluate_module,
    "transcribe": transcribe_module,
    "caption": caption_module,
}


def _checkpoint(folder, command: str):
    """A checkpoint of an untrained model for ``command``, saved with beam size 3."""
    config = load_config(None, SMALL + MODELS[command] + SAVED_BEAM)
    tokenizer = Tokenizer.build(["one two"], "char")
    path = folder / f"{command}.pt"
    model = build_model(config, len(tokenizer))
    payload = {
        "config": config_to_dict(config),
        "tokenizer": tokenizer.state_dict(),
        "model": model.state_dict(),
    }
    save_checkpoint(payload, path)
    return path


def _input(folder, command: str) -> list[str]:
    """The inputs a command reads besides the checkpoint."""
    if command == "transcribe":
        wave = 0.3 * torch.sin(2 * math.pi * 200 * torch.arange(4000) / 16000)
        soundfile.write(folder / "tone.wav", wave.numpy(), 16000)
        return [str(folder / "tone.wav")]
    if command == "caption":
        Image.new("RGB", (16, 16), (200, 0, 0)).save(folder / "red.png")
        return [str(folder / "red.png")]
    return []


@pytest.fixture
def beams(monkeypatch):
    """The beam size of every ``decode_batch`` call that a command makes."""
    seen = []

    def recording(model, tokenizer, sources, lengths, search, beam=True, views=({},)):
        seen.append(search.beam_size)
        return [Decoded("one", 0.0, None, {}) for _ in range(len(sources))]

    for module in COMMAND_MODULES.values():
        monkeypatch.setattr(module, "decode_batch", recording)
    return seen


@pytest.mark.parametrize("command", ["evaluate", "transcribe", "caption"])
@pytest.mark.parametrize(
    ("arguments", "expected"),
    [([], 3), (["--beam", "2"], 2), (["search.beam_size=2"], 2), (["search.nbest=1"], 3)],
)
def test_decoding_keeps_the_checkpoints_beam_unless_told_otherwise(
    tmp_path, beams, command, arguments, expected
):
    model = _checkpoint(tmp_path, command)
    argv = [command, "--model", str(model), *_input(tmp_path, command), *arguments]
    assert main([*argv, "--device", "cpu"]) == 0
    assert beams and set(beams) == {expected}


@pytest.mark.parametrize("command", ["transcribe", "caption"])
def test_python_api_keeps_the_checkpoints_beam_unless_told_otherwise(tmp_path, beams, command):
    model = _checkpoint(tmp_path, command)
    run = getattr(COMMAND_MODULES[command], command)
    inputs = _input(tmp_path, command)
    for options, expected in (
        ({}, 3),
        ({"beam": 2}, 2),
        ({"overrides": ["search.beam_size=2"]}, 2),
        ({"beam": 1, "overrides": ["search.beam_size=2"]}, 1),  # the flag comes last
    ):
        beams.clear()
        assert run(model, inputs, None, device="cpu", **options) == 0
        assert set(beams) == {expected}


def test_evaluate_nbest_adds_ranked_lists_to_the_report(tmp_path, capsys):
    model = _checkpoint(tmp_path, "evaluate")
    argv = ["evaluate", "--model", str(model), "--device", "cpu", "--report"]
    assert main([*argv, str(tmp_path / "nbest"), "--nbest", "3"]) == 0
    assert main([*argv, str(tmp_path / "plain")]) == 0
    (split,) = [path.name for path in (tmp_path / "nbest").glob("*.jsonl")]
    with_lists = [
        json.loads(line) for line in (tmp_path / "nbest" / split).read_text().splitlines()
    ]
    plain = [json.loads(line) for line in (tmp_path / "plain" / split).read_text().splitlines()]
    assert len(with_lists) == len(plain) == 4
    assert all("nbest" not in record for record in plain)
    for record in with_lists:
        assert len(record["nbest"]) == 3
        assert record["nbest"][0] == {"text": record["hyp"], "score": record["score"]}
        scores = [entry["score"] for entry in record["nbest"]]
        assert scores == sorted(scores, reverse=True)
    capsys.readouterr()
    assert main([*argv, str(tmp_path / "too_many"), "--nbest", "4"]) == 2
    assert "nbest 4 is more than the beam keeps (search.beam_size=3)" in capsys.readouterr().err
