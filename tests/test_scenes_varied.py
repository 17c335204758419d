"""Tests of the scene corpus' varied composition (corpora/scenes/varied.py), its background
sources (backgrounds.find_package_photos, the varied texture kinds), ``prepare
--composition varied`` and ``--composition mixed``."""

import ast
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import multimodal_s2s.corpora.scenes.prepare as prepare
import multimodal_s2s.corpora.scenes.varied as varied
from multimodal_s2s.corpora.scenes.backgrounds import (
    DEFAULT_BACKGROUND_ROOT,
    PACKAGE_BACKGROUNDS,
    VARIED_TEXTURE_KINDS,
    family,
    find_package_photos,
    find_photos,
    package_files,
    render_texture,
)
from multimodal_s2s.corpora.scenes.independent import (
    BACKGROUND_PACKAGES,
    package_images,
    prepare_independent,
)
from multimodal_s2s.corpora.scenes.plan import SceneSpec
from multimodal_s2s.corpora.scenes.prepare import main, prepare_corpus, write_mixed_dev
from multimodal_s2s.corpora.scenes.varied import MIN_VISIBLE_FRACTION, VariedRenderer
from multimodal_s2s.data.manifest import read_manifest
from multimodal_s2s.data.scene_captions import LEFT, format_caption, parse_caption
from multimodal_s2s.errors import InputError

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 160, 0)
TRAINING_PACKAGES_INSTALLED = all(package_files(package) for package in PACKAGE_BACKGROUNDS)
INDEPENDENT_PACKAGES_INSTALLED = all(package_images(package) for package in BACKGROUND_PACKAGES)


def _stamp(path: Path, size: tuple[int, int], colour: tuple[int, ...]) -> None:
    """A rectangle of ``colour`` (RGB or RGBA) inside a transparent 5-pixel margin."""
    image = Image.new("RGBA", (size[0] + 10, size[1] + 10), (0, 0, 0, 0))
    fill = colour if len(colour) == 4 else (*colour, 255)
    image.paste(Image.new("RGBA", size, fill), (5, 5))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Fake stamps (a red and a blue rectangle, a translucent glass, four more) and a folder
    of plain green backgrounds."""
    root = tmp_path_factory.mktemp("varied")
    stamps, backgrounds = root / "stamps", root / "backgrounds"
    shapes = {
        "red": ((60, 40), RED),
        "blue": ((30, 70), BLUE),
        "glass": ((40, 50), (*RED, 100)),
        "cat": ((50, 50), (200, 200, 0)),
        "dog": ((70, 30), (0, 200, 200)),
        "owl": ((40, 60), (200, 0, 200)),
        "yak": ((50, 40), (250, 250, 250)),
    }
    for name, (size, colour) in shapes.items():
        _stamp(stamps / f"{name}.png", size, colour)
        (stamps / f"{name}.txt").write_text(f"{'An' if name == 'owl' else 'A'} {name}.\n")
    for name, size in {
        "lawn.jpg": (200, 150),
        "field.png": (160, 160),
        "moss.jpg": (90, 120),
    }.items():
        backgrounds.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, GREEN).save(backgrounds / name)
    return stamps, backgrounds


def _renderer(backgrounds: Path, seed: int = 0, size: int = 48) -> VariedRenderer:
    return VariedRenderer(size, seed, find_photos(backgrounds))


def _spec(stamps: Path, index: int, names: tuple[str, ...] = ("red", "blue")) -> SceneSpec:
    return SceneSpec(
        f"train-{index:06d}",
        names,
        tuple(stamps / f"{name}.png" for name in names),
        "photo/lawn",
    )


def _mask(scene, index: int) -> np.ndarray:
    """Object ``index``'s alpha (0-1) on an image-sized canvas."""
    canvas = np.zeros(scene.image.size[::-1], np.float32)
    box = scene.boxes[index]
    alpha = np.asarray(scene.stamps[index].getchannel("A"), np.float32) / 255
    canvas[box.top : box.bottom, box.left : box.right] = alpha
    return canvas


def test_same_seed_draws_the_same_scene(inputs: tuple[Path, Path]) -> None:
    stamps, backgrounds = inputs
    spec = _spec(stamps, 7)
    scene = _renderer(backgrounds).render(spec)
    again = _renderer(backgrounds).render(spec)
    other = _renderer(backgrounds, seed=1).render(spec)
    assert scene.image.tobytes() == again.image.tobytes()
    assert scene.boxes == again.boxes and scene.composition == again.composition
    assert scene.image.tobytes() != other.image.tobytes()


