"""Scene backgrounds: photos from Debian's ``mate-backgrounds`` and generated textures.

A background id is ``photo/<relative path without suffix>`` or ``texture/<kind>-<number>``.
Copies of one photo at several resolutions (``Elephants_3840x2160.jpg``) are one id, and
colour variants of one design (``MATE-Stripes-Dark``/``-Light``) are one *family*, so that
splits can keep a design out of training entirely.

The varied composition (``prepare --composition varied``, :mod:`.varied`) adds the images of
the Debian packages of :data:`PACKAGE_BACKGROUNDS` (ids ``package/<package>/<folder>/
<design>``, :func:`find_package_photos`) and the texture kinds of
:data:`VARIED_TEXTURE_KINDS`. None of those packages is one the independently composited
splits draw on (``independent.BACKGROUND_PACKAGES``; ``tests/test_scenes_varied.py`` checks
the files by SHA-256).
"""

import fnmatch
import math
import random
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from multimodal_s2s.errors import InputError

DEFAULT_BACKGROUND_ROOT = Path("/usr/share/backgrounds/mate")
TEXTURE_KINDS = ("clouds", "gradient", "stripes", "checks", "speckles")
VARIED_TEXTURE_KINDS = (
    *TEXTURE_KINDS,
    *("noise", "waves", "dots", "cells", "plaid", "radial", "bricks", "strokes"),
)
DPKG_INFO = Path("/var/lib/dpkg/info")
# Debian packages whose images the varied composition adds: package -> (glob patterns of the
# image paths used, patterns left out). Left out: previews, logos, icons, and photos whose
# subject is one of the stamp objects (a butterfly, a dragonfly, citrus fruits, a bee, a
# castle, flowers), which a scene would show without naming.
PACKAGE_BACKGROUNDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "lxqt-themes": (
        ("/usr/share/lxqt/wallpapers/*",),
        ("*/Butterfly-*", "*/butterfly.*", "*/flowers.*", "*/appleflower.*"),
    ),
    "xfdesktop4-data": (("/usr/share/backgrounds/xfce/*",), ()),
    "lxde-common": (("/usr/share/lxde/wallpapers/*",), ()),
    "sway-backgrounds": (("/usr/share/backgrounds/sway/*",), ()),
    "lomiri-wallpapers": (("/usr/share/backgrounds/warty-final-ubuntu.png",), ()),
    "lomiri-wallpapers-16.04": (("/usr/share/backgrounds/*",), ("*/Dragonfly_*",)),
    "lomiri-wallpapers-20.04": (("/usr/share/backgrounds/*",), ()),
    "desktop-base": (("/usr/share/desktop-base/*-theme/grub/grub-*.png",), ()),
    "mypaint-data-extras": (("/usr/share/mypaint/backgrounds/*/*",), ()),
    "colobot-common-textures": (
        tuple(
            f"/usr/share/games/colobot/textures/{stem}*.png"
            for stem in ("back", "chili", "cloud", "desert", "dirty", "green", "lava", "mars")
            + ("mix", "moon", "roc", "terra", "water")
        ),
        (),
    ),
    "palapeli-data": (
        ("/usr/share/palapeli/backgrounds/*", "/usr/share/palapeli/collection/*"),
        ("*/citrus-fruits.*", "*/european-honey-bee.*", "*/castle-*"),
    ),
    "tuxmath-data": (("/usr/share/tuxmath/images/backgrounds/*",), ()),
}

_PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
_RESOLUTION = re.compile(r"_\d+x\d+$")
_VARIANT_WORDS = {"cold", "dark", "light", "radioactive", "warm"}
_MIN_CROP_FRACTION = 0.25
_SOURCE_SCALE = 4
_TEXTURE_SCALE = 2
_PACKAGE_RESOLUTION = re.compile(r"[-_ ]*(?:\d+x\d+|16x9|4x3)(?:[-_]portrait)?$", re.IGNORECASE)
_PACKAGE_VARIANT_WORDS = {
    *("dark", "light", "bright", "logo", "nologo", "blue", "green", "red", "teal", "purple"),
    *("l", "d"),
}
_MIN_PACKAGE_SIDE = 512


