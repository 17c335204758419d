"""Pasted photos: one Tux Paint stamp pasted by hand into a real photograph.

The scene corpus draws stamps onto backgrounds by program. To see whether a captioning model
trained on it names an object in a real photograph, a person would open a photo in an image
editor and paste one stamp in, at a place and size of their choosing. This module does that,
reproducibly: each of :data:`PASTED_PHOTOS` names a photo (a file of a Debian wallpaper
package that the classic training corpus never draws on), an object of the stamp list and
where it goes, all chosen by hand. The photo's centre square is resized to
:data:`IMAGE_SIZE` pixels and the object's first stamp is pasted over it with its own alpha.
The expected caption is the scene grammar's one-object caption (``a deer``).
"""

from pathlib import Path
from typing import NamedTuple

from PIL import Image

from multimodal_s2s.corpora.scenes.independent import DPKG_INFO, package_images
from multimodal_s2s.corpora.scenes.stamps import DEFAULT_STAMP_ROOT, find_objects, load_stamp
from multimodal_s2s.data.scene_captions import ParsedCaption, format_caption
from multimodal_s2s.errors import InputError

IMAGE_SIZE = 256


class PhotoPaste(NamedTuple):
    """One hand-made paste: ``photo``, a file of the Debian ``package``, cropped to its centre
    square and resized to :data:`IMAGE_SIZE`; the first stamp of ``object`` shrunk so that its
    longer side is ``side`` pixels and pasted with its centre at ``centre`` (x, y pixels)."""

    package: str
    photo: Path
    object: str
    centre: tuple[int, int]
    side: int


class PastedPhoto(NamedTuple):
    """A pasted photo: the RGB image, the box the stamp covers (left, top, right, bottom;
    right and bottom exclusive), the stamp file and the expected caption."""

    image: Image.Image
    box: tuple[int, int, int, int]
    stamp: Path
    caption: str


_WALLPAPERS = Path("/usr/share/wallpapers")
# Photographs of KDE's plasma-workspace-wallpapers (the independently composited test splits'
# backgrounds, never the classic training corpus'), each with an animal where one could stand:
# a deer in a spruce forest, a duck on a wooden jetty, a squirrel in fallen leaves. The stamps'
# longer side is 44-47% of the image side; their centres are at most 37 pixels from the middle
# (a little low, where the ground is).
PASTED_PHOTOS = (
    PhotoPaste(
        "plasma-workspace-wallpapers",
        _WALLPAPERS / "Path/contents/images/2560x1600.jpg",
        "deer",
        (128, 150),
        120,
    ),
    PhotoPaste(
        "plasma-workspace-wallpapers",
        _WALLPAPERS / "BytheWater/contents/images/2560x1600.jpg",
        "duck",
        (120, 165),
        112,
    ),
    PhotoPaste(
        "plasma-workspace-wallpapers",
        _WALLPAPERS / "FallenLeaf/contents/images/2560x1600.jpg",
        "squirrel",
        (108, 150),
        120,
    ),
)


def photo_view(paste: PhotoPaste, dpkg_info: Path = DPKG_INFO) -> Image.Image:
    """The photo alone, as :func:`paste_photo` pastes onto it: its centre square resized
    (Lanczos) to ``(IMAGE_SIZE, IMAGE_SIZE)``, RGB.

    Raises:
        InputError: the photo is not a file of the installed package ``paste.package``.
    """
    if paste.photo not in package_images(paste.package, dpkg_info):
        raise InputError(
            f"{paste.photo} is not an image of the installed Debian package {paste.package} "
            f"(apt-get install {paste.package})"
        )
    try:
        with Image.open(paste.photo) as image:
            photo = image.convert("RGB")
    except OSError as error:
        raise InputError(f"cannot read photo {paste.photo}: {error}") from None
    side = min(photo.size)
    left, top = (photo.width - side) // 2, (photo.height - side) // 2
    square = photo.crop((left, top, left + side, top + side))
    return square.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)


def paste_photo(
    paste: PhotoPaste, stamp_root: Path = DEFAULT_STAMP_ROOT, dpkg_info: Path = DPKG_INFO
) -> PastedPhoto:
    """The photo of ``paste`` with its object's stamp pasted in, and where the stamp went.

    Raises:
        InputError: the photo or the stamp is missing, the stamp is smaller than ``side``,
            or the stamp's box leaves the image.
    """
    stamps = find_objects(stamp_root).get(paste.object)
    if not stamps:
        raise InputError(f"no stamp in {stamp_root} names the object {paste.object!r}")
    stamp = load_stamp(stamps[0], paste.side)
    if max(stamp.size) != paste.side:
        raise InputError(f"stamp {stamps[0]} is smaller than {paste.side} pixels")
    left = paste.centre[0] - stamp.width // 2
    top = paste.centre[1] - stamp.height // 2
    box = (left, top, left + stamp.width, top + stamp.height)
    if min(box) < 0 or max(box[2:]) > IMAGE_SIZE:
        raise InputError(f"the stamp's box {box} leaves the {IMAGE_SIZE}-pixel image")
    image = photo_view(paste, dpkg_info)
    image.paste(stamp, (left, top), stamp)
    caption = format_caption(ParsedCaption([paste.object], None))
    return PastedPhoto(image, box, stamps[0], caption)