def test_captions_follow_the_drawn_positions(inputs: tuple[Path, Path]) -> None:
    """The caption parses back to itself and states the relation of the box centres by the
    grammar's rule; each box is the one around its object's drawn pixels; and the pixels of
    the object drawn on top lie where its box says."""
    stamps, backgrounds = inputs
    renderer = _renderer(backgrounds)
    checked = {"left": 0, "above": 0}
    for index in range(150):
        names = ("red", "blue") if index % 2 else ("blue", "red")
        scene = renderer.render(_spec(stamps, index, names))
        assert scene.image.size == (48, 48) and scene.image.mode == "RGB"
        assert parse_caption(format_caption(scene.caption)) == scene.caption
        assert sorted(scene.caption.objects) == ["blue", "red"]
        for box, stamp in zip(scene.boxes, scene.stamps, strict=True):
            assert 0 <= box.left and box.right <= 48 and 0 <= box.top and box.bottom <= 48
            assert stamp.size == (box.right - box.left, box.bottom - box.top)
            assert stamp.getchannel("A").getbbox() == (0, 0, *stamp.size)  # tight box
        centre = {name: box.centre for name, box in zip(names, scene.boxes, strict=True)}
        (x1, y1), (x2, y2) = (centre[name] for name in scene.caption.objects)
        if scene.caption.relation == LEFT:
            assert abs(x2 - x1) >= abs(y2 - y1) and x1 < x2
        else:
            assert abs(y2 - y1) > abs(x2 - x1) and y1 < y2
        checked[scene.caption.relation] += 1
        top = scene.composition["on_top"]
        pixels = np.asarray(scene.image).astype(int)
        channel = 0 if top == "red" else 2
        others = pixels[..., [c for c in range(3) if c != channel]].max(axis=-1)
        rows, cols = np.nonzero(pixels[..., channel] - others > 40)
        drawn = ((cols.min() + cols.max() + 1) / 2, (rows.min() + rows.max() + 1) / 2)
        assert np.allclose(drawn, centre[top], atol=2.5), (index, scene.composition)
    assert min(checked.values()) >= 30


def test_occlusion_leaves_each_object_mostly_visible(inputs: tuple[Path, Path]) -> None:
    """Objects overlap in some scenes, but the upper one never hides more than
    ``1 - MIN_VISIBLE_FRACTION`` of the lower one's alpha."""
    stamps, backgrounds = inputs
    renderer = _renderer(backgrounds, size=32)  # small images: many overlaps
    overlapping = 0
    upper_first = 0
    for index in range(150):
        scene = renderer.render(_spec(stamps, index, ("cat", "dog")))
        upper = ("cat", "dog").index(scene.composition["on_top"])
        upper_first += upper == 0
        lower_mask, upper_mask = _mask(scene, 1 - upper), _mask(scene, upper)
        visible = (lower_mask * (1 - upper_mask)).sum() / lower_mask.sum()
        assert visible >= MIN_VISIBLE_FRACTION - 1e-6
        overlapping += visible < 0.999
    assert overlapping >= 15
    assert 40 <= upper_first <= 110  # either object may be drawn on top


def test_every_choice_varies(inputs: tuple[Path, Path]) -> None:
    """Across scenes the composition takes each of its options: edges, rotation, outline,
    shadow, blur, noise, JPEG quality; object sizes span 16-62% of the side."""
    stamps, backgrounds = inputs
    renderer = _renderer(backgrounds, size=64)
    seen: dict[str, set] = {"edges": set(), "outline": set(), "shadow": set(), "rotated": set()}
    sides, qualities, noise, blur = [], [], [], []
    for index in range(200):
        scene = renderer.render(_spec(stamps, index, ("yak",)))
        composition = scene.composition
        (detail,) = composition["objects"]
        seen["edges"].add(detail["edges"])
        seen["outline"].add(detail["outline"])
        seen["rotated"].add(detail["rotation"] != 0)
        seen["shadow"].add(composition["shadow"])
        sides.append(max(detail["size"]) / 64)
        qualities.append(composition["quality"])
        noise.append(composition["noise"] > 0)
        blur.append(composition["blur"] > 0)
    assert seen == {
        "edges": {"own", "soft", "hard"},
        "outline": {True, False},
        "shadow": {True, False},
        "rotated": {True, False},
    }
    assert min(sides) < 0.22 and max(sides) > 0.55  # rotation and outline may add a little
    assert min(qualities) < 50 and max(qualities) > 85
    assert 0.3 < np.mean(noise) < 0.7 and 0.05 < np.mean(blur) < 0.4


def test_a_translucent_stamp_stays_visible(inputs: tuple[Path, Path]) -> None:
    stamps, backgrounds = inputs
    renderer = _renderer(backgrounds)
    for index in range(30):
        scene = renderer.render(_spec(stamps, index, ("glass",)))
        assert scene.stamps[0].getchannel("A").getbbox() is not None
        assert max(scene.stamps[0].size) >= 0.1 * 48