def find_photos(background_root: Path = DEFAULT_BACKGROUND_ROOT) -> dict[str, Path]:
    """Map each photo id to its image file (the smallest of several resolutions)."""
    if not background_root.is_dir():
        raise InputError(
            f"background directory not found: {background_root} (apt-get install mate-backgrounds)"
        )
    photos: dict[str, Path] = {}
    files = [p for p in background_root.rglob("*") if p.suffix.lower() in _PHOTO_SUFFIXES]
    for path in sorted(files, key=lambda p: (p.stat().st_size, str(p)), reverse=True):
        relative = path.relative_to(background_root).with_suffix("")
        photos["photo/" + _RESOLUTION.sub("", relative.as_posix())] = path
    return dict(sorted(photos.items()))


def package_files(package: str, dpkg_info: Path = DPKG_INFO) -> list[Path]:
    """The files an installed Debian package put on disk (sorted); [] when not installed."""
    for name in (f"{package}.list", f"{package}:all.list", f"{package}:amd64.list"):
        listing = dpkg_info / name
        if listing.is_file():
            return sorted(Path(line) for line in listing.read_text().splitlines() if line)
    return []


def find_package_photos(
    packages: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = PACKAGE_BACKGROUNDS,
    dpkg_info: Path = DPKG_INFO,
) -> dict[str, Path]:
    """Map each id ``package/<package>/<design>`` to one image file of ``packages`` (every
    one must be installed): the files each package's patterns select, a design being the
    file's path below the folder its pattern names (before the first wildcard), without its
    suffix and resolution (``_1920x1080``, ``-16x9``); of several files of a design, the
    smallest whose shorter side is at least 512 pixels (else the largest). A file reached
    twice (a link) counts once."""
    missing = [package for package in packages if not package_files(package, dpkg_info)]
    if missing:
        raise InputError(
            "the varied composition draws on Debian packages that are not installed: "
            f"apt-get install {' '.join(missing)}"
        )
    designs: dict[str, list[Path]] = {}
    seen: set[Path] = set()
    for package, (include, exclude) in packages.items():
        for path in package_files(package, dpkg_info):
            text = path.as_posix()
            if path.suffix.lower() not in _PHOTO_SUFFIXES or not path.is_file():
                continue
            matched = [p for p in include if fnmatch.fnmatchcase(text, p)]
            if not matched or any(fnmatch.fnmatchcase(text, p) for p in exclude):
                continue
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            folder = re.split(r"[*?\[]", matched[0])[0].rsplit("/", 1)[0]
            relative = path.relative_to(folder).with_suffix("")
            design = _PACKAGE_RESOLUTION.sub("", relative.name) or relative.name
            key = (relative.parent / design).as_posix()
            designs.setdefault(f"package/{package}/{key}", []).append(path)
    return {bid: _pick_file(paths) for bid, paths in sorted(designs.items())}


def texture_ids(count: int, kinds: tuple[str, ...] = TEXTURE_KINDS) -> list[str]:
    """``count`` texture ids, cycling through ``kinds``."""
    return [f"texture/{kinds[i % len(kinds)]}-{i}" for i in range(count)]


def family(background_id: str) -> str:
    """The design a background belongs to: its id without colour-variant words (for a
    package's image, also without a trailing number: ``mars003`` and ``mars005`` are one)."""
    if background_id.startswith("package/"):
        head, design = background_id.rsplit("/", 1)
        words = [w for w in re.split(r"[-_ ]+", design.lower()) if w]
        kept = [w for w in words if w not in _PACKAGE_VARIANT_WORDS] or words
        if len(kept) > 1 and kept[-1].isdigit():
            kept.pop()
        kept[-1] = kept[-1].rstrip("0123456789") or kept[-1]
        return f"{head}/{'-'.join(kept)}"
    words = re.split(r"([-_ ])", background_id)
    kept = [w for w in words if w.lower() not in _VARIANT_WORDS]
    return re.sub(r"[-_ ]+", "-", "".join(kept)).strip("-")


