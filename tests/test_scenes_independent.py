"""Tests of the independently composited scene splits (corpora/scenes/independent.py)."""

import ast
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import multimodal_s2s.corpora.scenes.independent as independent
from multimodal_s2s.corpora.scenes.backgrounds import DEFAULT_BACKGROUND_ROOT, find_photos
from multimodal_s2s.corpora.scenes.independent import (
    BACKGROUND_PACKAGES,
    IndependentCompositor,
    background_family,
    find_backgrounds,
    package_images,
    split_backgrounds,
)
from multimodal_s2s.corpora.scenes.prepare import main
from multimodal_s2s.data.manifest import read_manifest
from multimodal_s2s.data.scene_captions import LEFT, format_caption, parse_caption

PACKAGES_INSTALLED = all(package_images(package) for package in BACKGROUND_PACKAGES)
NEEDS_PACKAGES = pytest.mark.skipif(
    not PACKAGES_INSTALLED or not DEFAULT_BACKGROUND_ROOT.is_dir(),
    reason="needs Debian's mate-backgrounds and " + ", ".join(BACKGROUND_PACKAGES),
)
RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 160, 0)


def _stamp(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
    """An opaque rectangle of ``colour`` inside a transparent 5-pixel margin."""
    image = Image.new("RGBA", (size[0] + 10, size[1] + 10), (0, 0, 0, 0))
    image.paste(Image.new("RGBA", size, (*colour, 255)), (5, 5))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


@pytest.fixture(scope="module")
def stamps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fake Tux Paint stamps: a red and a blue object and four more."""
    root = tmp_path_factory.mktemp("stamps")
    shapes = {
        "red": ((60, 40), RED),
        "blue": ((30, 70), BLUE),
        "cat": ((50, 50), (200, 200, 0)),
        "dog": ((70, 30), (0, 200, 200)),
        "owl": ((40, 60), (200, 0, 200)),
        "yak": ((50, 40), (250, 250, 250)),
    }
    for name, (size, colour) in shapes.items():
        _stamp(root / f"{name}.png", size, colour)
        (root / f"{name}.txt").write_text(f"{'An' if name == 'owl' else 'A'} {name}.\n")
    return root


@pytest.fixture(scope="module")
def backgrounds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A background folder: plain green images of four designs, one in two resolutions,
    one with a dark variant, and a KDE-style wallpaper with a preview."""
    root = tmp_path_factory.mktemp("backgrounds")
    files = {
        "lawn_640x480.jpg": (640, 480),
        "lawn_1280x960.jpg": (1280, 960),
        "field-d.png": (600, 600),
        "field-l.png": (600, 600),
        "kde/Meadow/contents/images/800x600.jpg": (800, 600),
        "kde/Meadow/contents/screenshot.jpg": (80, 60),
        "moss.webp": (700, 520),
    }
    for relative, size in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, GREEN).save(root / relative)
    return root


def _compositor(backgrounds: Path, seed: int = 0, size: int = 48) -> IndependentCompositor:
    return IndependentCompositor(size, seed, find_backgrounds(root=backgrounds))


def test_find_backgrounds_merges_resolutions_and_leaves_out_previews(backgrounds: Path) -> None:
    found = find_backgrounds(root=backgrounds)
    assert sorted(found) == ["field-d", "field-l", "kde/Meadow", "lawn", "moss"]
    assert found["lawn"].name == "lawn_1280x960.jpg"  # the smallest of shorter side >= 512
    assert found["kde/Meadow"].name == "800x600.jpg"
    assert background_family("field-d") == background_family("field-l") == "field"
    pools = split_backgrounds(sorted(found), seed=0)
    families = [{background_family(b) for b in pools[split]} for split in pools]
    assert all(families) and not families[0] & families[1]


def test_same_seed_draws_the_same_scene(stamps: Path, backgrounds: Path) -> None:
    files = (stamps / "red.png", stamps / "blue.png")
    scene = _compositor(backgrounds).render(
        "independent_test-000007", ("red", "blue"), files, "moss"
    )
    again = _compositor(backgrounds).render(
        "independent_test-000007", ("red", "blue"), files, "moss"
    )
    other = _compositor(backgrounds, seed=1).render(
        "independent_test-000007", ("red", "blue"), files, "moss"
    )
    assert scene.image.tobytes() == again.image.tobytes()
    assert scene.placements == again.placements and scene.composition == again.composition
    assert (scene.placements, scene.image.tobytes()) != (other.placements, other.image.tobytes())