@pytest.mark.parametrize("kind", VARIED_TEXTURE_KINDS)
def test_every_texture_kind_renders(kind: str) -> None:
    texture = render_texture(f"texture/{kind}-3", 32, seed=5)
    assert texture.size == (64, 64) and texture.mode == "RGB"
    assert texture.tobytes() == render_texture(f"texture/{kind}-3", 32, seed=5).tobytes()
    assert len(np.unique(np.asarray(texture).reshape(-1, 3), axis=0)) > 1


def test_varied_code_imports_nothing_of_the_independent_splits() -> None:
    tree = ast.parse(Path(varied.__file__).read_text())
    modules = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    modules += [
        a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names
    ]
    assert not any("independent" in module for module in modules)


def test_find_package_photos_selects_merges_and_groups(tmp_path: Path) -> None:
    """Package images chosen by pattern (exclusions left out), resolutions merged into one
    design, colour variants and numbered textures grouped into one family."""
    files = {
        "pkg-a": [
            "share/walls/Sea_1280x720.jpg",
            "share/walls/Sea_640x360.jpg",
            "share/walls/waves-blue.png",
            "share/walls/waves-dark.png",
            "share/walls/butterfly.png",
            "share/icons/logo.png",
        ],
        "pkg-b": [
            "share/tex/mars001.png",
            "share/tex/mars002.png",
            "share/tex/theme-x/grub-16x9.png",
        ],
    }
    info = tmp_path / "info"
    info.mkdir()
    for package, relatives in files.items():
        paths = [tmp_path / relative for relative in relatives]
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            size = (1280, 720) if "1280" in path.name else (640, 360)
            Image.new("RGB", size, GREEN).save(path)
        (info / f"{package}.list").write_text("\n".join(map(str, paths)) + "\n")
    packages = {
        "pkg-a": ((f"{tmp_path}/share/walls/*",), ("*/butterfly.*",)),
        "pkg-b": ((f"{tmp_path}/share/tex/*",), ()),
    }
    found = find_package_photos(packages, dpkg_info=info)
    assert sorted(found) == [
        "package/pkg-a/Sea",
        "package/pkg-a/waves-blue",
        "package/pkg-a/waves-dark",
        "package/pkg-b/mars001",
        "package/pkg-b/mars002",
        "package/pkg-b/theme-x/grub",
    ]
    assert found["package/pkg-a/Sea"].name == "Sea_1280x720.jpg"  # shorter side >= 512
    assert family("package/pkg-a/waves-blue") == family("package/pkg-a/waves-dark")
    assert family("package/pkg-b/mars001") == family("package/pkg-b/mars002")
    assert family("package/pkg-a/Sea") != family("package/pkg-a/waves-blue")
    with pytest.raises(InputError, match="apt-get install pkg-c"):
        find_package_photos({**packages, "pkg-c": (("*",), ())}, dpkg_info=info)


@pytest.mark.skipif(
    not (TRAINING_PACKAGES_INSTALLED and INDEPENDENT_PACKAGES_INSTALLED)
    or not DEFAULT_BACKGROUND_ROOT.is_dir(),
    reason="needs the Debian packages of system_packages.txt",
)
def test_training_backgrounds_are_disjoint_from_the_independent_sources() -> None:
    """No package, file or file content (SHA-256) that a training background comes from is
    one the independently composited splits draw on (any image of their packages)."""
    assert not set(PACKAGE_BACKGROUNDS) & set(BACKGROUND_PACKAGES)
    training = find_photos(DEFAULT_BACKGROUND_ROOT) | find_package_photos()
    assert len({family(bid) for bid in training if bid.startswith("package/")}) >= 80
    independent = {p.resolve() for package in BACKGROUND_PACKAGES for p in package_images(package)}
    ours = {p.resolve() for p in training.values()}
    assert not ours & independent

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert not {digest(p) for p in ours} & {digest(p) for p in independent}


