"""Several reference captions per image: the draw per training epoch, multi-reference scores
(equal to pycocoevalcap's), evaluation records, and ``train.select_by: cider``."""

import json
from pathlib import Path

import pytest
import torch
from conftest import SMALL, end_epochs
from PIL import Image
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from multimodal_s2s.checkpoint import load_checkpoint
from multimodal_s2s.config import ConfigError, load_config
from multimodal_s2s.data.images import ImageData, ImageDataConfig, drawn_references
from multimodal_s2s.errors import InputError
from multimodal_s2s.metrics import bleu4, cider_d, closest_reference_wer, word_error_rate
from multimodal_s2s.training.evaluate import evaluate_model
from multimodal_s2s.training.train import Trainer

# Hand-made: four images with two to four references each (already tokenised: lowercase, no
# punctuation, so pycocoevalcap scores the same strings as the project's scorers).
REFERENCES = [
    ["a red square on white", "a red box", "the square is red"],
    ["two blue circles side by side", "blue circles", "a pair of blue dots", "two round dots"],
    ["a green triangle", "a small green triangle on a white page"],
    ["a dog runs on the grass", "a brown dog running", "the dog is running on green grass"],
]
HYPOTHESES = [
    "the square is red",
    "a pair of blue circles side by side",
    "a small green triangle on a page",
    "a brown dog running on the grass",
]


def test_multi_reference_bleu4_and_cider_d_equal_pycocoevalcap():
    gts = {index: refs for index, refs in enumerate(REFERENCES)}
    res = {index: [hyp] for index, hyp in enumerate(HYPOTHESES)}
    coco_bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    coco_cider, _ = Cider().compute_score(gts, res)
    assert bleu4(REFERENCES, HYPOTHESES) == pytest.approx(coco_bleu[3], abs=1e-12)
    assert cider_d(REFERENCES, HYPOTHESES) == pytest.approx(coco_cider, abs=1e-12)
    metrics = ImageData(ImageDataConfig()).score(REFERENCES, HYPOTHESES)
    assert metrics["bleu4"] == pytest.approx(coco_bleu[3], abs=1e-12)
    assert metrics["cider_d"] == pytest.approx(coco_cider, abs=1e-12)
    # more references change the scores: scoring against the first alone differs
    firsts = [[refs[0]] for refs in REFERENCES]
    assert abs(cider_d(firsts, HYPOTHESES) - coco_cider) > 0.1
    assert abs(bleu4(firsts, HYPOTHESES) - coco_bleu[3]) > 0.1


def test_closest_reference_wer_uses_each_items_closest_reference():
    refs = [["a red box", "a red square"], ["two dogs run", "a dog"]]
    hyps = ["a red square", "a cat"]
    # item 1: 0 edits of 3 words; item 2: "a dog" -> "a cat" 1 edit of 2 words
    assert closest_reference_wer(refs, hyps) == pytest.approx(1 / 5)
    single = [[r[0]] for r in refs]
    assert closest_reference_wer(single, hyps) == pytest.approx(
        word_error_rate([r[0] for r in refs], hyps)
    )
    with pytest.raises(InputError):
        closest_reference_wer([[]], ["a"])


def test_score_of_multi_reference_captions_matches_any_reference():
    hyps = ["a red box", "blue circles", "a green triangle", "a dog"]
    metrics = ImageData(ImageDataConfig()).score(REFERENCES, hyps)
    assert metrics["exact_match"] == 0.75  # each a reference but the first's ("a dog")
    assert list(metrics)[0] == "wer"


def test_the_reference_drawn_per_epoch_is_deterministic_and_varies_across_epochs():
    references = [[f"caption {i} {j}" for j in range(5)] for i in range(40)]
    first = drawn_references(references, seed=3, epoch=0)
    assert first == drawn_references(references, seed=3, epoch=0)
    assert all(caption in refs for caption, refs in zip(first, references, strict=True))
    later = [drawn_references(references, seed=3, epoch=epoch) for epoch in (1, 2)]
    assert first != later[0] != later[1]
    assert first != drawn_references(references, seed=4, epoch=0)
    # every reference gets drawn over the epochs
    drawn = {caption for e in range(60) for caption in drawn_references(references, 3, e)}
    assert drawn == {caption for refs in references for caption in refs}


