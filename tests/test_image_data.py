"""Tests for the ``images`` data source: manifests, batches, order, resuming, encoder swap."""

import json
import re

import pytest
import torch
from PIL import Image
from tqdm import tqdm

from multimodal_s2s.cli import main
from multimodal_s2s.config import load_config
from multimodal_s2s.data import images
from multimodal_s2s.data.base import Dropped
from multimodal_s2s.data.batching import Shard
from multimodal_s2s.data.images import ImageData, ImageDataConfig, normalise_caption
from multimodal_s2s.errors import InputError
from multimodal_s2s.frontends import build_frontend
from multimodal_s2s.models.loss import token_loss
from multimodal_s2s.models.model import build_model
from multimodal_s2s.text import Tokenizer, teacher_forcing_pair

SIZE = 16
COLOURS = {"red": (220, 0, 0), "blue": (0, 0, 220)}


def write_images(folder, count: int, caption_format: str = "a {} square") -> list[dict]:
    """``count`` 24x24 PNGs of a coloured square on white; one manifest record each."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(count):
        colour = list(COLOURS)[index % len(COLOURS)]
        image = Image.new("RGB", (24, 24), (255, 255, 255))
        left, top = (index * 5) % 12, (index * 3) % 12
        image.paste(COLOURS[colour], (left, top, left + 12, top + 12))
        name = f"{index:03d}.png"
        image.save(folder / name)
        records.append({"image": name, "caption": caption_format.format(colour)})
    return records


def write_manifest(path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


@pytest.fixture
def data(tmp_path) -> ImageData:
    manifest = write_manifest(tmp_path / "train.jsonl", write_images(tmp_path, 10))
    config = ImageDataConfig(
        train=manifest, dev=manifest, image_size=SIZE, augment=False, num_workers=0
    )
    return ImageData(config)


def keys_of(batches) -> list[list[str]]:
    return [batch.keys for batch in batches]


def test_batches_have_image_tensors_paths_and_normalised_captions(tmp_path):
    records = write_images(tmp_path, 5, caption_format="  A {}\tSquare ")
    manifest = write_manifest(tmp_path / "dev.jsonl", records)
    data = ImageData(ImageDataConfig(dev=manifest, image_size=SIZE, num_workers=0))
    batches = data.batches("dev", train=False, batch_size=2)
    assert len(batches) == 3
    listed = list(batches)
    assert [tuple(b.sources.shape) for b in listed] == [(2, 3, SIZE, SIZE)] * 2 + [
        (1, 3, SIZE, SIZE)
    ]
    assert all(b.sources.dtype == torch.uint8 and b.lengths is None for b in listed)
    assert sum(keys_of(listed), []) == [str(tmp_path / f"{i:03d}.png") for i in range(5)]
    assert listed[0].texts == ["a red square", "a blue square"]
    assert data.texts("dev") == ["a red square", "a blue square"] * 2 + ["a red square"]


def test_eval_batches_match_read_source(data, tmp_path):
    first = next(iter(data.batches("dev", train=False, batch_size=3)))
    single = ImageData.read_source(data.config, tmp_path / "001.png")
    assert single.shape == (3, SIZE, SIZE)
    torch.testing.assert_close(first.sources[1], single)
    stacked, lengths = ImageData.collate_sources([single, single])
    assert stacked.shape == (2, 3, SIZE, SIZE) and lengths is None


def test_training_order_depends_only_on_seed_and_epoch(data):
    def order(epoch: int, seed: int) -> list[list[str]]:
        return keys_of(data.batches("train", train=True, batch_size=3, epoch=epoch, seed=seed))

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(1, 0)
    assert order(0, 0) != order(0, 1)
    assert sorted(sum(order(1, 0), [])) == sorted(sum(order(0, 0), []))
    assert [len(keys) for keys in order(0, 0)] == [3, 3, 3, 1]
    unshuffled = keys_of(data.batches("train", train=False, batch_size=3))
    assert sum(unshuffled, []) == sorted(sum(unshuffled, []))


def test_start_skips_batches_without_loading_them(data):
    full = list(data.batches("train", train=True, batch_size=3, epoch=2, seed=5))
    for path in full[0].keys + full[1].keys:
        with open(path, "wb") as file:
            file.write(b"not an image")
    resumed = data.batches("train", train=True, batch_size=3, epoch=2, seed=5, start=2)
    assert len(resumed) == 2
    resumed = list(resumed)
    assert keys_of(resumed) == keys_of(full[2:])
    for original, replayed in zip(full[2:], resumed, strict=True):
        torch.testing.assert_close(original.sources, replayed.sources)
    with pytest.raises(InputError, match=r"\.png: cannot read image \("):
        list(data.batches("train", train=True, batch_size=3, epoch=2, seed=5, start=1))


def test_worker_processes_give_the_same_batches(data):
    in_process = list(data.batches("dev", train=False, batch_size=4))
    data.config.num_workers = 2
    in_workers = list(data.batches("dev", train=False, batch_size=4))
    assert keys_of(in_workers) == keys_of(in_process)
    for a, b in zip(in_process, in_workers, strict=True):
        torch.testing.assert_close(a.sources, b.sources)


def test_training_batches_hold_unaugmented_pixels_that_the_frontend_augments(tmp_path):
    manifest = write_manifest(tmp_path / "train.jsonl", write_images(tmp_path, 4))
    config = ImageDataConfig(train=manifest, image_size=SIZE, augment=True, num_workers=0)
    data = ImageData(config)
    training = next(iter(data.batches("train", train=True, batch_size=4)))
    plain = next(iter(data.batches("train", train=False, batch_size=4)))
    by_key = dict(zip(plain.keys, plain.sources, strict=True))
    torch.testing.assert_close(training.sources, torch.stack([by_key[k] for k in training.keys]))
    frontend = build_frontend(config).train()
    assert frontend.augment
    torch.manual_seed(0)
    augmented, _ = frontend(training.sources, None)
    assert not torch.allclose(augmented, frontend.eval()(training.sources, None)[0])
    assert not build_frontend(ImageDataConfig(augment=False)).augment


def test_preloaded_training_batches_equal_loaded_ones_and_need_no_files(tmp_path):
    manifest = write_manifest(tmp_path / "train.jsonl", write_images(tmp_path, 10))
    loaded = ImageData(ImageDataConfig(train=manifest, image_size=SIZE, num_workers=0))
    preloaded = ImageData(
        ImageDataConfig(train=manifest, image_size=SIZE, num_workers=1, preload=True)
    )
    expected = {e: list(loaded.batches("train", train=True, batch_size=3, epoch=e)) for e in (0, 1)}
    assert preloaded.batches("train", train=True, batch_size=3).num_workers == 0
    for path in tmp_path.glob("*.png"):
        path.unlink()  # every training image now comes from memory
    for epoch in (0, 1):
        got = list(preloaded.batches("train", train=True, batch_size=3, epoch=epoch))
        assert keys_of(got) == keys_of(expected[epoch])
        for a, b in zip(got, expected[epoch], strict=True):
            assert a.texts == b.texts
            torch.testing.assert_close(a.sources, b.sources)
    resumed = list(preloaded.batches("train", train=True, batch_size=3, epoch=1, start=2))
    assert keys_of(resumed) == keys_of(expected[1])[2:]


@pytest.mark.parametrize(("rank", "disable"), [(0, None), (1, True)])
def test_only_the_first_process_shows_the_preloading_bar(tmp_path, monkeypatch, rank, disable):
    manifest = write_manifest(tmp_path / "train.jsonl", write_images(tmp_path, 4))
    data = ImageData(ImageDataConfig(train=manifest, image_size=SIZE, num_workers=0, preload=True))
    bars = []
    monkeypatch.setattr(images, "tqdm", lambda **options: bars.append(options) or tqdm(**options))
    data.batches("train", train=True, batch_size=2, shard=Shard(rank, 2))
    assert [options["disable"] for options in bars] == [disable]  # None: shown on a terminal


def test_eval_splits_include_every_test_manifest(data):
    data.config.test = {"test": data.config.dev, "hard": data.config.dev}
    assert data.eval_splits == ["dev", "test", "hard"]
    assert data.texts("hard") == data.texts("dev")
    with pytest.raises(InputError, match="no split 'other'"):
        data.texts("other")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"image": "a.png", "caption": "a cat"}\n[1]\n', r"train\.jsonl:2: expected a JSON"),
        ('{"image": "a.png"}\n', r"train\.jsonl:1: missing key 'caption'"),
        ('{"image": 3, "caption": "x"}\n', r"train\.jsonl:1: 'image' must be a string"),
        ("{not json\n", r"train\.jsonl:1: invalid JSON"),
        ("\n\n", r"train\.jsonl: manifest has no entries"),
    ],
)
def test_bad_manifest_lines_are_named(tmp_path, content, message):
    (tmp_path / "train.jsonl").write_text(content)
    data = ImageData(ImageDataConfig(train=str(tmp_path / "train.jsonl")))
    with pytest.raises(InputError, match=message):
        data.texts("train")


def test_missing_manifest_and_unset_split_are_errors(tmp_path):
    data = ImageData(ImageDataConfig(train=str(tmp_path / "absent.jsonl")))
    with pytest.raises(InputError, match="absent.jsonl: manifest not found"):
        data.batches("train", train=True, batch_size=2)
    with pytest.raises(InputError, match="data.dev: no manifest"):
        data.texts("dev")


def test_read_source_names_a_corrupt_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG broken")
    with pytest.raises(InputError, match="broken.png"):
        ImageData.read_source(ImageDataConfig(image_size=SIZE), path)


def test_normalise_caption():
    assert normalise_caption("  A  Red\tSQUARE\n") == "a red square"


@pytest.mark.parametrize(("encoder", "grid"), [("cnn", 2), ("resnet", 1)], ids=["cnn", "resnet"])
def test_encoder_is_switched_by_its_name_alone(tmp_path, encoder, grid):
    """The shared config sets only keys every image encoder has; one training step runs."""
    manifest = write_manifest(tmp_path / "train.jsonl", write_images(tmp_path, 4))
    config = load_config(
        None,
        [
            "data.name=images",
            f"data.train={manifest}",
            "data.image_size=32",
            "data.num_workers=0",
            "encoder.output_dim=16",
            "encoder.dropout=0.0",
            "decoder.hidden_dim=16",
            "decoder.embedding_dim=8",
            "tokenizer.kind=word",
            f"encoder.name={encoder}",
        ],
    )
    data = ImageData(config.data)
    tokenizer = Tokenizer.build(data.texts("train"), "word")
    model = build_model(config, len(tokenizer))
    assert type(model.encoder).__name__.lower().startswith(encoder)
    assert model.encoder.grid_size(32, 32) == (grid, grid)
    batch = next(iter(data.batches("train", train=True, batch_size=4)))
    inputs, targets = teacher_forcing_pair([tokenizer.encode(t) for t in batch.texts])
    log_probs, weights, encoded = model(batch.sources, batch.lengths, inputs)
    assert encoded.memory.shape == (4, grid * grid, 16)
    assert weights.shape == (4, inputs.size(1), grid * grid)
    loss = token_loss(log_probs, targets)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.encoder.head.projection.weight.detach().clone()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before, model.encoder.head.projection.weight)


SCENE_REFS = ["a dog above a cat", "an apple to the left of a fox", "a dog"]
SCENE_HYPS = ["a dog above a cat", "a fox to the left of an apple", ""]


def test_score_of_scene_captions_has_every_metric():
    data = ImageData(ImageDataConfig(grammar="scenes"))
    metrics = data.score(SCENE_REFS, SCENE_HYPS)
    assert list(metrics) == [
        "wer",
        "bleu4",
        "cider_d",
        "exact_match",
        "object_accuracy",
        "relation_accuracy",
    ]
    # 6 word errors over 15 reference words; 2 of 5 object slots; 1 of 2 pair relations.
    assert metrics["wer"] == pytest.approx(6 / 15)
    assert metrics["exact_match"] == pytest.approx(1 / 3)
    assert metrics["object_accuracy"] == pytest.approx(2 / 5)
    assert metrics["relation_accuracy"] == pytest.approx(1 / 2)
    assert 0.0 < metrics["bleu4"] < 1.0
    assert metrics["cider_d"] > 0.0


def test_score_of_perfect_captions():
    data = ImageData(ImageDataConfig(grammar="scenes"))
    metrics = data.score(SCENE_REFS, SCENE_REFS)
    assert metrics["wer"] == 0.0
    assert metrics["bleu4"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["exact_match"] == metrics["object_accuracy"] == 1.0
    assert metrics["relation_accuracy"] == 1.0


def test_score_without_grammar_leaves_out_scene_metrics():
    refs, hyps = ["a red square on a table", "two cats"], ["a red square on a table", "a cat"]
    metrics = ImageData(ImageDataConfig()).score(refs, hyps)
    assert list(metrics) == ["wer", "bleu4", "cider_d", "exact_match"]
    assert metrics["exact_match"] == 0.5


def test_scene_grammar_rejects_references_outside_it():
    data = ImageData(ImageDataConfig(grammar="scenes"))
    with pytest.raises(InputError, match="outside the scene grammar: 'two cats'"):
        data.score(["two cats"], ["two cats"])


def test_unknown_grammar_is_a_config_error():
    with pytest.raises(InputError, match="data.grammar"):
        load_config(None, ["data.name=images", "data.grammar=coco"])


def test_details_mark_each_item():
    records = [
        {"key": str(i), "ref": ref, "hyp": hyp, "score": -1.0}
        for i, (ref, hyp) in enumerate(zip(SCENE_REFS, SCENE_HYPS, strict=True))
    ]
    detailed = ImageData(ImageDataConfig(grammar="scenes")).details(records)
    assert [d["exact_match"] for d in detailed] == [True, False, False]
    assert [d["object_accuracy"] for d in detailed] == [1.0, 0.0, 0.0]
    assert [d["relation_correct"] for d in detailed] == [True, False, None]
    assert [d["hyp"] for d in detailed] == SCENE_HYPS
    plain = ImageData(ImageDataConfig()).details(records[:1])
    assert plain == [{**records[0], "exact_match": True}]


def test_two_ranks_get_disjoint_halves_of_each_global_batch(data):
    shards = [
        keys_of(data.batches("train", train=True, batch_size=2, seed=3, shard=Shard(r, 2)))
        for r in (0, 1)
    ]
    single = keys_of(data.batches("train", train=True, batch_size=4, seed=3))
    whole = [keys for keys in single if len(keys) >= 2]
    assert len(shards[0]) == len(shards[1]) == len(whole) == 3
    for first, second, keys in zip(*shards, whole, strict=True):
        assert sorted(first + second) == sorted(keys) and not set(first) & set(second)


def test_training_images_over_max_pixels_are_dropped_and_counted(tmp_path):
    records = write_images(tmp_path, 6)
    big = Image.new("RGB", (40, 30), (255, 255, 255))
    big.save(tmp_path / "big.png")
    records += [
        {"image": "big.png", "caption": "a big picture"},
        {"image": "000.png", "caption": "a declared big one", "width": 100, "height": 100},
    ]
    manifest = write_manifest(tmp_path / "train.jsonl", records)
    config = ImageDataConfig(train=manifest, dev=manifest, max_pixels=24 * 24, num_workers=0)
    data = ImageData(config)
    assert len(data.texts("train")) == 6 and len(data.texts("dev")) == 8
    assert data.dropped == [Dropped("train", 2, "more than data.max_pixels=576 pixels")]


@pytest.mark.parametrize(("key", "value"), [("num_workers", -1), ("max_pixels", 0)])
def test_bad_image_data_settings_are_named(key, value):
    with pytest.raises(InputError, match=f"data.{key} must be"):
        ImageDataConfig(**{key: value})


@pytest.mark.slow
@pytest.mark.parametrize("preload", [False, True])
def test_training_on_a_corrupt_image_stops_with_one_line_naming_it(tmp_path, capsys, preload):
    records = [{**record, "width": 24, "height": 24} for record in write_images(tmp_path, 4)]
    (tmp_path / "002.png").write_bytes(b"not an image")  # sizes given: first read in a worker
    manifest = write_manifest(tmp_path / "train.jsonl", records)
    overrides = [
        "data.name=images",
        f"data.train={manifest}",
        f"data.dev={manifest}",
        f"data.image_size={SIZE}",
        "data.num_workers=1",  # the error crosses a DataLoader worker
        f"data.preload={str(preload).lower()}",
        "encoder.name=cnn",
        "encoder.channels=[4]",
        "tokenizer.kind=word",
        "train.epochs=1",
        "train.batch_size=4",
    ]
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    assert main(["train", str(config), *overrides, "--out", str(tmp_path / "out")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert re.fullmatch(r"error: \S*002\.png: cannot read image \(.+\)", errors[0])