def _colour_box(pixels: np.ndarray, colour: tuple[int, int, int]) -> tuple[float, float] | None:
    """Centre of the box around the pixels that are clearly ``colour`` (red or blue)."""
    channel = 0 if colour == RED else 2
    others = [c for c in range(3) if c != channel]
    mask = (pixels[..., channel] > 110) & (pixels[..., others].max(axis=-1) < 90)
    rows, cols = np.nonzero(mask)
    if not len(rows):
        return None
    return (cols.min() + cols.max() + 1) / 2, (rows.min() + rows.max() + 1) / 2


def test_captions_follow_the_grammar_and_the_drawn_positions(
    stamps: Path, backgrounds: Path
) -> None:
    """The caption parses back to itself, states the relation of the placement centres by
    the grammar's rule (``|dx| >= |dy|``: left of), and the pixels drawn agree: the object on
    top is drawn where its placement says, and the relation of the drawn objects' centres is
    the caption's whenever it is clear of the diagonal."""
    compositor = _compositor(backgrounds)
    files = (stamps / "red.png", stamps / "blue.png")
    checked = {"left": 0, "above": 0}
    for index in range(120):
        names = ("red", "blue") if index % 2 else ("blue", "red")
        ordered = files if index % 2 else files[::-1]
        scene = compositor.render(f"s-{index}", names, ordered, "lawn")
        caption = format_caption(scene.caption)
        assert parse_caption(caption) == scene.caption
        assert sorted(scene.caption.objects) == ["blue", "red"]
        centre = {n: p.centre for n, p in zip(names, scene.placements, strict=True)}
        for p in scene.placements:
            assert 0 <= p.left and p.left + p.width <= 48 and 0 <= p.top and p.top + p.height <= 48
            assert 0.2 * 48 - 1 <= max(p.width, p.height) <= 0.5 * 48 + 1
        (x1, y1), (x2, y2) = (centre[n] for n in scene.caption.objects)
        if scene.caption.relation == LEFT:
            assert abs(x2 - x1) >= abs(y2 - y1) and x1 < x2
        else:
            assert abs(y2 - y1) > abs(x2 - x1) and y1 < y2
        pixels = np.asarray(scene.image).astype(int)
        drawn = {n: _colour_box(pixels, RED if n == "red" else BLUE) for n in names}
        top = scene.composition["on_top"]
        assert drawn[top] is not None
        assert np.allclose(drawn[top], centre[top], atol=1.5)
        assert drawn[names[0]] is not None and drawn[names[1]] is not None
        (dx1, dy1), (dx2, dy2) = (drawn[n] for n in scene.caption.objects)
        if abs(abs(dx2 - dx1) - abs(dy2 - dy1)) > 4:
            relation = "left" if abs(dx2 - dx1) >= abs(dy2 - dy1) else "above"
            assert relation == scene.caption.relation
            assert (dx1 < dx2) if relation == "left" else (dy1 < dy2)
            checked[relation] += 1
    assert min(checked.values()) >= 20


def test_translucent_stamps_are_drawn_with_either_edge(stamps: Path, backgrounds: Path) -> None:
    """A stamp whose alpha is all under 128 (a glass) stays visible with hard edges too."""
    glass = stamps.parent / "glass.png"
    image = Image.new("RGBA", (50, 60), (0, 0, 0, 0))
    image.paste(Image.new("RGBA", (40, 50), (*RED, 100)), (5, 5))
    image.save(glass)
    compositor = _compositor(backgrounds)
    edges = set()
    for index in range(12):
        scene = compositor.render(
            f"g-{index}", ("glass", "blue"), (glass, stamps / "blue.png"), "moss"
        )
        edges.add(scene.composition["edges"])
        pixels = np.asarray(scene.image).astype(int)
        p = scene.placements[0]
        inside = pixels[p.top : p.top + p.height, p.left : p.left + p.width]
        assert inside[..., 0].max() > 60  # a red of alpha 100 over the green (no red)
    assert edges == {"soft", "hard"}


