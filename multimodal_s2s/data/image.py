"""Image input: load any supported file as an RGB picture and resize it to an 8-bit tensor.

Loading (`load_image`) applies the EXIF orientation, keeps only the first frame of an
animated GIF, converts grayscale, palette and 16-bit images to 8-bit RGB and composites
transparent pixels onto a background colour, so every encoder sees the same kind of input.

The transform (`build_image_transform`) squashes the picture to a square ``image_size``
rather than centre-cropping it: a centre crop could cut off an object near the border, while a
uniform resize per axis keeps every object in view and keeps its relations ("left of",
"above"). It yields 8-bit pixels; normalisation and train-time augmentation are the model's
(`frontends.image.ImageFrontend`), done a whole batch at a time.
"""

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from torch import Tensor
from torchvision.transforms import v2

from multimodal_s2s.data.files import find_files
from multimodal_s2s.errors import InputError

SUPPORTED_IMAGE_EXTENSIONS: tuple[str, ...] = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")
WHITE: tuple[int, int, int] = (255, 255, 255)

_PILLOW_FORMATS = ("BMP", "GIF", "JPEG", "PNG", "WEBP")
# UnidentifiedImageError and truncated-file errors are OSErrors; bad EXIF can raise the others.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def load_image(path: str | Path, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Read an image file as an upright 8-bit RGB picture.

    Args:
        path: a jpg/jpeg, png, webp, bmp or gif file (for an animated gif, the first frame).
        background: RGB colour that transparent pixels are composited onto.

    Returns:
        A ``PIL.Image.Image`` in mode ``"RGB"``, rotated as its EXIF orientation says.

    Raises:
        InputError: the file is missing, has an unsupported extension, or cannot be decoded.
    """
    path = _existing_image_file(path)
    try:
        with _open(path) as image:
            image.seek(0)
            image.load()
            upright = ImageOps.exif_transpose(image)
            return to_rgb(upright, background)
    except _DECODE_ERRORS as error:
        raise _unreadable(path, error) from error


@contextmanager
def _open(path: Path) -> Iterator[Image.Image]:
    """``Image.open`` without Pillow's warning for images of 1-2 times
    ``Image.MAX_IMAGE_PIXELS``, which decode fine (a larger one still raises
    ``DecompressionBombError``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path, formats=_PILLOW_FORMATS) as image:
            yield image


def image_pixels(path: str | Path) -> int:
    """Width times height of an image file, read from its header without decoding it.

    A file too large for Pillow to open at all (its decompression-bomb guard, over
    ``2 * Image.MAX_IMAGE_PIXELS``) counts as one pixel more than that guard.

    Raises:
        InputError: the file is missing, has an unsupported extension, or is not an image.
    """
    path = _existing_image_file(path)
    try:
        with _open(path) as image:
            return image.width * image.height
    except Image.DecompressionBombError:
        return 2 * Image.MAX_IMAGE_PIXELS + 1
    except _DECODE_ERRORS as error:
        raise _unreadable(path, error) from error


def _unreadable(path: Path, error: BaseException) -> InputError:
    reason = " ".join(str(error).split()) or type(error).__name__
    return InputError(f"{path}: cannot read image ({reason})")


def _existing_image_file(path: str | Path) -> Path:
    """``path`` as a ``Path``; InputError unless it is a file with an image extension."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image file not found")
    _check_extension(path)
    return path


def _check_extension(path: Path) -> None:
    """Raise InputError unless ``path`` ends in a supported image extension."""
    if path.suffix.lower() not in SUPPORTED_IMAGE_EXTENSIONS:
        raise InputError(
            f"{path}: unsupported image extension '{path.suffix}' (supported: "
            f"{', '.join(SUPPORTED_IMAGE_EXTENSIONS)})"
        )


def to_rgb(image: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Convert any Pillow mode to RGB, compositing transparency onto ``background`` (what
    ``load_image`` does to a file's picture)."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        image = _sixteen_bit_to_gray(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        composite = Image.new("RGB", rgba.size, background)
        composite.paste(rgba, mask=rgba.getchannel("A"))
        return composite
    return image.convert("RGB")


def _sixteen_bit_to_gray(image: Image.Image) -> Image.Image:
    """Scale a 16-bit grayscale image to 8 bits (Pillow's own conversion clips at 255)."""
    values = np.asarray(image, dtype=np.uint32) // 257
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), mode="L")


def build_image_transform(image_size: int) -> Callable[[Image.Image], Tensor]:
    """Make the picture -> tensor transform (a resize, the same for training and evaluation).

    Args:
        image_size: side S of the square output, in pixels.

    Returns:
        A callable mapping an RGB ``PIL.Image.Image`` to a ``uint8`` tensor of shape
        ``(3, S, S)`` (antialiased resize of each axis).
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise InputError(f"image_size must be a positive integer, got {image_size!r}")
    size = (image_size, image_size)
    return v2.Compose([v2.ToImage(), v2.Resize(size, antialias=True), v2.ToPureTensor()])


def find_image_files(paths: list[str]) -> list[Path]:
    """Image files named by files, directories (recursive) and glob patterns; see
    ``files.find_files`` for the rules and errors."""
    return find_files(paths, SUPPORTED_IMAGE_EXTENSIONS, "image")
