"""Tests of the built-in scene captioning corpus (multimodal_s2s.corpora.scenes)."""

import hashlib
import json
import random
from pathlib import Path

import pytest
from PIL import Image

from multimodal_s2s.corpora.scenes.backgrounds import family, find_photos, texture_ids
from multimodal_s2s.corpora.scenes.layout import Box, object_size, place_objects
from multimodal_s2s.corpora.scenes.plan import SceneSpec, plan_scenes, split_backgrounds
from multimodal_s2s.corpora.scenes.prepare import main, prepare_corpus
from multimodal_s2s.corpora.scenes.render import SceneRenderer
from multimodal_s2s.corpora.scenes.stamps import find_objects, parse_stamp_name
from multimodal_s2s.data.scene_captions import (
    ParsedCaption,
    PlacedObject,
    article,
    describe,
    parse_caption,
)
from multimodal_s2s.data.scene_scoring import (
    exact_match,
    named_slots,
    object_accuracy,
    relation_accuracy,
)
from multimodal_s2s.errors import InputError

REAL_STAMPS = Path("/usr/share/tuxpaint/stamps")
TINY = {"image_size": 32, "num_train": 24, "num_dev": 4, "num_test": 4, "num_textures": 6}
STAMP_TEXTS = {
    "animals/dog.txt": "A dog.\nde.utf8=Ein Hund.\n",
    "animals/dog2.txt": "A dog.\n",
    "animals/owl.txt": "An owl.",
    "food/apple.txt": "An apple.\n",
    "vehicles/fire_truck.txt": "A fire truck.\n",
    "household/umbrella.txt": "An umbrella.\n",
    "animals/cat.txt": "A cat.\n",
    "animals/big_dog.txt": "A very big red dog.\n",
    "animals/plain_dog.txt": "Dog.\n",
    "animals/loud_dog.txt": "A dog!\n",
}


def _write_stamp(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
    """An RGBA stamp: an opaque rectangle of ``size`` inside a transparent 4-pixel margin.

    Owls are a 2-pixel frame around a transparent hole.
    """
    image = Image.new("RGBA", (size[0] + 8, size[1] + 8), (0, 0, 0, 0))
    image.paste(Image.new("RGBA", size, (*colour, 255)), (4, 4))
    if path.stem == "owl":
        image.paste(Image.new("RGBA", (size[0] - 4, size[1] - 4), (0, 0, 0, 0)), (6, 6))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fake stamp tree and a fake background directory."""
    root = tmp_path_factory.mktemp("inputs")
    stamps, backgrounds = root / "stamps", root / "backgrounds"
    for i, (relative, text) in enumerate(STAMP_TEXTS.items()):
        txt = stamps / relative
        _write_stamp(txt.with_suffix(".png"), (10 + 3 * i, 30 - 2 * i), (200, 10 * i, 0))
        txt.write_text(text)
    _write_stamp(stamps / "animals/no_text.png", (10, 10), (0, 0, 255))
    photos = {
        "nature/Sea.jpg": (40, 30),
        "nature/Sea_80x60.jpg": (80, 60),
        "nature/Field.jpg": (50, 40),
        "nature/Hill.jpg": (60, 40),
        "desktop/Stripes-Dark.png": (48, 32),
        "desktop/Stripes-Light.png": (48, 32),
        "abstract/Glass.png": (64, 48),
    }
    for i, (relative, size) in enumerate(photos.items()):
        path = backgrounds / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGBA" if relative.endswith(".png") else "RGB", size, (0, 40 * i, 90)).save(path)
    return stamps, backgrounds


@pytest.fixture(scope="module")
def corpus(inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny corpus built with 2 processes: ``{split: manifest rows}`` and the out dir."""
    stamps, backgrounds = inputs
    out_dir = tmp_path_factory.mktemp("corpus")
    manifests = prepare_corpus(
        out_dir, seed=3, jobs=2, stamp_root=stamps, background_root=backgrounds, **TINY
    )
    rows = {split: _read_jsonl(path) for split, path in manifests.items()}
    return {"rows": rows, "out_dir": out_dir, "manifests": manifests}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# Caption grammar.


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("apple", "an"),
        ("echidna", "an"),
        ("iris", "an"),
        ("owl", "an"),
        ("umbrella", "an"),
        ("dog", "a"),
        ("yak", "a"),
        ("hot air balloon", "a"),
    ],
)
def test_article_is_an_before_a_e_i_o_u(name: str, expected: str) -> None:
    assert article(name) == expected


