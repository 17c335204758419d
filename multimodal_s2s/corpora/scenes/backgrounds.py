"""Scene backgrounds: photos from Debian's ``mate-backgrounds`` and generated textures.

A background id is ``photo/<relative path without suffix>`` or ``texture/<kind>-<number>``.
Copies of one photo at several resolutions (``Elephants_3840x2160.jpg``) are one id, and
colour variants of one design (``MATE-Stripes-Dark``/``-Light``) are one *family*, so that
splits can keep a design out of training entirely.
"""

import random
import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageOps

from multimodal_s2s.errors import InputError

DEFAULT_BACKGROUND_ROOT = Path("/usr/share/backgrounds/mate")
TEXTURE_KINDS = ("clouds", "gradient", "stripes", "checks", "speckles")

_PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
_RESOLUTION = re.compile(r"_\d+x\d+$")
_VARIANT_WORDS = {"cold", "dark", "light", "radioactive", "warm"}
_MIN_CROP_FRACTION = 0.25
_SOURCE_SCALE = 4
_TEXTURE_SCALE = 2


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


def texture_ids(count: int) -> list[str]:
    """``count`` texture ids, cycling through :data:`TEXTURE_KINDS`."""
    return [f"texture/{TEXTURE_KINDS[i % len(TEXTURE_KINDS)]}-{i}" for i in range(count)]


def family(background_id: str) -> str:
    """The design a background belongs to: its id without colour-variant words."""
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
