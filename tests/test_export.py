"""``ms2s export``: the encoder and one decoder step as ONNX graphs (run with onnxruntime) and
TorchScript modules, decoded greedily by a loop written here from ``export.json`` alone, give
the eager model's greedy tokens."""

import json
import math

import pytest
import torch

from multimodal_s2s.checkpoint import load_model, save_checkpoint
from multimodal_s2s.cli import main
from multimodal_s2s.config import config_to_dict, load_config
from multimodal_s2s.errors import InputError
from multimodal_s2s.inference.export import export_model
from multimodal_s2s.models.model import build_model
from multimodal_s2s.search.beam import greedy_search
from multimodal_s2s.text import Tokenizer

# TorchScript is deprecated in this PyTorch; the exported modules still load and run
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*torch.jit.load.* is deprecated:DeprecationWarning"
)

DECODER = ["decoder.hidden_dim=16", "decoder.embedding_dim=8", "search.max_length=12"]
MODELS = {
    "speech": [
        "data.name=speech",
        "data.features.num_mel_bins=8",
        "data.features.stack_frames=2",
        "data.features.level_range_db=[-30, -20]",
        "encoder.input_dim=16",
        "encoder.hidden_dim=8",
        "encoder.num_layers=2",
    ],
    "conv_speech": [
        "data.name=speech",
        "data.features.num_mel_bins=8",
        "encoder.name=conv_pblstm",
        "encoder.input_dim=8",
        "encoder.hidden_dim=8",
        "encoder.num_layers=1",
        "encoder.conv_channels=[3, 3]",
        "decoder.num_layers=2",
        "decoder.attention={name: additive, gate: true}",
        "search.no_repeat_ngram_size=2",
    ],
    "images": [
        "data.name=images",
        "data.image_size=16",
        "encoder.name=cnn",
        "encoder.channels=[4, 8]",
        "decoder.init_attention=first",
    ],
}


def _save_model(overrides: list[str], path, scale: float = 1.0):
    """Save a random tiny model with ``overrides`` to ``path``, its weight matrices times
    ``scale``."""
    torch.manual_seed(0)
    tokenizer = Tokenizer.build(["a red square", "ab ba"], "char")
    config = load_config(None, overrides + DECODER)
    model = build_model(config, len(tokenizer))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.mul_(scale)
    payload = {"config": config_to_dict(config), "tokenizer": tokenizer.state_dict()}
    save_checkpoint({**payload, "model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module", params=sorted(MODELS))
def checkpoint(request, tmp_path_factory):
    """A random tiny model's checkpoint, and its kind. Its weight matrices are scaled up, so
    that its greedy outputs differ between sources and some end at EOS before their cap."""
    path = tmp_path_factory.mktemp("export") / "model.pt"
    return _save_model(MODELS[request.param], path, scale=4.0), request.param


def _sources(kind: str) -> dict[str, torch.Tensor]:
    """A batch of three sources by the encoder's input names: waveforms of different
    lengths, or images."""
    generator = torch.Generator().manual_seed(1)
    if kind == "images":
        shape = (3, 3, 16, 16)
        return {"images": torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)}
    lengths = torch.tensor([2400, 5200, 1300])
    waves = 0.1 * torch.randn(3, 5200, generator=generator)
    waves = waves.masked_fill(torch.arange(5200) >= lengths.unsqueeze(1), 0.0)
    return {"waveforms": waves, "lengths": lengths}


def _runner(folder, description, part: str):
    """A function from the named inputs of one exported part (a dict of tensors, which may
    hold more) to its named outputs, run with onnxruntime or as TorchScript."""
    inputs = [entry["name"] for entry in description[part]["inputs"]]
    outputs = [entry["name"] for entry in description[part]["outputs"]]
    path = str(folder / description["files"][part])
    if description["format"] == "torchscript":
        module = torch.jit.load(path)
        return lambda named: dict(zip(outputs, module(*(named[name] for name in inputs))))
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(path)

    def run(named):
        arrays = session.run(outputs, {name: named[name].numpy() for name in inputs})
        return {name: torch.from_numpy(array) for name, array in zip(outputs, arrays)}

    return run


def _repeats(history: list[int], size: int) -> set[int]:
    """The tokens that would complete an n-gram (``n = size``; 0: none) already in
    ``history``."""
    if size == 0 or len(history) < size:
        return set()
    tail = history[len(history) - size + 1 :]
    starts = range(len(history) - size + 1)
    return {history[i + size - 1] for i in starts if history[i : i + size - 1] == tail}