def test_describe_one_object() -> None:
    assert describe([PlacedObject("owl", 5.0, 9.0)]) == "an owl"
    assert describe([PlacedObject("fire truck", 5.0, 9.0)]) == "a fire truck"


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ((30, 50), (90, 60), "a dog to the left of an apple"),
        ((90, 60), (30, 50), "an apple to the left of a dog"),
        ((50, 90), (60, 20), "an apple above a dog"),
        ((50, 20), (60, 90), "a dog above an apple"),
        ((10, 10), (40, 40), "a dog to the left of an apple"),
        ((40, 10), (10, 40), "an apple to the left of a dog"),
        ((10, 10), (39, 40), "a dog above an apple"),
    ],
)
def test_describe_two_objects_left_when_horizontal_distance_wins_ties(
    first: tuple[int, int], second: tuple[int, int], expected: str
) -> None:
    objects = [PlacedObject("dog", *first), PlacedObject("apple", *second)]
    assert describe(objects) == expected
    assert describe(objects[::-1]) == expected


@pytest.mark.parametrize("count", [0, 3])
def test_describe_rejects_wrong_object_counts(count: int) -> None:
    with pytest.raises(InputError, match="1 or 2 objects"):
        describe([PlacedObject("dog", float(i), 0.0) for i in range(count)])


def test_describe_rejects_objects_sharing_a_centre() -> None:
    with pytest.raises(InputError, match="share a centre"):
        describe([PlacedObject("dog", 4.0, 4.0), PlacedObject("cat", 4.0, 4.0)])


@pytest.mark.parametrize(
    "objects",
    [
        [PlacedObject("owl", 1, 1)],
        [PlacedObject("hot air balloon", 1, 1)],
        [PlacedObject("floppy-eared bunny", 1, 1), PlacedObject("pair of pants", 50, 9)],
        [PlacedObject("echidna", 10, 90), PlacedObject("umbrella", 20, 3)],
        [PlacedObject("a", 10, 90), PlacedObject("to the left", 20, 3)],
    ],
)
def test_parse_caption_inverts_describe(objects: list[PlacedObject]) -> None:
    parsed = parse_caption(describe(objects))
    if len(objects) == 1:
        assert parsed == ParsedCaption([objects[0].name], None)
    else:
        left_or_upper = min(objects, key=lambda o: o.x if parsed.relation == "left" else o.y)
        assert parsed.relation in ("left", "above")
        assert parsed.objects[0] == left_or_upper.name
        assert sorted(parsed.objects) == sorted(o.name for o in objects)
    assert parse_caption(f"  {describe(objects)}\n") == parsed


def test_parse_caption_reads_each_relation() -> None:
    assert parse_caption("a dog to the left of an owl") == ParsedCaption(["dog", "owl"], "left")
    assert parse_caption("an owl above a fire truck") == ParsedCaption(
        ["owl", "fire truck"], "above"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "dog",
        "an dog",
        "a apple",
        "a dog beside a cat",
        "a dog to the left of",
        "a dog above a cat above an owl",
        "a very big red dog",
        "A dog",
        "a dog.",
    ],
)
def test_parse_caption_outside_grammar_is_empty(text: str) -> None:
    assert parse_caption(text) == ParsedCaption([], None)


# Stamps.


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("A dog.", "dog"),
        ("An apple.", "apple"),
        ("A fire truck.", "fire truck"),
        ("A floppy-eared bunny.", "floppy-eared bunny"),
        ("A VW beetle.", "vw beetle"),
        ("A very big red dog.", None),
        ("Dog.", None),
        ("A dog!", None),
        ("A dog", None),
        ("A  dog.", None),
        ("A dog. ", None),
        ("The dog.", None),
        ("A knight’s helmet.", None),
        ("A peacock (a male peafowl).", None),
    ],
)
def test_parse_stamp_name(line: str, expected: str | None) -> None:
    assert parse_stamp_name(line) == expected


def test_find_objects_reads_first_lines_and_merges_shared_names(
    inputs: tuple[Path, Path],
) -> None:
    stamps, _ = inputs
    objects = find_objects(stamps)
    assert sorted(objects) == ["apple", "cat", "dog", "fire truck", "owl", "umbrella"]
    assert objects["dog"] == [stamps / "animals/dog.png", stamps / "animals/dog2.png"]
    assert objects["fire truck"] == [stamps / "vehicles/fire_truck.png"]