def test_prepare_varied_corpus_is_deterministic_and_keeps_to_its_folder(
    inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stamps, backgrounds = inputs
    kwargs = {
        "stamp_root": stamps,
        "background_root": backgrounds,
        "image_size": 32,
        "num_train": 20,
        "num_dev": 3,
        "num_test": 3,
        "num_textures": 13,
        "composition": "varied",
        "background_packages": {},
        "jobs": 1,
    }
    first = prepare_corpus(tmp_path / "first", seed=2, **kwargs)
    second = prepare_corpus(tmp_path / "second", seed=2, **{**kwargs, "jobs": 2})
    for split, path in first.items():
        rows = read_manifest(path, "image", "caption")
        again = read_manifest(second[split], "image", "caption")
        for row, other in zip(rows, again, strict=True):
            assert Path(row.pop("image")).read_bytes() == Path(other.pop("image")).read_bytes()
            assert row == other
            assert parse_caption(row["caption"]).objects == row["objects"]
            assert set(row["composition"]) >= {"on_top", "quality", "objects", "shadow"}
    settings = json.loads((tmp_path / "first" / "corpus.json").read_text())["settings"]
    assert settings["composition"] == "varied" and settings["num_textures"] == 13
    assert settings["composition_parameters"]["shadow"] == varied.SHADOW_PROBABILITY
    marker = tmp_path / "first" / "corpus.json"
    before = marker.stat().st_mtime_ns
    assert prepare_corpus(tmp_path / "first", seed=2, **kwargs) == first  # cached
    assert marker.stat().st_mtime_ns == before
    monkeypatch.setattr(varied, "SHADOW_PROBABILITY", 0.9)  # another setting draws again
    prepare_corpus(tmp_path / "first", seed=2, **kwargs)
    assert json.loads(marker.read_text())["settings"]["composition_parameters"]["shadow"] == 0.9
    with pytest.raises(InputError, match="holds a varied corpus"):
        prepare_corpus(tmp_path / "first", seed=2, **{**kwargs, "composition": "classic"})


def test_prepare_writes_the_mixed_dev_set(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    stamps, backgrounds = inputs
    out = tmp_path / "corpus"
    main(
        [
            str(out),
            *("--image-size", "32", "--num-train", "14", "--num-dev", "3", "--num-test", "3"),
            *("--stamp-root", str(stamps), "--background-root", str(backgrounds)),
            *("--num-textures", "5", "--jobs", "1"),
            *("--num-independent-dev", "4", "--num-independent-test", "2"),
            *("--independent-background-root", str(backgrounds)),
        ]
    )
    mixed = (out / "dev_mixed.jsonl").read_text().splitlines()
    dev = (out / "dev.jsonl").read_text().splitlines()
    independent_dev = (out / "independent_dev.jsonl").read_text().splitlines()
    assert mixed == dev + independent_dev and len(mixed) == 7


def _rows(path: Path) -> list[tuple[bytes, dict]]:
    """Each manifest row's image file bytes and the row without its image path."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [(Path(row.pop("image")).read_bytes(), row) for row in rows]


def test_prepare_mixed_corpus_draws_half_the_training_scenes_each_way(
    inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training scenes 0-3 of a mixed corpus are the classic corpus' (same settings: no
    package photos), 4-7 the varied corpus', byte for byte; dev and test are the classic
    corpus'; dev_mixed.jsonl is written; a mixed corpus and another never share a folder."""
    stamps, backgrounds = inputs
    package_photos = {f"package/fake/{name}": backgrounds / "moss.jpg" for name in ("a", "b")}
    monkeypatch.setattr(prepare, "find_package_photos", lambda packages: package_photos)
    sizes = {"image_size": 32, "num_train": 8, "num_dev": 2, "num_test": 2}
    kwargs = {"stamp_root": stamps, "background_root": backgrounds, "jobs": 1, **sizes}
    parts = {
        composition: prepare_corpus(tmp_path / composition, composition=composition, **kwargs)
        for composition in ("classic", "varied", "mixed")
    }
    out = tmp_path / "mixed"
    independent = {"independent_dev": 2, "independent_test": 1}
    manifests = parts["mixed"] | prepare_independent(
        out, parts["mixed"], independent, 0, 32, stamp_root=stamps, background_root=backgrounds
    )
    write_mixed_dev(out, manifests)
    classic, varied_rows = _rows(parts["classic"]["train"]), _rows(parts["varied"]["train"])
    mixed = _rows(out / "train.jsonl")
    assert mixed[:4] == classic[:4] and mixed[4:] == varied_rows[4:]
    assert "composition" in mixed[4][1] and "composition" not in mixed[3][1]
    assert [image for image, _ in classic[4:]] != [image for image, _ in varied_rows[4:]]
    for split in ("dev", "test"):
        assert _rows(out / f"{split}.jsonl") == _rows(parts["classic"][split])
    lines = {
        name: (out / f"{name}.jsonl").read_text().splitlines()
        for name in ("dev", "independent_dev", "dev_mixed")
    }
    assert lines["dev_mixed"] == lines["dev"] + lines["independent_dev"]
    assert len(lines["dev_mixed"]) == 4
    settings = json.loads((out / "corpus.json").read_text())["settings"]
    assert settings["composition"] == "mixed" and settings["varied_from"] == 4
    assert settings["num_textures"] == {"classic": 60, "varied": 156}
    assert settings["composition_parameters"] == varied.parameters()
    with pytest.raises(InputError, match="holds a classic corpus"):
        prepare_corpus(tmp_path / "classic", composition="mixed", **kwargs)
    with pytest.raises(InputError, match="holds a mixed corpus"):
        prepare_corpus(out, composition="varied", **kwargs)