def test_independent_code_imports_no_drawing_code_of_the_training_compositor() -> None:
    """Of the corpus package it imports the stamp list alone (no ``render``, ``layout``,
    ``backgrounds``, ``plan``, ``prepare`` or ``stamps.load_stamp``)."""
    tree = ast.parse(Path(independent.__file__).read_text())
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module.startswith("multimodal_s2s.corpora"):
            imported += [(node.module, alias.name) for alias in node.names]
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("multimodal_s2s.corpora") for a in node.names)
    assert imported == [("multimodal_s2s.corpora.scenes.stamps", "find_objects")]


@NEEDS_PACKAGES
def test_backgrounds_come_from_sources_the_training_corpus_never_uses() -> None:
    found = find_backgrounds()
    assert {bid.split("/")[0] for bid in found} == set(BACKGROUND_PACKAGES)
    assert len({background_family(bid) for bid in found}) >= 40
    training = find_photos(DEFAULT_BACKGROUND_ROOT)
    training_files = {p.resolve() for p in DEFAULT_BACKGROUND_ROOT.rglob("*") if p.is_file()}
    ours = {p.resolve() for p in found.values()}
    assert not ours & training_files
    assert not any(p.is_relative_to(DEFAULT_BACKGROUND_ROOT.resolve()) for p in ours)

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert not {digest(p) for p in ours} & {digest(p) for p in training.values()}
    assert not any(bid.startswith(("photo/", "texture/")) for bid in found)


@NEEDS_PACKAGES
def test_scenes_on_the_debian_backgrounds(stamps: Path) -> None:
    found = find_backgrounds()
    compositor = IndependentCompositor(64, 0, found)
    files = (stamps / "red.png", stamps / "blue.png")
    for background in ("plasma-workspace-wallpapers/Path", "gnome-backgrounds/wood-l"):
        scene = compositor.render("independent_dev-000000", ("red", "blue"), files, background)
        assert scene.image.size == (64, 64) and scene.image.mode == "RGB"


def test_prepare_writes_independent_splits_on_the_dev_and_test_pairs(
    stamps: Path, backgrounds: Path, tmp_path: Path
) -> None:
    common = ["--image-size", "48", "--num-train", "12", "--num-dev", "3", "--num-test", "3"]
    common += ["--stamp-root", str(stamps), "--background-root", str(backgrounds)]
    common += ["--num-textures", "6", "--jobs", "1"]
    plain, both = tmp_path / "plain", tmp_path / "both"
    main([str(plain), *common])
    extra = ["--num-independent-dev", "5", "--num-independent-test", "7"]
    main([str(both), *common, *extra, "--independent-background-root", str(backgrounds)])
    for name in ("corpus.json", "train.jsonl"):  # the corpus itself does not change
        assert (plain / name).read_text() == (both / name).read_text().replace(
            str(both), str(plain)
        )
    pools = split_backgrounds(sorted(find_backgrounds(root=backgrounds)), seed=0)
    for split, source, count in (("independent_dev", "dev", 5), ("independent_test", "test", 7)):
        rows = read_manifest(both / f"{split}.jsonl", "image", "caption")
        assert [row["id"] for row in rows] == [f"{split}-{i:06d}" for i in range(count)]
        pairs = {
            frozenset(r["objects"])
            for r in read_manifest(both / f"{source}.jsonl", "image", "caption")
        }
        assert {frozenset(row["objects"]) for row in rows} <= pairs
        assert {row["background"] for row in rows} <= set(pools[split])
        for row in rows:
            assert parse_caption(row["caption"]).objects == row["objects"]
            assert len(row["sizes"]) == len(row["centres"]) == 2
            for (x, y), (width, height) in zip(row["centres"], row["sizes"], strict=True):
                assert 0 <= x - width / 2 and x + width / 2 <= 48  # the box inside the image
                assert 0 <= y - height / 2 and y + height / 2 <= 48
                assert 0.2 * 48 - 1 <= max(width, height) <= 0.5 * 48 + 1
            with Image.open(row["image"]) as image:
                assert image.size == (48, 48) and image.format == "JPEG"
    marker = both / "independent.json"
    before = marker.stat().st_mtime_ns
    main([str(both), *common, *extra, "--independent-background-root", str(backgrounds)])
    assert marker.stat().st_mtime_ns == before  # cached
    settings = json.loads(marker.read_text())["settings"]
    assert settings["counts"] == {"independent_dev": 5, "independent_test": 7}