def test_find_objects_names_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=str(tmp_path / "missing")):
        find_objects(tmp_path / "missing")


@pytest.mark.skipif(not REAL_STAMPS.is_dir(), reason="tuxpaint-stamps-default not installed")
def test_find_objects_on_the_debian_package() -> None:
    objects = find_objects(REAL_STAMPS)
    assert 330 <= len(objects) <= 370
    assert 370 <= sum(len(paths) for paths in objects.values()) <= 410
    assert {"dog", "elephant", "fire truck", "floppy-eared bunny"} <= set(objects)


# Backgrounds.


def test_find_photos_merges_resolutions_and_families_merge_variants(
    inputs: tuple[Path, Path],
) -> None:
    _, backgrounds = inputs
    photos = find_photos(backgrounds)
    assert sorted(photos) == [
        "photo/abstract/Glass",
        "photo/desktop/Stripes-Dark",
        "photo/desktop/Stripes-Light",
        "photo/nature/Field",
        "photo/nature/Hill",
        "photo/nature/Sea",
    ]
    assert photos["photo/nature/Sea"] == backgrounds / "nature/Sea.jpg"
    assert family("photo/desktop/Stripes-Dark") == family("photo/desktop/Stripes-Light")
    assert family("photo/nature/Sea") != family("photo/nature/Hill")


# Scene geometry.


def test_place_objects_sizes_and_no_covered_centre() -> None:
    rng = random.Random(0)
    for _ in range(300):
        sizes = [object_size(rng.uniform(0.2, 5.0), 64, rng) for _ in range(rng.randint(1, 2))]
        boxes = place_objects(sizes, 64, rng)
        for box, (width, height) in zip(boxes, sizes, strict=True):
            assert (box.right - box.left, box.bottom - box.top) == (width, height)
            assert 0.25 * 64 <= max(width, height) <= 0.6 * 64
            assert 0 <= box.left and box.right <= 64 and 0 <= box.top and box.bottom <= 64
        if len(boxes) == 2:
            assert not boxes[0].covers(*boxes[1].centre)
            assert not boxes[1].covers(*boxes[0].centre)


def _pixel_at(centre: tuple[float, float], outside: Box) -> tuple[int, int]:
    """One of the pixels touching ``centre`` that lies outside the box ``outside``."""
    x, y = (round(c) for c in centre)
    touching = [(x - 1, y - 1), (x, y - 1), (x - 1, y), (x, y)]
    return next(p for p in touching if not outside.covers(p[0] + 0.5, p[1] + 0.5))


def test_rendered_scenes_composite_stamps_through_alpha(inputs: tuple[Path, Path]) -> None:
    stamps, backgrounds = inputs
    photos = find_photos(backgrounds)
    renderer = SceneRenderer(48, seed=1, photo_files=photos)
    for index in range(40):
        spec = SceneSpec(
            f"x-{index}",
            ("dog", "owl"),
            (stamps / "animals/dog.png", stamps / "animals/owl.png"),
            "photo/nature/Field",
        )
        scene = renderer.render(spec)
        assert scene.image.size == (48, 48) and scene.image.mode == "RGB"
        for box in scene.boxes:
            assert 0.25 * 48 <= max(box.right - box.left, box.bottom - box.top) <= 0.6 * 48
        dog, owl = scene.boxes
        assert not dog.covers(*owl.centre) and not owl.covers(*dog.centre)
        assert scene.image.getpixel(_pixel_at(dog.centre, outside=owl)) == (200, 0, 0)
        red, _, blue = scene.image.getpixel(_pixel_at(owl.centre, outside=dog))
        assert red < 40 and blue > 60, "the background shows through the owl's hole"
        for x, y in [(0, 0), (47, 0), (0, 47), (47, 47)]:
            if not any(box.covers(x + 0.5, y + 0.5) for box in scene.boxes):
                red, _, blue = scene.image.getpixel((x, y))
                assert red < 40 and blue > 60, "the background shows outside the stamps"
        assert scene.caption.relation in ("left", "above")
        for stamp, box in zip(scene.stamps, scene.boxes, strict=True):
            assert stamp.mode == "RGBA"
            assert stamp.size == (box.right - box.left, box.bottom - box.top)
        dog_stamp, owl_stamp = scene.stamps
        x, y = _pixel_at(dog.centre, outside=owl)
        assert dog_stamp.getpixel((x - dog.left, y - dog.top))[3] == 255
        x, y = _pixel_at(owl.centre, outside=dog)
        assert owl_stamp.getpixel((x - owl.left, y - owl.top))[3] < 16, "the hole"


