"""Independently composited scene splits: the corpus' grammar and stamps, drawn another way.

A model trained on the scene corpus is tested on scenes its own compositor drew. The
splits written here (``independent_dev``, ``independent_test``) measure how much of its
score is the compositor's: they share with the corpus only the stamp list
(:func:`.stamps.find_objects`), the caption grammar (``data/scene_captions.py``: the same
objects, the relation decided by the same rule on the centres of the boxes around the
objects as drawn, the same caption text) and the object pairs of the corpus' dev and test
scenes (so that no pair occurs in training). Nothing of the corpus' drawing code
(``render``, ``layout``, ``backgrounds``, ``plan``) is used; every choice differs:

======================  ===============================  ====================================
                        corpus (``render``)              independent (this module)
======================  ===============================  ====================================
backgrounds             ``mate-backgrounds`` photos,     wallpapers of ``plasma-workspace-
                        generated textures               wallpapers``, ``gnome-backgrounds``,
                                                         ``ukui-wallpapers``; no textures
background view         square crop of 25-100% of the    square crop of 35-100%, never
                        shorter side, mirrored half      mirrored, blurred in 30% of scenes
                        the time, bicubic
object size             longer side uniform in 25-60%    longer side log-uniform in 20-50%
                        of the image side, Lanczos from  of the image side, box filter from
                        a thumbnail                      the full-size stamp
placement               uniform boxes, no box covers     first centre uniform, the second at
                        the other's centre               a uniform angle and 25-75% of the
                                                         side away; the object drawn over
                                                         the other leaves >= 60% of its
                                                         pixels visible
edges                   the stamp's own alpha            feathered (the alpha times the
                                                         blurred shape) in 60% of scenes,
                                                         else hard (alpha under 32 cut, 128
                                                         and up opaque)
shadow                  none                             drop shadow in half the scenes
                                                         (one light direction per scene)
lighting                none (colour jitter in           brightness and contrast 0.75-1.25,
                        training only)                   colour temperature, sensor noise in
                                                         half the scenes
file                    JPEG quality 95, 4:4:4           JPEG quality 90, 4:2:0
======================  ===============================  ====================================

Build them with ``python -m multimodal_s2s.corpora.scenes.prepare OUT_DIR
--num-independent-dev N --num-independent-test M``: ``OUT_DIR/independent_<dev|test>.jsonl``,
images under ``OUT_DIR/independent_images/``. Their rows add, in caption order, each
object's ``centres`` and ``sizes`` (its drawn box, ``[width, height]`` in pixels), and the
scene's random choices (``composition``). The background families are split between
the two (about a third to dev), so dev choices cannot be fitted to test's backgrounds.
"""

import hashlib
import json
import math
import random
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFilter

from multimodal_s2s.atomic_file import atomic_write
from multimodal_s2s.corpora.scenes.stamps import find_objects
from multimodal_s2s.data.manifest import read_manifest, write_manifest
from multimodal_s2s.data.scene_captions import (
    ParsedCaption,
    PlacedObject,
    caption_structure,
    format_caption,
)
from multimodal_s2s.errors import InputError

# 2: soft edges keep a translucent stamp's alpha; hard edges keep 32-127. 3: rows add "sizes"
VERSION = 3
INDEPENDENT_SPLITS = ("independent_dev", "independent_test")
# The corpus split whose object pairs each independent split draws.
PAIRS_FROM = {"independent_dev": "dev", "independent_test": "test"}
BACKGROUND_PACKAGES = ("plasma-workspace-wallpapers", "gnome-backgrounds", "ukui-wallpapers")
DPKG_INFO = Path("/var/lib/dpkg/info")
DEV_BACKGROUND_FRACTION = 1 / 3
SIDE_FRACTIONS = (0.2, 0.5)
DISTANCE_FRACTIONS = (0.25, 0.75)
MIN_VISIBLE_FRACTION = 0.6
JPEG_OPTIONS = {"quality": 90, "subsampling": 2}  # 2: 4:2:0 chroma

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
_RESOLUTION = re.compile(r"[-_]?\d+x\d+(?:[-_]portrait)?$", re.IGNORECASE)
_VARIANT = re.compile(r"[-_](?:d|l|dark|light)$", re.IGNORECASE)
_MIN_SOURCE_SIDE = 512
_SOURCE_SCALE = 3
_CROP_FRACTIONS = (0.35, 1.0)
_ATTEMPTS = 2000
_MARKER = "independent.json"