def greedy_tokens(folder, sources: dict[str, torch.Tensor]) -> list[list[int]]:
    """Greedy decoding with the exported parts alone, as ``export.json`` describes it."""
    description = json.loads((folder / "export.json").read_text())
    encoder = _runner(folder, description, "encoder")
    step = _runner(folder, description, "decoder_step")
    greedy = description["greedy"]
    named = encoder(sources)
    caps = [
        min(greedy["max_length"], max(1, math.ceil(greedy["max_length_ratio"] * int(n))))
        for n in named["memory_lengths"]
    ]
    named["tokens"] = torch.full((len(caps),), greedy["first_token"], dtype=torch.long)
    outputs: list[list[int]] = [[] for _ in caps]
    done = [False] * len(caps)
    while not all(done):
        new = step(named)
        named.update({name.removeprefix("next_"): value for name, value in new.items()})
        log_probs = new["log_probs"]
        log_probs[:, greedy["never_emit"]] = float("-inf")
        for row, history in enumerate(outputs):
            banned = _repeats(history, greedy["no_repeat_ngram_size"])
            log_probs[row, sorted(banned)] = float("-inf")
        best = log_probs.argmax(-1)
        for row, token in enumerate(best.tolist()):
            if not done[row]:
                outputs[row].append(token)
                done[row] = token == greedy["end_token"] or len(outputs[row]) >= caps[row]
        named["tokens"] = torch.where(torch.tensor(done), greedy["after_end_token"], best)
    return [row[:-1] if row[-1] == greedy["end_token"] else row for row in outputs]


@pytest.mark.parametrize("export_format", ["onnx", "torchscript"])
def test_exported_parts_decode_the_eager_models_greedy_tokens(
    checkpoint, export_format, tmp_path, capsys
):
    if export_format == "onnx":
        pytest.importorskip("onnxruntime")
    path, kind = checkpoint
    folder = tmp_path / "exported"
    arguments = ["export", "--model", str(path), "--format", export_format, "--out", str(folder)]
    assert main(arguments) == 0
    suffix = ".onnx" if export_format == "onnx" else ".pt"
    names = [f"encoder{suffix}", f"decoder_step{suffix}", "export.json"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)
    assert capsys.readouterr().out.split() == [str(folder / name) for name in names]

    sources = _sources(kind)
    model, tokenizer, config = load_model(path)
    with torch.no_grad():
        eager = greedy_search(model, model.encode(*sources.values()), config.search)
    expected = [hypothesis.tokens for hypothesis in eager]
    assert greedy_tokens(folder, sources) == expected
    assert len({tuple(tokens) for tokens in expected}) > 1  # a check that can fail

    description = json.loads((folder / "export.json").read_text())
    assert description["vocabulary"] == tokenizer.tokens
    assert description["text"] == "join the tokens"  # a char tokenizer
    texts = ["".join(description["vocabulary"][i] for i in tokens) for tokens in expected]
    assert texts == [tokenizer.decode(tokens) for tokens in expected]
    assert description["special_ids"] == {"pad": 0, "bos": 1, "eos": 2, "unk": 3}
    step_outputs = {e["name"]: e["shape"] for e in description["decoder_step"]["outputs"]}
    assert step_outputs["log_probs"] == ["batch", len(tokenizer)]
    assert step_outputs["next_hidden"] == [config.decoder.num_layers, "batch", 16]


def test_a_missing_or_invalid_checkpoint_is_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(["export", "--model", str(tmp_path / "no.pt"), "--format", "onnx", "--out", str(out)])
        == 2
    )
    assert capsys.readouterr().err == f"error: {tmp_path / 'no.pt'}: checkpoint not found\n"
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    assert (
        main(["export", "--model", str(broken), "--format", "torchscript", "--out", str(out)]) == 2
    )
    error = capsys.readouterr().err
    assert error.startswith(f"error: {broken}: ") and error.count("\n") == 1
    assert not out.exists()


def test_an_unknown_format_is_an_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--model", "m.pt", "--format", "tflite", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    with pytest.raises(InputError, match="export format must be one of onnx, torchscript"):
        export_model(tmp_path / "m.pt", tmp_path / "out", "tflite")


@pytest.mark.parametrize("export_format", ["onnx", "torchscript"])
def test_an_image_encoder_with_self_attention_layers_gives_the_eager_memory(
    export_format, tmp_path
):
    """Its layers export without PyTorch's fused fast path, which ONNX has no form for."""
    if export_format == "onnx":
        pytest.importorskip("onnxruntime")
    overrides = MODELS["images"] + ["encoder.self_attention_layers=1"]
    path = _save_model(overrides, tmp_path / "model.pt")
    export_model(path, tmp_path / "out", export_format)
    description = json.loads((tmp_path / "out" / "export.json").read_text())
    sources = _sources("images")
    exported = _runner(tmp_path / "out", description, "encoder")(sources)
    model = load_model(path)[0]
    with torch.no_grad():
        memory, state = model.decoder.start(model.encode(sources["images"]))
    torch.testing.assert_close(exported["memory"], memory.memory, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(exported["hidden"], state.hidden, rtol=1e-4, atol=1e-5)


def test_an_operation_without_an_onnx_form_is_one_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnx")

    def refuse(*args, **kwargs):
        raise torch.onnx.OnnxExporterError("Exporting the operator 'aten::x' is not supported\nat")

    path = _save_model(MODELS["speech"], tmp_path / "model.pt")
    monkeypatch.setattr(torch.onnx, "export", refuse)
    arguments = ["export", "--model", str(path), "--out", str(tmp_path / "out")]
    assert main(arguments + ["--format", "onnx"]) == 2
    assert capsys.readouterr().err == (
        "error: encoder has no ONNX form (Exporting the operator 'aten::x' is not supported); "
        "--format torchscript exports it\n"
    )