# Corpus splits, manifests and caching.


def test_manifest_lines_follow_the_layout(corpus: dict) -> None:
    rows = corpus["rows"]
    assert [len(rows[s]) for s in ("train", "dev", "test")] == [24, 4, 4]
    for split, split_rows in rows.items():
        for index, row in enumerate(split_rows):
            assert set(row) == {
                *("image", "caption", "width", "height", "objects", "relation", "background", "id")
            }
            assert row["id"] == f"{split}-{index:06d}"
            assert Path(row["image"]).is_absolute()
            with Image.open(row["image"]) as image:
                assert image.size == (row["width"], row["height"]) == (32, 32)
            assert parse_caption(row["caption"]) == ParsedCaption(row["objects"], row["relation"])


def test_splits_hold_out_pairs_and_backgrounds(corpus: dict) -> None:
    rows = corpus["rows"]
    train_objects = {name for row in rows["train"] for name in row["objects"]}
    assert train_objects == {"apple", "cat", "dog", "fire truck", "owl", "umbrella"}
    singles = [row["objects"][0] for row in rows["train"] if len(row["objects"]) == 1]
    assert sorted(set(singles)) == sorted(train_objects)
    pairs = {
        split: {frozenset(r["objects"]) for r in rows[split] if len(r["objects"]) == 2}
        for split in rows
    }
    families = {split: {family(r["background"]) for r in rows[split]} for split in rows}
    for held in ("dev", "test"):
        assert all(len(row["objects"]) == 2 for row in rows[held])
        assert not pairs[held] & pairs["train"]
        assert not families[held] & families["train"]
        assert {name for row in rows[held] for name in row["objects"]} <= train_objects
    assert not pairs["dev"] & pairs["test"]
    assert not families["dev"] & families["test"]


@pytest.mark.parametrize(
    ("num_train", "num_singles", "times_alone"), [(1000, 100, {2, 3}), (200, 40, {1})]
)
def test_a_tenth_of_training_scenes_hold_one_object_and_every_object_is_alone(
    num_train: int, num_singles: int, times_alone: set[int]
) -> None:
    objects = {f"object {index}": [Path(f"stamp{index}.png")] for index in range(40)}
    pools = split_backgrounds([], texture_ids(12), random.Random(0))
    counts = {"train": num_train, "dev": 10, "test": 10}
    plan = plan_scenes(objects, pools, counts, seed=0)
    singles = [spec.objects[0] for spec in plan["train"] if len(spec.objects) == 1]
    assert len(singles) == num_singles  # a tenth, but at least one scene per object
    assert {singles.count(name) for name in objects} == times_alone
    assert all(len(spec.objects) == 2 for split in ("dev", "test") for spec in plan[split])


# The digest of the corpus that TINY's settings, seed 3 and PNG files drew from the fake
# inputs before the varied composition existed (decoded pixels and manifest rows, image paths
# left out): the classic composition must keep drawing it (old runs reproduce).
CLASSIC_DIGEST = "ce8b6677727ed0b68b6289e21a00b5031e0f5f2155b5e6fc9f72dcf9b543fe4b"


def _corpus_digest(manifests: dict[str, Path]) -> str:
    digest = hashlib.sha256()
    for path in manifests.values():
        for row in _read_jsonl(path):
            with Image.open(row.pop("image")) as image:
                digest.update(image.convert("RGB").tobytes())
            digest.update(json.dumps(row, sort_keys=True).encode())
    return digest.hexdigest()