def load_photo(path: Path, image_size: int) -> Image.Image:
    """A photo shrunk so its shorter side is about ``4 * image_size`` (never enlarged).

    RGB, or RGBA for the translucent overlays (which :func:`random_view` lays on a colour).
    """
    target = _SOURCE_SCALE * image_size
    try:
        with Image.open(path) as image:
            image.draft("RGB", (target, target))
            photo = _with_alpha_if_any(image)
    except OSError as error:
        raise InputError(f"cannot read background image {path}: {error}") from None
    scale = target / min(photo.size)
    if scale < 1:
        size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
        photo = photo.resize(size, Image.Resampling.LANCZOS)
    return photo


def load_background(
    background_id: str, photo_files: dict[str, Path], image_size: int, seed: int
) -> Image.Image:
    """The source image of a background id: ``texture/<kind>-<n>`` rendered from ``seed``,
    or the photo ``photo_files[background_id]``, both for scenes of ``image_size`` pixels."""
    if background_id.startswith("texture/"):
        return render_texture(background_id, image_size, seed)
    return load_photo(photo_files[background_id], image_size)


def render_texture(texture_id: str, image_size: int, seed: int) -> Image.Image:
    """A square RGB texture of side ``2 * image_size``, determined by its id and ``seed``."""
    rng = random.Random(f"{seed}/{texture_id}")
    kind = texture_id.removeprefix("texture/").rsplit("-", 1)[0]
    side = _TEXTURE_SCALE * image_size
    if kind == "clouds":
        return _clouds(side, rng)
    if kind == "gradient":
        return _gradient(side, rng)
    if kind == "stripes":
        return _stripes(side, rng)
    if kind == "checks":
        return _checks(side, rng)
    if kind == "speckles":
        return _speckles(side, rng)
    if kind in _VARIED_TEXTURES:
        return _VARIED_TEXTURES[kind](side, rng)
    raise InputError(f"unknown texture kind in background id {texture_id!r}")


