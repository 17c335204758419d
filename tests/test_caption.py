"""End to end: train a tiny captioner on generated PNGs, then ``ms2s caption`` with it."""

import argparse
import json

import numpy as np
import pytest
import torch
from PIL import Image

import multimodal_s2s.inference.caption as caption_module
from multimodal_s2s import Captioner, Transcriber
from multimodal_s2s.checkpoint import save_checkpoint
from multimodal_s2s.cli import main
from multimodal_s2s.config import config_to_dict, load_config
from multimodal_s2s.errors import InputError
from multimodal_s2s.inference.attention_maps import LABEL_HEIGHT, PADDING, PANEL_COLUMNS
from multimodal_s2s.inference.caption import MIN_DISPLAY_SIZE, add_caption_command, caption
from multimodal_s2s.models.model import build_model
from multimodal_s2s.text import Tokenizer
from multimodal_s2s.training.train import train

COLOURS = {"red": (220, 0, 0), "green": (0, 180, 0), "blue": (0, 0, 220)}


def _expected(index: int) -> str:
    """The caption of training image ``index``."""
    return f"a {list(COLOURS)[index % 3]} square"


def _square(colour: str, index: int) -> Image.Image:
    """A 32x32 white picture with a 14x14 square of ``colour`` at a position set by index."""
    image = Image.new("RGB", (32, 32), (255, 255, 255))
    left, top = (index * 7) % 18, (index * 5) % 18
    image.paste(COLOURS[colour], (left, top, left + 14, top + 14))
    return image


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint trained on 36 images (it learns their captions), and the image folder."""
    root = tmp_path_factory.mktemp("captioning")
    images = root / "images"
    images.mkdir()
    lines = []
    for index in range(36):
        _square(list(COLOURS)[index % 3], index).save(images / f"{index:02d}.png")
        record = {"image": f"images/{index:02d}.png", "caption": _expected(index).upper()}
        lines.append(json.dumps(record))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    (root / "dev.jsonl").write_text("\n".join(lines[:6]) + "\n")
    config = load_config(
        None,
        [
            "data.name=images",
            f"data.train={root / 'train.jsonl'}",
            f"data.dev={root / 'dev.jsonl'}",
            "data.image_size=32",
            "data.num_workers=0",
            "encoder.name=cnn",
            "encoder.channels=[8, 16]",
            "decoder.hidden_dim=32",
            "decoder.embedding_dim=16",
            "tokenizer.kind=word",
            "train.epochs=8",
            "train.batch_size=6",
            "train.learning_rate=0.01",
            "train.warmup_steps=1",
            "train.device=cpu",
            "search.max_length=6",
        ],
    )
    result = train(config, root / "run", progress=False)
    return result.best_checkpoint, images


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_caption_skips_a_corrupt_file_and_writes_json_lines(trained, tmp_path, capsys):
    checkpoint, images = trained
    folder = tmp_path / "inputs"
    (folder / "nested").mkdir(parents=True)
    for index in range(4):
        (folder / "nested" / f"{index}.png").write_bytes((images / f"{index:02d}.png").read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    output = tmp_path / "captions.jsonl"
    status = caption(checkpoint, [str(folder)], output, beam=3, batch_size=3, device="cpu")
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert status == 1
    assert len(errors) == 1 and "broken.png" in errors[0]
    assert captured.out == ""
    records = _records(output)
    assert [r["image"] for r in records] == [str(folder / "nested" / f"{i}.png") for i in range(4)]
    assert all(set(r) == {"image", "caption", "score"} for r in records)
    assert all(isinstance(r["caption"], str) and r["caption"] for r in records)
    assert all(isinstance(r["score"], float) and r["score"] <= 0 for r in records)
    assert [r["caption"] for r in records] == [_expected(i) for i in range(4)]


def test_caption_prints_path_tab_caption_and_accepts_globs(trained, capsys):
    checkpoint, images = trained
    status = caption(checkpoint, [str(images / "0[0-4].png")], None, beam=1, device="cpu")
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert [line.split("\t")[0] for line in lines] == [str(images / f"0{i}.png") for i in range(5)]
    assert [line.split("\t")[1] for line in lines] == [_expected(i) for i in range(5)]


def test_batch_size_does_not_change_captions(trained, tmp_path):
    checkpoint, images = trained
    files = [str(images / f"{index:02d}.png") for index in range(5)]
    one, many = tmp_path / "one.jsonl", tmp_path / "many.jsonl"
    caption(checkpoint, files, one, beam=3, batch_size=1, device="cpu")
    caption(checkpoint, files, many, beam=3, batch_size=5, device="cpu")
    by_one, by_many = _records(one), _records(many)
    assert [r["caption"] for r in by_one] == [r["caption"] for r in by_many]
    assert [r["score"] for r in by_one] == pytest.approx([r["score"] for r in by_many], abs=1e-5)


def test_attention_maps_one_png_per_captioned_image(trained, tmp_path):
    checkpoint, images = trained
    for folder in ("left", "right"):
        (tmp_path / folder).mkdir()
        for index in range(2):
            source = images / f"{index + (3 if folder == 'right' else 0):02d}.png"
            (tmp_path / folder / f"{index}.png").write_bytes(source.read_bytes())
    (tmp_path / "left" / "bad.jpg").write_bytes(b"not a jpeg")
    maps, output = tmp_path / "maps", tmp_path / "out.jsonl"
    paths = [str(tmp_path / "left"), str(tmp_path / "right")]
    status = caption(checkpoint, paths, output, beam=2, attention_maps=maps, device="cpu")
    assert status == 1
    written = sorted(path.relative_to(maps).as_posix() for path in maps.rglob("*.png"))
    assert written == ["left/0.png.png", "left/1.png.png", "right/0.png.png", "right/1.png.png"]
    for record in _records(output):
        relative = record["image"][len(str(tmp_path)) + 1 :]
        with Image.open(maps / f"{relative}.png") as figure:
            figure.load()
            panels = 1 + len(record["caption"].split()) + 1  # image, words, end of caption
            columns = min(panels, PANEL_COLUMNS)
            rows = -(-panels // columns)
            assert figure.size == (
                columns * (MIN_DISPLAY_SIZE + PADDING) + PADDING,
                rows * (LABEL_HEIGHT + MIN_DISPLAY_SIZE + PADDING) + PADDING,
            )


def test_an_attention_map_that_cannot_be_written_is_reported_and_the_rest_written(
    trained, tmp_path, capsys
):
    checkpoint, images = trained
    maps, output = tmp_path / "maps", tmp_path / "out.jsonl"
    (maps / "01.png.png").mkdir(parents=True)  # a folder where one map would go
    files = [str(images / f"{index:02d}.png") for index in range(3)]
    status = caption(checkpoint, files, output, beam=2, attention_maps=maps, device="cpu")
    assert status == 1
    assert "is a folder, not a file" in capsys.readouterr().err
    assert [record["image"] for record in _records(output)] == files
    assert sorted(path.name for path in maps.glob("*.png.png") if path.is_file()) == [
        "00.png.png",
        "02.png.png",
    ]


def test_command_line_arguments_reach_caption(trained, tmp_path, capsys):
    checkpoint, images = trained
    parser = argparse.ArgumentParser()
    add_caption_command(parser.add_subparsers())
    output = tmp_path / "out.jsonl"
    args = parser.parse_args(
        ["caption", "--model", str(checkpoint), str(images / "00.png"), str(tmp_path / "no.png")]
        + ["--output", str(output), "--beam", "2", "--batch-size", "4", "--device", "cpu"]
    )
    assert args.run(args) == 1
    assert f"error: {tmp_path / 'no.png'}: image path not found" in capsys.readouterr().err
    assert [r["image"] for r in _records(output)] == [str(images / "00.png")]


def test_no_image_found_is_reported_and_writes_no_output(trained, tmp_path, capsys):
    checkpoint, _ = trained
    missing, output = tmp_path / "missing.png", tmp_path / "captions.jsonl"
    assert caption(checkpoint, [str(missing)], output, device="cpu") == 1
    assert f"error: {missing}: image path not found" in capsys.readouterr().err
    assert not output.exists()


@pytest.mark.parametrize("option", ["--output", "--attention-maps"])
def test_an_unwritable_output_is_refused_before_any_image_is_captioned(
    trained, tmp_path, capsys, option
):
    checkpoint, images = trained
    in_the_way = tmp_path / "in_the_way"
    if option == "--output":
        in_the_way.mkdir()
    else:
        in_the_way.write_text("a file")
    with pytest.raises(InputError, match=f"{in_the_way}: is a "):
        caption(
            checkpoint,
            [str(images)],
            in_the_way if option == "--output" else None,
            attention_maps=in_the_way if option == "--attention-maps" else None,
            device="cpu",
        )
    assert capsys.readouterr().out == ""


def test_an_interrupted_run_keeps_the_finished_captions_in_a_partial_file(
    trained, tmp_path, monkeypatch
):
    checkpoint, images = trained
    decode = caption_module.decode_images
    calls = []

    def interrupted_after_the_first_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return decode(*args, **kwargs)

    monkeypatch.setattr(caption_module, "decode_images", interrupted_after_the_first_batch)
    output = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        caption(checkpoint, [str(images)], output, batch_size=4, device="cpu")
    assert not output.exists()
    finished = _records(tmp_path / "out.jsonl.partial")
    assert [r["image"] for r in finished] == [str(p) for p in sorted(images.glob("*.png"))[:4]]


def test_search_overrides_on_the_command_line_change_the_checkpoints_search(
    trained, tmp_path, capsys
):
    checkpoint, images = trained
    parser = argparse.ArgumentParser()
    add_caption_command(parser.add_subparsers())
    paths = [str(images / f"{index:02d}.png") for index in range(4)]
    outputs = {}
    for crops in ("[]", "[0.8]"):
        output = tmp_path / f"{crops}.jsonl"
        args = parser.parse_args(
            ["caption", "--model", str(checkpoint), *paths, f"data.test_views.corner_crops={crops}"]
            + ["--output", str(output), "--device", "cpu"]
        )
        assert args.run(args) == 0
        outputs[crops] = _records(output)
        assert [r["image"] for r in outputs[crops]] == paths
    direct = tmp_path / "direct.jsonl"
    caption(
        checkpoint, paths, direct, device="cpu", overrides=["data.test_views.corner_crops=[0.8]"]
    )
    assert _records(direct) == outputs["[0.8]"]
    assert [r["score"] for r in outputs["[0.8]"]] != [r["score"] for r in outputs["[]"]]
    with pytest.raises(InputError, match=r"data.test_views.corner_crops must be in \(0, 1\)"):
        caption(
            checkpoint, paths, None, device="cpu", overrides=["data.test_views.corner_crops=[2]"]
        )
    with pytest.raises(
        InputError, match="'search.corner_crops' is now 'data.test_views.corner_crops'"
    ):
        caption(checkpoint, paths, None, device="cpu", overrides=["search.corner_crops=[0.8]"])
    with pytest.raises(
        InputError, match=r"can only override search.\* and data.test_views.\* here, not 'data.x=1'"
    ):
        caption(checkpoint, paths, None, device="cpu", overrides=["data.x=1"])


def test_bad_arguments_and_non_image_models_are_errors(trained, tmp_path):
    checkpoint, images = trained
    config = load_config(None, ["data.name=toy_images", "encoder.name=cnn"])
    tokenizer = Tokenizer.build(["a b"], "word")
    toy = tmp_path / "toy.pt"
    save_checkpoint(
        {
            "config": config_to_dict(config),
            "tokenizer": tokenizer.state_dict(),
            "model": build_model(config, len(tokenizer)).state_dict(),
        },
        toy,
    )
    with pytest.raises(InputError, match=r"toy.pt: not an image captioning model"):
        caption(toy, [str(images)], None, device="cpu")
    with pytest.raises(InputError, match="--beam"):
        caption(checkpoint, [str(images)], None, beam=0, device="cpu")
    with pytest.raises(InputError, match="checkpoint not found"):
        caption(tmp_path / "absent.pt", [str(images)], None, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_captions(trained, tmp_path):
    checkpoint, images = trained
    files = [str(images / f"{index:02d}.png") for index in range(6)]
    on_cpu, on_cuda = tmp_path / "cpu.jsonl", tmp_path / "cuda.jsonl"
    caption(checkpoint, files, on_cpu, beam=3, device="cpu")
    maps = tmp_path / "maps"
    assert caption(checkpoint, files, on_cuda, beam=3, attention_maps=maps, device="cuda") == 0
    assert [r["caption"] for r in _records(on_cuda)] == [_expected(i) for i in range(6)]
    cpu_scores = [r["score"] for r in _records(on_cpu)]
    assert [r["score"] for r in _records(on_cuda)] == pytest.approx(cpu_scores, abs=1e-4)
    assert len(list(maps.glob("*.png"))) == 6


def test_python_api_gives_the_command_lines_captions_and_scores(trained, tmp_path):
    checkpoint, images = trained
    output = tmp_path / "cli.jsonl"
    argv = ["caption", "--model", str(checkpoint), str(images), "--output", str(output)]
    assert main([*argv, "--beam", "3", "--nbest", "3", "--device", "cpu"]) == 0
    records = _records(output)
    captioner = Captioner.from_checkpoint(checkpoint, device="cpu", beam_size=3)
    results = captioner.caption([record["image"] for record in records], nbest=3)
    assert [(r.text, r.score) for r in results] == [(r["caption"], r["score"]) for r in records]
    assert [str(result.path) for result in results] == [record["image"] for record in records]
    for result, record in zip(results, records, strict=True):
        assert [list(pair) for pair in result.nbest] == [
            [entry["text"], entry["score"]] for entry in record["nbest"]
        ]
        assert len(result.nbest) == 3 and result.nbest[0] == (result.text, result.score)
        scores = [score for _, score in result.nbest]
        assert scores == sorted(scores, reverse=True)


def test_pictures_in_memory_are_captioned_as_their_files(trained, tmp_path):
    checkpoint, images = trained
    path = images / "04.png"
    captioner = Captioner.from_checkpoint(checkpoint, device="cpu", corner_crops=[])
    with Image.open(path) as picture:
        rgba = picture.convert("RGBA")
        array = np.asarray(picture.convert("RGB"))
    results = captioner.caption([path, rgba, array], attention=True)
    assert [result.text for result in results] == [_expected(4)] * 3
    assert [result.path for result in results] == [path, None, None]
    assert results[1].score == pytest.approx(results[0].score, abs=1e-6)
    tokens, cells = results[0].attention.shape
    assert tokens == len(results[0].attention_tokens) == len(_expected(4).split()) + 1
    figure = tmp_path / "figure.png"
    captioner.save_attention_map(results[2], array, figure)
    with Image.open(figure) as drawn:
        assert drawn.size[0] > MIN_DISPLAY_SIZE
    with pytest.raises(InputError, match=r"input 0: expected an image path, .* float64"):
        captioner.caption([np.zeros((4, 4, 3))])
    with pytest.raises(InputError, match=r"not a speech model \(data.name=images\)"):
        Transcriber.from_checkpoint(checkpoint, device="cpu")
    with pytest.raises(InputError, match="unknown decoding setting 'speed_factors'"):
        Captioner.from_checkpoint(checkpoint, device="cpu", speed_factors=[])