def test_classic_composition_draws_the_corpus_as_before(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    stamps, backgrounds = inputs
    kwargs = {"stamp_root": stamps, "background_root": backgrounds, "image_format": "png"}
    kwargs |= {"seed": 3, "jobs": 1, **TINY}
    default = prepare_corpus(tmp_path / "default", **kwargs)
    classic = prepare_corpus(tmp_path / "classic", composition="classic", **kwargs)
    assert _corpus_digest(default) == _corpus_digest(classic) == CLASSIC_DIGEST
    settings = json.loads((tmp_path / "classic" / "corpus.json").read_text())["settings"]
    assert "composition" not in settings and settings["num_textures"] == 6


def test_same_seed_reproduces_the_corpus_and_reruns_are_cached(
    corpus: dict, inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    stamps, backgrounds = inputs
    kwargs = {"stamp_root": stamps, "background_root": backgrounds, **TINY}
    again = prepare_corpus(tmp_path / "again", seed=3, jobs=1, **kwargs)
    for split, path in again.items():
        rows, original = _read_jsonl(path), corpus["rows"][split]
        for row, first in zip(rows, original, strict=True):
            assert Path(row.pop("image")).read_bytes() == Path(first["image"]).read_bytes()
            assert row == {key: value for key, value in first.items() if key != "image"}
    stamps_before = {p: p.stat().st_mtime_ns for p in (tmp_path / "again").rglob("*")}
    assert prepare_corpus(tmp_path / "again", seed=3, jobs=2, **kwargs) == again
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "again").rglob("*")} == stamps_before
    other = prepare_corpus(tmp_path / "again", seed=4, jobs=1, **kwargs)
    assert _read_jsonl(other["train"]) != _read_jsonl(corpus["manifests"]["train"])


def test_prepare_rejects_bad_counts(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    stamps, backgrounds = inputs
    kwargs = {"stamp_root": stamps, "background_root": backgrounds}
    with pytest.raises(InputError, match="num_train=3 must be at least the number of objects"):
        prepare_corpus(tmp_path, num_train=3, num_dev=1, num_test=1, jobs=1, **kwargs)
    with pytest.raises(InputError, match="jobs must be at least 1"):
        prepare_corpus(tmp_path, jobs=0, **kwargs)


def test_main_builds_png_corpus(
    inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stamps, backgrounds = inputs
    main(
        [str(tmp_path), "--seed", "1", "--image-size", "24", "--num-train", "6", "--num-dev",
         "1", "--num-test", "2", "--jobs", "1", "--stamp-root", str(stamps),
         "--background-root", str(backgrounds), "--image-format", "png"]
    )  # fmt: skip
    assert f"test: {tmp_path.resolve() / 'test.jsonl'}" in capsys.readouterr().out
    rows = _read_jsonl(tmp_path / "test.jsonl")
    assert len(rows) == 2 and rows[0]["image"].endswith(".png")
    with Image.open(rows[0]["image"]) as image:
        assert (image.format, image.size) == ("PNG", (24, 24))


# Scoring.


REFS = ["a dog above an owl", "an apple to the left of a cat", "an owl"]


def test_perfect_hypotheses_score_one() -> None:
    assert object_accuracy(REFS, REFS) == 1.0
    assert relation_accuracy(REFS, REFS) == 1.0
    assert exact_match(REFS, REFS) == 1.0


def test_scores_of_partly_wrong_hypotheses() -> None:
    hyps = ["an owl above a dog", "an apple to the left of a  dog ", "gibberish"]
    assert object_accuracy(hyps, REFS) == pytest.approx(1 / 5)
    assert relation_accuracy(hyps, REFS) == 0.5  # swapped pair wrong, wrong name right
    assert exact_match(hyps, REFS) == 0.0
    hyps = ["an owl above a fox", "a cat to the left of a dog", "an owl"]
    assert relation_accuracy(hyps, REFS) == 0.0  # an object moved to the other's slot
    hyps = ["a dog above an owl", "an apple above a cat", " an owl "]
    assert object_accuracy(hyps, REFS) == 1.0
    assert relation_accuracy(hyps, REFS) == 0.5
    assert exact_match(hyps, REFS) == pytest.approx(2 / 3)


def test_named_slots_are_the_object_accuracy_of_one_caption() -> None:
    assert named_slots("an owl above a dog", "a dog above an owl") == [False, False]
    assert named_slots("a dog above a fox", "a dog above an owl") == [True, False]
    assert named_slots("an owl", "an apple to the left of an owl") == [False, False]
    assert named_slots("an apple", "an apple to the left of an owl") == [True, False]
    assert named_slots("gibberish", "an owl") == [False]
    with pytest.raises(InputError, match="outside the scene grammar"):
        named_slots("a dog", "dog dog")


def test_relation_accuracy_without_pairs_is_nan_and_bad_input_raises() -> None:
    assert relation_accuracy(["an owl"], ["an owl"]) != relation_accuracy(["an owl"], ["an owl"])
    with pytest.raises(InputError, match="outside the scene grammar"):
        object_accuracy(["a dog"], ["dog dog"])
    with pytest.raises(InputError, match="1 and 2"):
        exact_match(["a dog"], REFS[:2])