class Placement(NamedTuple):
    """Where a stamp is drawn: the top-left pixel of its box and the box's size."""

    left: int
    top: int
    width: int
    height: int

    @property
    def centre(self) -> tuple[float, float]:
        return self.left + self.width / 2, self.top + self.height / 2


class IndependentScene(NamedTuple):
    """A drawn scene: the RGB image, each object's placement (in the order given to
    :meth:`IndependentCompositor.render`), its caption parts and the random choices made."""

    image: Image.Image
    placements: list[Placement]
    caption: ParsedCaption
    composition: dict


def package_images(package: str, dpkg_info: Path = DPKG_INFO) -> list[Path]:
    """The image files (JPEG, PNG, WebP) an installed Debian package put on disk, sorted."""
    for name in (f"{package}.list", f"{package}:all.list"):
        listing = dpkg_info / name
        if listing.is_file():
            paths = [Path(line) for line in listing.read_text().splitlines()]
            return sorted(p for p in paths if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
    return []


def find_backgrounds(
    packages: tuple[str, ...] = BACKGROUND_PACKAGES,
    root: Path | None = None,
    dpkg_info: Path = DPKG_INFO,
) -> dict[str, Path]:
    """Map each background id to one image file.

    By default the images of the Debian ``packages`` (ids ``<package>/<design>``; all must be
    installed); with ``root``, every image under that folder (ids ``<relative folder>/<design>``).
    A design is a file name without its resolution (``1920x1080``), or for a KDE wallpaper
    (``<Design>/contents/images/<W>x<H>.jpg``) the folder name (``<Design>-dark`` for
    ``images_dark``); of several files of a design the smallest whose shorter side is at
    least 512 pixels is kept (else the largest). Previews (``screenshot.*``) are left out.
    """
    files: dict[str, list[Path]] = {}
    if root is not None:
        if not root.is_dir():
            raise InputError(f"independent background folder not found: {root}")
        found = [p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES]
        for path in sorted(found):
            background_id = _background_key(path.relative_to(root))
            if background_id is not None:
                files.setdefault(background_id, []).append(path)
    else:
        missing = [package for package in packages if not package_images(package, dpkg_info)]
        if missing:
            raise InputError(
                "the independent scene splits draw on Debian packages that are not installed: "
                f"apt-get install {' '.join(missing)}"
            )
        for package in packages:
            for path in package_images(package, dpkg_info):
                key = _background_key(path)
                if key is not None:
                    files.setdefault(f"{package}/{key.rsplit('/', 1)[-1]}", []).append(path)
    if not files:
        raise InputError(f"no background images found in {root}")
    return {bid: _pick_resolution(paths) for bid, paths in sorted(files.items())}


def background_family(background_id: str) -> str:
    """The design a background belongs to: its id without a dark/light variant suffix."""
    return _VARIANT.sub("", background_id)


def split_backgrounds(background_ids: list[str], seed: int) -> dict[str, list[str]]:
    """``{independent split: ids}``: about a third of the families to dev, the rest to test."""
    families = sorted({background_family(bid) for bid in background_ids})
    if len(families) < 2:
        raise InputError("the independent splits need backgrounds of at least two designs")
    random.Random(f"{seed}/independent/backgrounds").shuffle(families)
    num_dev = max(1, round(DEV_BACKGROUND_FRACTION * len(families)))
    dev = set(families[:num_dev])
    return {
        "independent_dev": [bid for bid in background_ids if background_family(bid) in dev],
        "independent_test": [bid for bid in background_ids if background_family(bid) not in dev],
    }


class IndependentCompositor:
    """Draws scenes of side ``image_size``; a scene's randomness comes from ``seed`` and its id.

    Stamps and backgrounds are read once and kept.
    """

    def __init__(self, image_size: int, seed: int, background_files: dict[str, Path]) -> None:
        if image_size < 16:
            raise InputError(f"independent scenes need image_size >= 16, got {image_size}")
        self.image_size = image_size
        self.seed = seed
        self.background_files = background_files
        self._stamps: dict[Path, Image.Image] = {}
        self._backgrounds: dict[str, Image.Image] = {}

    def render(
        self, scene_id: str, names: tuple[str, ...], stamps: tuple[Path, ...], background: str
    ) -> IndependentScene:
        """Draw one or two named objects (``stamps`` their files) over ``background``."""
        if not 1 <= len(names) <= 2 or len(names) != len(stamps):
            raise InputError(f"a scene has 1 or 2 objects with a stamp each, got {names}")
        rng = random.Random(f"{self.seed}/independent/{scene_id}")
        edges = "soft" if rng.random() < 0.6 else "hard"
        objects = [self._sized_stamp(path, edges, rng) for path in stamps]
        order = list(range(len(objects)))  # drawing order: the last is on top
        rng.shuffle(order)
        placements = self._place([objects[i] for i in order], rng)
        placements = [placements[order.index(i)] for i in range(len(objects))]
        image, composition = self._background_view(background, rng)
        composition["edges"] = edges
        composition["on_top"] = names[order[-1]]
        shadow = self._shadow_settings(rng)
        composition["shadow"] = shadow is not None
        for i in order:
            if shadow is not None:
                _draw_shadow(image, objects[i], placements[i], shadow)
            image.paste(objects[i], placements[i][:2], objects[i])
        image = _light(image, rng, composition)
        placed = [PlacedObject(name, *p.centre) for name, p in zip(names, placements, strict=True)]
        return IndependentScene(image, placements, caption_structure(placed), composition)

    def _sized_stamp(self, path: Path, edges: str, rng: random.Random) -> Image.Image:
        """The stamp at a random size (longer side log-uniform in ``SIDE_FRACTIONS`` of the
        image), its alpha feathered (``soft``: times the blur of the stamp's shape) or
        ``hard`` (under 32 cut, 128 and up opaque)."""
        stamp = self._stamp(path)
        low, high = (math.log(f * self.image_size) for f in SIDE_FRACTIONS)
        longer = max(2, round(math.exp(rng.uniform(low, high))))
        scale = longer / max(stamp.size)
        width = max(1, min(longer, round(stamp.width * scale)))
        height = max(1, min(longer, round(stamp.height * scale)))
        sized = stamp.resize((width, height), Image.Resampling.BOX)
        alpha = sized.getchannel("A")
        if edges == "soft":  # the alpha times the blur of the shape: 1 inside, fading out
            shape = alpha.point(lambda value: 255 if value else 0)
            blurred = shape.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
            feather = np.asarray(blurred, np.float32) / 255
            edged = Image.fromarray((np.asarray(alpha, np.float32) * feather).astype(np.uint8))
        else:  # faint fringes dropped, the rest opaque; translucent bodies (glass) kept
            edged = alpha.point(lambda value: 0 if value < 32 else 255 if value >= 128 else value)
        if edged.getbbox() is not None:  # else (a thin stamp made small) the alpha as resized
            sized.putalpha(edged)
        if sized.getchannel("A").getbbox() is None:
            raise InputError(f"stamp {path} vanishes at {width} x {height} pixels")
        return sized

    def _place(self, objects: list[Image.Image], rng: random.Random) -> list[Placement]:
        """Placements in drawing order: the first anywhere, the second at a random angle
        and distance from it, each object keeping ``MIN_VISIBLE_FRACTION`` of its pixels."""
        size = self.image_size
        first = objects[0]
        for _ in range(_ATTEMPTS):
            placements = [
                Placement(
                    rng.randint(0, size - first.width),
                    rng.randint(0, size - first.height),
                    first.width,
                    first.height,
                )
            ]
            if len(objects) == 1:
                return placements
            second = objects[1]
            angle = rng.uniform(0, 2 * math.pi)
            distance = rng.uniform(*DISTANCE_FRACTIONS) * size
            x, y = placements[0].centre
            left = round(x + distance * math.cos(angle) - second.width / 2)
            top = round(y + distance * math.sin(angle) - second.height / 2)
            if not (0 <= left <= size - second.width and 0 <= top <= size - second.height):
                continue
            placements.append(Placement(left, top, second.width, second.height))
            if placements[0].centre == placements[1].centre:
                continue
            if _visible_fraction(objects, placements, size) >= MIN_VISIBLE_FRACTION:
                return placements
        raise InputError(f"cannot place objects of sizes {[o.size for o in objects]}")

    def _background_view(self, background: str, rng: random.Random) -> tuple[Image.Image, dict]:
        """A square crop of 35-100% of the source's shorter side, resized (bilinear), and
        blurred in 30% of scenes."""
        source = self._background(background)
        shorter = min(source.size)
        side = max(1, round(rng.uniform(*_CROP_FRACTIONS) * shorter))
        left = rng.randint(0, source.width - side)
        top = rng.randint(0, source.height - side)
        view = source.crop((left, top, left + side, top + side))
        view = view.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        blur = rng.uniform(0.4, 1.2) if rng.random() < 0.3 else 0.0
        if blur:
            view = view.filter(ImageFilter.GaussianBlur(blur))
        return view, {"crop": round(side / shorter, 3), "blur": round(blur, 3)}

    def _shadow_settings(self, rng: random.Random) -> dict | None:
        if rng.random() >= 0.5:
            return None
        angle = rng.uniform(0, 2 * math.pi)
        length = rng.uniform(0.03, 0.08) * self.image_size
        return {
            "offset": (round(length * math.cos(angle)), round(length * math.sin(angle))),
            "blur": rng.uniform(0.8, 2.0),
            "opacity": rng.uniform(0.3, 0.6),
        }

    def _stamp(self, path: Path) -> Image.Image:
        """The stamp file as RGBA, cropped to the box around its visible pixels."""
        if path not in self._stamps:
            try:
                with Image.open(path) as image:
                    stamp = image.convert("RGBA")
            except OSError as error:
                raise InputError(f"cannot read stamp image {path}: {error}") from None
            box = stamp.getchannel("A").getbbox()
            if box is None:
                raise InputError(f"stamp image is fully transparent: {path}")
            self._stamps[path] = stamp.crop(box)
        return self._stamps[path]

    def _background(self, background: str) -> Image.Image:
        """The background file as RGB, its shorter side cut to 3 x image_size (box filter)."""
        if background not in self._backgrounds:
            path = self.background_files[background]
            target = _SOURCE_SCALE * self.image_size
            try:
                with Image.open(path) as image:
                    image.draft("RGB", (target, target))
                    source = image.convert("RGB")
            except OSError as error:
                raise InputError(f"cannot read background image {path}: {error}") from None
            if min(source.size) > target:
                scale = target / min(source.size)
                size = (round(source.width * scale), round(source.height * scale))
                source = source.resize(size, Image.Resampling.BOX)
            self._backgrounds[background] = source
        return self._backgrounds[background]


def plan_independent(
    pairs: list[tuple[str, str]],
    objects: dict[str, list[Path]],
    backgrounds: list[str],
    count: int,
    split: str,
    seed: int,
) -> list[tuple[str, tuple[str, str], tuple[Path, Path], str]]:
    """``count`` scenes ``(id, names, stamps, background)``: the pairs in turn, each in a
    random order, a random stamp of each object, a random background of ``backgrounds``."""
    if not pairs or not backgrounds:
        raise InputError(f"{split}: need object pairs and backgrounds to draw scenes")
    unknown = sorted({name for pair in pairs for name in pair} - set(objects))
    if unknown:
        raise InputError(f"{split}: objects not in the stamp list: {unknown[:5]}")
    rng = random.Random(f"{seed}/independent/{split}/plan")
    scenes = []
    for index in range(count):
        names = tuple(rng.sample(pairs[index % len(pairs)], 2))
        stamps = tuple(rng.choice(objects[name]) for name in names)
        scenes.append((f"{split}-{index:06d}", names, stamps, rng.choice(backgrounds)))
    return scenes


def prepare_independent(
    out_dir: Path,
    corpus_manifests: dict[str, Path],
    counts: dict[str, int],
    seed: int,
    image_size: int,
    *,
    stamp_root: Path,
    background_root: Path | None = None,
    progress: bool = False,
) -> dict[str, Path]:
    """Write (or find cached) the independent splits with a non-zero count in ``counts``.

    Their object pairs are those of ``corpus_manifests["dev"]`` and ``["test"]``
    (:data:`PAIRS_FROM`). Returns ``{split: manifest path}``.
    """
    counts = {split: counts.get(split, 0) for split in INDEPENDENT_SPLITS}
    if any(count < 0 for count in counts.values()):
        raise InputError(f"independent split sizes must be at least 0: {counts}")
    wanted = [split for split in INDEPENDENT_SPLITS if counts[split]]
    if not wanted:
        return {}
    out_dir = out_dir.resolve()
    objects = find_objects(stamp_root)
    background_files = find_backgrounds(root=background_root)
    pairs = {split: _pairs(corpus_manifests[PAIRS_FROM[split]]) for split in wanted}
    settings = {
        "version": VERSION,
        "seed": seed,
        "image_size": image_size,
        "counts": counts,
        "inputs": _fingerprint(objects, background_files, pairs),
    }
    manifests = {split: out_dir / f"{split}.jsonl" for split in wanted}
    marker = out_dir / _MARKER
    if _is_cached(marker, settings, manifests):
        return manifests
    marker.unlink(missing_ok=True)
    pools = split_backgrounds(list(background_files), seed)
    compositor = IndependentCompositor(image_size, seed, background_files)
    for split in wanted:
        plan = plan_independent(pairs[split], objects, pools[split], counts[split], split, seed)
        rows = _draw_split(compositor, plan, out_dir / "independent_images" / split, progress)
        write_manifest(rows, manifests[split])
    with atomic_write(marker) as file:
        file.write(json.dumps({"settings": settings}, indent=1) + "\n")
    return manifests


def _draw_split(
    compositor: IndependentCompositor, plan: list, image_dir: Path, progress: bool
) -> list[dict]:
    image_dir.mkdir(parents=True, exist_ok=True)
    for old in image_dir.glob("*.jpg"):
        old.unlink()
    rows = []
    for number, (scene_id, names, stamps, background) in enumerate(plan, start=1):
        scene = compositor.render(scene_id, names, stamps, background)
        path = image_dir / f"{scene_id}.jpg"
        scene.image.save(path, "JPEG", **JPEG_OPTIONS)
        place_of = dict(zip(names, scene.placements, strict=True))
        in_order = [place_of[name] for name in scene.caption.objects]
        rows.append(
            {
                "image": str(path),
                "caption": format_caption(scene.caption),
                "width": scene.image.width,
                "height": scene.image.height,
                "objects": scene.caption.objects,
                "relation": scene.caption.relation,
                "background": background,
                "id": scene_id,
                "centres": [list(place.centre) for place in in_order],
                "sizes": [[place.width, place.height] for place in in_order],
                "composition": scene.composition,
            }
        )
        if progress and (number % 100 == 0 or number == len(plan)):
            print(f"{image_dir.name}: {number}/{len(plan)} scenes", flush=True)
    return rows


def _background_key(path: Path) -> str | None:
    """``<folders>/<design>`` of an image path, or None for a KDE wallpaper's preview: a KDE
    wallpaper (``<Design>/contents/images[_dark]/<W>x<H>.jpg``) is ``<Design>`` or
    ``<Design>-dark``, any other file its name without a resolution (``_1920x1080``)."""
    parts = path.parts
    if path.stem.lower().startswith("screenshot"):
        return None
    if len(parts) >= 4 and parts[-3] == "contents" and parts[-2] in ("images", "images_dark"):
        design = parts[-4] + ("-dark" if parts[-2] == "images_dark" else "")
        return "/".join((*parts[:-4], design))
    return "/".join((*parts[:-1], _RESOLUTION.sub("", path.stem) or path.stem))


def _pick_resolution(paths: list[Path]) -> Path:
    sizes = {}
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes[path] = image.size
        except OSError as error:
            raise InputError(f"cannot read background image {path}: {error}") from None
    large = [p for p in paths if min(sizes[p]) >= _MIN_SOURCE_SIDE]
    if large:
        return min(large, key=lambda p: (sizes[p][0] * sizes[p][1], str(p)))
    return max(paths, key=lambda p: (sizes[p][0] * sizes[p][1], str(p)))


def _visible_fraction(objects: list[Image.Image], placements: list[Placement], size: int) -> float:
    """The share of the lower object's alpha that the upper one (drawn later) leaves visible."""
    (lower, upper), (low, up) = objects, placements
    canvas = np.zeros((2, size, size), np.float32)
    for layer, (stamp, place) in enumerate(((lower, low), (upper, up))):
        alpha = np.asarray(stamp.getchannel("A"), np.float32) / 255
        canvas[
            layer, place.top : place.top + place.height, place.left : place.left + place.width
        ] = alpha
    total = canvas[0].sum()
    return float((canvas[0] * (1 - canvas[1])).sum() / total) if total else 0.0


def _draw_shadow(image: Image.Image, stamp: Image.Image, place: Placement, shadow: dict) -> None:
    """Darken ``image`` under the stamp's alpha, blurred and offset (clipped to the image)."""
    margin = math.ceil(3 * shadow["blur"]) + 1
    alpha = Image.new("L", (stamp.width + 2 * margin, stamp.height + 2 * margin), 0)
    alpha.paste(stamp.getchannel("A"), (margin, margin))
    alpha = alpha.filter(ImageFilter.GaussianBlur(shadow["blur"]))
    alpha = alpha.point(lambda value: round(value * shadow["opacity"]))
    dx, dy = shadow["offset"]
    black = Image.new("RGB", alpha.size, (0, 0, 0))
    image.paste(black, (place.left - margin + dx, place.top - margin + dy), alpha)


def _light(image: Image.Image, rng: random.Random, composition: dict) -> Image.Image:
    """Scene lighting: colour temperature (red against blue gain), contrast about the mean,
    brightness, and Gaussian sensor noise in half the scenes."""
    temperature = rng.uniform(-1, 1)
    contrast = rng.uniform(0.75, 1.25)
    brightness = rng.uniform(0.75, 1.25)
    noise = rng.uniform(1, 4) if rng.random() < 0.5 else 0.0
    pixels = np.asarray(image, np.float32)
    pixels = pixels * np.array(
        [1 + 0.12 * temperature, 1 + 0.02 * temperature, 1 - 0.12 * temperature]
    )
    pixels = (pixels - pixels.mean()) * contrast + pixels.mean()
    pixels = pixels * brightness
    if noise:
        generator = np.random.default_rng(rng.getrandbits(64))
        pixels = pixels + generator.normal(0, noise, pixels.shape)
    composition.update(
        temperature=round(temperature, 3),
        contrast=round(contrast, 3),
        brightness=round(brightness, 3),
        noise=round(noise, 3),
    )
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def _pairs(manifest: Path) -> list[tuple[str, str]]:
    """The distinct object pairs of a corpus manifest's two-object scenes, in first order."""
    pairs: dict[tuple[str, str], None] = {}
    for row in read_manifest(manifest, "image", "caption"):
        names = row.get("objects") or []
        if len(names) == 2:
            pairs[tuple(sorted(names))] = None
    if not pairs:
        raise InputError(f"{manifest}: no two-object scenes to take object pairs from")
    return list(pairs)


def _fingerprint(
    objects: dict[str, list[Path]], backgrounds: dict[str, Path], pairs: dict[str, list]
) -> str:
    listing = [
        [name, [[str(p), p.stat().st_size] for p in paths]] for name, paths in objects.items()
    ]
    listing += [[bid, str(p), p.stat().st_size] for bid, p in backgrounds.items()]
    listing.append(pairs)
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def _is_cached(marker: Path, settings: dict, manifests: dict[str, Path]) -> bool:
    if not marker.is_file() or not all(path.is_file() for path in manifests.values()):
        return False
    try:
        return json.loads(marker.read_text())["settings"] == settings
    except (ValueError, KeyError, TypeError):
        return False