def write_captioned_images(folder, count: int = 6) -> str:
    """``count`` PNGs, each with three captions; the manifest's path."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(count):
        colour = ("red", "blue")[index % 2]
        rgb = (220, 0, 0) if colour == "red" else (0, 0, 220)
        Image.new("RGB", (12, 12), rgb).save(folder / f"{index}.png")
        captions = [f"a {colour} square", f"A {colour.upper()} box", f"{colour} picture {index}"]
        lines.append({"image": f"{index}.png", "caption": captions[0], "captions": captions})
    manifest = folder / "data.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(manifest)


@pytest.fixture
def data(tmp_path) -> ImageData:
    manifest = write_captioned_images(tmp_path)
    config = ImageDataConfig(train=manifest, dev=manifest, image_size=8, num_workers=0)
    return ImageData(config)


def test_training_batches_hold_the_drawn_reference_and_evaluation_batches_all(data):
    references = data.references("train")
    assert references[1] == ["a blue square", "a blue box", "blue picture 1"]
    assert data.texts("train") == [caption for refs in references for caption in refs]
    for epoch in (0, 1):
        drawn = {
            key: text
            for batch in data.batches("train", train=True, batch_size=4, epoch=epoch, seed=7)
            for key, text in zip(batch.keys, batch.texts, strict=True)
        }
        paths = [str(Path(data.config.train).parent / f"{i}.png") for i in range(6)]
        expected = drawn_references(references, seed=7, epoch=epoch)
        assert [drawn[path] for path in paths] == expected
    (batch,) = data.batches("dev", train=False, batch_size=8)
    assert batch.texts == [refs[0] for refs in references]
    assert batch.references == references


def test_a_resumed_epoch_draws_the_same_references(data):
    whole = list(data.batches("train", train=True, batch_size=2, epoch=3, seed=1))
    resumed = list(data.batches("train", train=True, batch_size=2, epoch=3, seed=1, start=1))
    assert [b.texts for b in whole[1:]] == [b.texts for b in resumed]


def test_a_bad_captions_list_is_named(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"image": "a.png", "caption": "x", "captions": "x"}) + "\n")
    data = ImageData(ImageDataConfig(train=str(manifest), dev=str(manifest)))
    with pytest.raises(InputError, match="'captions' of .*a.png must be a list of non-empty"):
        data.texts("train")


def test_a_caption_missing_from_its_captions_goes_first(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    manifest = tmp_path / "m.jsonl"
    line = {"image": "a.png", "caption": "One", "captions": ["two", "one"]}
    manifest.write_text(json.dumps(line) + "\n")
    line = {"image": "a.png", "caption": "Zero", "captions": ["two", "one"]}
    manifest.write_text(manifest.read_text() + json.dumps(line) + "\n")
    data = ImageData(ImageDataConfig(train=str(manifest), dev=str(manifest)))
    assert data.references("dev") == [["two", "one"], ["zero", "two", "one"]]


IMAGE_RUN = [
    "data.name=images",
    "data.image_size=8",
    "data.num_workers=0",
    "data.augment=false",
    "encoder.name=cnn",
    "encoder.channels=[4, 8]",
    "tokenizer.kind=word",
]


def image_run_config(manifest: str, extra: list[str]):
    overrides = [*IMAGE_RUN, f"data.train={manifest}", f"data.dev={manifest}", *SMALL, *extra]
    return load_config(None, overrides)


def test_evaluation_records_and_scores_use_every_reference(data, tmp_path):
    config = image_run_config(data.config.train, ["train.device=cpu"])
    run = Trainer(config, tmp_path / "run", progress=False, resume=False)
    evaluation = evaluate_model(run.model, run.tokenizer, run.data, "dev", config, "cpu")
    records = evaluation.records
    assert [r["refs"] for r in records] == data.references("dev")
    assert [r["ref"] for r in records] == [refs[0] for refs in data.references("dev")]
    hyps = [r["hyp"] for r in records]
    expected = run.data.score(data.references("dev"), hyps)
    assert evaluation.metrics["cider_d"] == expected["cider_d"]


def test_select_by_cider_keeps_the_epochs_of_highest_cider(data, tmp_path):
    extra = ["train.device=cpu", "train.keep_best=2", "train.select_by=cider"]
    config = image_run_config(data.config.train, extra)
    assert config.train.rank_value({"cider_d": 2.0, "wer": 0.1}) == -2.0
    run = Trainer(config, tmp_path, progress=False, resume=False)
    dev = [
        {"loss": 0.4, "wer": 0.2, "cider_d": 1.5},
        {"loss": 0.5, "wer": 0.6, "cider_d": 3.0},
        {"loss": 0.9, "wer": 0.9, "cider_d": 2.0},
    ]
    weights = end_epochs(run, dev)
    assert sorted(p.name for p in tmp_path.glob("epoch-*.pt")) == ["epoch-2.pt", "epoch-3.pt"]
    saved = load_checkpoint(tmp_path / "best.pt")["model"]["generator.projection.bias"]
    assert torch.equal(saved, weights[1])


def test_select_by_cider_runs_and_reports_the_best_cider(data, tmp_path, capsys):
    extra = ["train.device=cpu", "train.epochs=2", "train.select_by=cider"]
    config = image_run_config(data.config.train, extra)
    run = Trainer(config, tmp_path, progress=True, resume=False)
    result = run.fit()
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    ciders = [record["dev_cider_d"] for record in logged if "dev_cider_d" in record]
    assert len(ciders) == 2 and result.best_dev_metric == max(ciders)
    assert "dev CIDEr-D" in capsys.readouterr().out


@pytest.mark.parametrize("source", ["toy_sequences", "toy_images", "speech"])
def test_select_by_cider_without_captions_is_a_one_line_config_error(source):
    with pytest.raises(ConfigError) as error:
        load_config(None, [f"data.name={source}", "train.select_by=cider"])
    assert str(error.value) == (
        "train.select_by: 'cider' needs a data source that reports cider_d (images), "
        f"not data.name {source!r}"
    )