def random_view(source: Image.Image, image_size: int, rng: random.Random) -> Image.Image:
    """A random RGB square crop (25-100% of the shorter side), maybe mirrored, resized to
    ``image_size``; a translucent source is laid on a random colour."""
    shorter = min(source.size)
    side = rng.randint(max(1, round(_MIN_CROP_FRACTION * shorter)), shorter)
    left = rng.randint(0, source.width - side)
    top = rng.randint(0, source.height - side)
    view = source.crop((left, top, left + side, top + side))
    view = view.resize((image_size, image_size), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if view.mode == "RGBA":
        view = Image.alpha_composite(Image.new("RGBA", view.size, _colour(rng)), view)
    return view.convert("RGB")


def _pick_file(paths: list[Path]) -> Path:
    """Of one design's files, the smallest whose shorter side is at least 512 pixels, else
    the largest."""
    sizes = {}
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes[path] = image.size
        except OSError as error:
            raise InputError(f"cannot read background image {path}: {error}") from None
    large = [p for p in paths if min(sizes[p]) >= _MIN_PACKAGE_SIDE]
    if large:
        return min(large, key=lambda p: (sizes[p][0] * sizes[p][1], str(p)))
    return max(paths, key=lambda p: (sizes[p][0] * sizes[p][1], str(p)))


def _with_alpha_if_any(image: Image.Image) -> Image.Image:
    """RGBA when the image has transparency, else RGB."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        return image.convert("RGBA")
    return image.convert("RGB")


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return rng.randrange(256), rng.randrange(256), rng.randrange(256)


def _clouds(side: int, rng: random.Random) -> Image.Image:
    cells = rng.randint(2, 6)
    small = Image.new("RGB", (cells, cells))
    small.putdata([_colour(rng) for _ in range(cells * cells)])
    return small.resize((side, side), Image.Resampling.BICUBIC)


def _gradient(side: int, rng: random.Random) -> Image.Image:
    mask = _rotated_centre(Image.linear_gradient("L").resize((2 * side, 2 * side)), side, rng)
    return _two_colours(mask, rng)


def _stripes(side: int, rng: random.Random) -> Image.Image:
    mask = Image.new("L", (2 * side, 2 * side), 0)
    draw = ImageDraw.Draw(mask)
    period = rng.randint(side // 16 + 2, side // 3 + 3)
    width = rng.randint(1, period - 1)
    for start in range(0, 2 * side, period):
        draw.rectangle((start, 0, start + width - 1, 2 * side), fill=255)
    return _two_colours(_rotated_centre(mask, side, rng), rng)


def _rotated_centre(mask: Image.Image, side: int, rng: random.Random) -> Image.Image:
    """The centre ``side`` square of a ``2 * side`` mask turned by a random angle."""
    turned = mask.rotate(rng.uniform(0, 360), resample=Image.Resampling.BILINEAR)
    offset = side // 2
    return turned.crop((offset, offset, offset + side, offset + side))


def _two_colours(mask: Image.Image, rng: random.Random) -> Image.Image:
    """Blend two random colours by an ``L`` mask."""
    first = Image.new("RGB", mask.size, _colour(rng))
    second = Image.new("RGB", mask.size, _colour(rng))
    return Image.composite(first, second, mask)


def _checks(side: int, rng: random.Random) -> Image.Image:
    cells = rng.randint(3, 12)
    small = Image.new("RGB", (cells, cells))
    colours = _colour(rng), _colour(rng)
    small.putdata([colours[(i // cells + i % cells) % 2] for i in range(cells * cells)])
    return small.resize((side, side), Image.Resampling.NEAREST)


def _speckles(side: int, rng: random.Random) -> Image.Image:
    noise = Image.frombytes("L", (side, side), rng.randbytes(side * side))
    noise = noise.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3)))
    return _two_colours(ImageOps.autocontrast(noise), rng)


# The varied composition's texture kinds (VARIED_TEXTURE_KINDS beyond TEXTURE_KINDS).


def _palette(rng: random.Random, count: int) -> np.ndarray:
    """``count`` random colours, ``(count, 3)`` float32; sometimes all near one hue."""
    if rng.random() < 0.5:
        return np.array([_colour(rng) for _ in range(count)], np.float32)
    base = np.array(_colour(rng), np.float32)
    spread = rng.uniform(20, 80)
    return np.clip(
        [base + [rng.uniform(-spread, spread) for _ in range(3)] for _ in range(count)], 0, 255
    ).astype(np.float32)


def _image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


def _shade(values: np.ndarray, rng: random.Random) -> Image.Image:
    """Values in [0, 1] ``(side, side)`` mapped through a random 2-4 colour ramp."""
    colours = _palette(rng, rng.randint(2, 4))
    stops = np.linspace(0, 1, len(colours))
    channels = [np.interp(values, stops, colours[:, c]) for c in range(3)]
    return _image(np.stack(channels, axis=-1))


def _noise(side: int, rng: random.Random) -> Image.Image:
    """Value noise of 2-5 octaves (each a random grid, resized bicubic), through a ramp."""
    total = np.zeros((side, side), np.float32)
    weight, cells = 1.0, rng.randint(2, 5)
    for _ in range(rng.randint(2, 5)):
        grid = Image.frombytes("L", (cells, cells), rng.randbytes(cells * cells))
        layer = np.asarray(grid.resize((side, side), Image.Resampling.BICUBIC), np.float32)
        total += weight * layer
        weight *= rng.uniform(0.4, 0.7)
        cells = min(side, cells * 2)
    total -= total.min()
    return _shade(total / max(float(total.max()), 1e-6), rng)


def _coordinates(side: int) -> tuple[np.ndarray, np.ndarray]:
    axis = np.arange(side, dtype=np.float32) / side
    return np.meshgrid(axis, axis)


def _waves(side: int, rng: random.Random) -> Image.Image:
    """Two or three sine waves of random direction and frequency, summed."""
    x, y = _coordinates(side)
    total = np.zeros((side, side), np.float32)
    for _ in range(rng.randint(2, 3)):
        angle, frequency = rng.uniform(0, math.pi), rng.uniform(1, 8)
        phase = rng.uniform(0, 2 * math.pi)
        along = x * math.cos(angle) + y * math.sin(angle)
        total += np.sin(2 * math.pi * frequency * along + phase)
    total -= total.min()
    return _shade(total / max(float(total.max()), 1e-6), rng)


def _dots(side: int, rng: random.Random) -> Image.Image:
    """A grid of discs (polka dots), every other row shifted half a period or not."""
    image = Image.new("RGB", (side, side), _colour(rng))
    draw = ImageDraw.Draw(image)
    period = rng.randint(max(4, side // 16), max(5, side // 4))
    radius = rng.uniform(0.15, 0.45) * period
    fill = _colour(rng)
    for row, top in enumerate(range(-period, side + period, period)):
        shift = period / 2 if row % 2 and rng.random() < 0.5 else 0
        for left in range(-period, side + period, period):
            x, y = left + shift, top
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)
    return image


def _cells(side: int, rng: random.Random) -> Image.Image:
    """Voronoi cells of 6-40 random points, each a colour of a small palette."""
    count = rng.randint(6, 40)
    points = np.array([[rng.uniform(0, 1), rng.uniform(0, 1)] for _ in range(count)], np.float32)
    colours = _palette(rng, rng.randint(2, 5))
    which = np.array([rng.randrange(len(colours)) for _ in range(count)])
    x, y = _coordinates(side)
    distance = (x[..., None] - points[:, 0]) ** 2 + (y[..., None] - points[:, 1]) ** 2
    return _image(colours[which[distance.argmin(axis=-1)]])


def _plaid(side: int, rng: random.Random) -> Image.Image:
    """Bands of colour across and down, blended (a tartan)."""
    colours = _palette(rng, rng.randint(2, 4))
    rows = np.zeros((side, 3), np.float32)
    columns = np.zeros((side, 3), np.float32)
    for line in (rows, columns):
        position = 0
        while position < side:
            width = rng.randint(max(1, side // 32), max(2, side // 6))
            line[position : position + width] = colours[rng.randrange(len(colours))]
            position += width
    return _image(0.5 * rows[:, None, :] + 0.5 * columns[None, :, :])


def _radial(side: int, rng: random.Random) -> Image.Image:
    """A radial gradient about a random centre, maybe in rings."""
    x, y = _coordinates(side)
    distance = np.hypot(x - rng.uniform(-0.2, 1.2), y - rng.uniform(-0.2, 1.2))
    values = distance / max(float(distance.max()), 1e-6)
    if rng.random() < 0.4:
        values = 0.5 + 0.5 * np.sin(2 * math.pi * rng.uniform(2, 8) * values)
    return _shade(values, rng)


def _bricks(side: int, rng: random.Random) -> Image.Image:
    """Rows of bricks (each its own shade) in mortar."""
    mortar, brick = _colour(rng), np.array(_colour(rng), np.float32)
    image = Image.new("RGB", (side, side), mortar)
    draw = ImageDraw.Draw(image)
    height = rng.randint(max(3, side // 16), max(4, side // 5))
    width = round(height * rng.uniform(1.5, 3.5))
    gap = rng.randint(1, max(1, height // 5))
    for row, top in enumerate(range(0, side, height)):
        offset = (width // 2) * (row % 2)
        for left in range(-offset, side, width):
            shade = tuple(int(v) for v in np.clip(brick * rng.uniform(0.8, 1.2), 0, 255))
            draw.rectangle((left, top, left + width - gap - 1, top + height - gap - 1), fill=shade)
    return image


def _strokes(side: int, rng: random.Random) -> Image.Image:
    """Random lines, arcs and rectangle outlines on a plain colour (clutter)."""
    image = Image.new("RGB", (side, side), _colour(rng))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(5, 30)):
        box = sorted(rng.uniform(-0.2, 1.2) * side for _ in range(2))
        other = sorted(rng.uniform(-0.2, 1.2) * side for _ in range(2))
        corners = (box[0], other[0], box[1] + 1, other[1] + 1)
        width = rng.randint(1, max(1, side // 24))
        shape = rng.randrange(3)
        if shape == 0:
            draw.line(corners, fill=_colour(rng), width=width)
        elif shape == 1:
            draw.arc(corners, rng.uniform(0, 360), rng.uniform(0, 360), _colour(rng), width)
        else:
            draw.rectangle(corners, outline=_colour(rng), width=width)
    return image


_VARIED_TEXTURES = {
    "noise": _noise,
    "waves": _waves,
    "dots": _dots,
    "cells": _cells,
    "plaid": _plaid,
    "radial": _radial,
    "bricks": _bricks,
    "strokes": _strokes,
}
