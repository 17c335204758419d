"""Image input: load any supported file as an RGB picture and turn it into a normalised tensor.

Loading (`load_image`) applies the EXIF orientation, keeps only the first frame of an
animated GIF, converts grayscale, palette and 16-bit images to 8-bit RGB and composites
transparent pixels onto a background colour, so every encoder sees the same kind of input.

Transforms (`build_image_transform`) squash the picture to a square ``image_size`` rather than
centre-cropping it: a centre crop could cut off an object near the border, while a uniform
resize per axis keeps every object in view and keeps its relations ("left of", "above").

Train-time augmentation is chosen so that a caption stays true of the augmented image:

* No horizontal (or vertical) flip: it would swap "left of" and "right of" ("above"/"below").
* Random resized crop of the (already square) image with area scale in ``CROP_SCALE`` and
  aspect ratio in ``CROP_RATIO``. The crop side along one axis is at least
  ``sqrt(0.85 * 0.95) = 0.899`` of the image side, so at most ~10% of the side is removed in
  total. Objects occupy 25-60% of the image side, so even an object touching the border keeps
  at least ``(0.25 - 0.10) / 0.25 = 60%`` of its extent in view, and the crop is a monotone
  map, so the left/right and above/below order of objects never changes. The aspect change is
  at most ~5%, too little to turn a circle into an ellipse.
* Colour jitter of brightness, contrast and saturation only; hue is left alone because
  captions name colours ("a red square").
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torchvision.transforms import v2

from multimodal_s2s.data.files import find_files
from multimodal_s2s.errors import InputError

SUPPORTED_IMAGE_EXTENSIONS: tuple[str, ...] = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
CROP_SCALE: tuple[float, float] = (0.85, 1.0)
CROP_RATIO: tuple[float, float] = (0.95, 1.0 / 0.95)
COLOR_JITTER: dict[str, float] = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2}
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
        with Image.open(path, formats=_PILLOW_FORMATS) as image:
            image.seek(0)
            image.load()
            upright = ImageOps.exif_transpose(image)
            return _to_rgb(upright, background)
    except _DECODE_ERRORS as error:
        raise _unreadable(path, error) from error


def image_pixels(path: str | Path) -> int:
    """Width times height of an image file, read from its header without decoding it.

    A file too large for Pillow to open at all (its decompression-bomb guard, over
    ``2 * Image.MAX_IMAGE_PIXELS``) counts as one pixel more than that guard.

    Raises:
        InputError: the file is missing, has an unsupported extension, or is not an image.
    """
    path = _existing_image_file(path)
    try:
        with Image.open(path, formats=_PILLOW_FORMATS) as image:
            return image.width * image.height
    except Image.DecompressionBombError:
        return 2 * Image.MAX_IMAGE_PIXELS + 1
    except _DECODE_ERRORS as error:
        raise _unreadable(path, error) from error


def _unreadable(path: Path, error: BaseException) -> InputError:
    reason = " ".join(str(error).split()) or type(error).__name__
    return InputError(f"cannot read image {path}: {reason}")


def _existing_image_file(path: str | Path) -> Path:
    """``path`` as a ``Path``; InputError unless it is a file with an image extension."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image file not found: {path}")
    _check_extension(path)
    return path


def _check_extension(path: Path) -> None:
    """Raise InputError unless ``path`` ends in a supported image extension."""
    if path.suffix.lower() not in SUPPORTED_IMAGE_EXTENSIONS:
        raise InputError(
            f"unsupported image extension '{path.suffix}' (supported: "
            f"{', '.join(SUPPORTED_IMAGE_EXTENSIONS)}): {path}"
        )


def _to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Convert any Pillow mode to RGB, compositing transparency onto ``background``."""
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


def build_image_transform(image_size: int, train: bool) -> Callable[[Image.Image], Tensor]:
    """Make the picture -> tensor transform for training (augmented) or evaluation.

    Args:
        image_size: side S of the square output, in pixels.
        train: add the random crop and colour jitter described in the module docstring.

    Returns:
        A callable mapping an RGB ``PIL.Image.Image`` to a float32 tensor of shape
        ``(3, S, S)``, normalised with the ImageNet mean and standard deviation.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise InputError(f"image_size must be a positive integer, got {image_size!r}")
    size = (image_size, image_size)
    steps: list[v2.Transform] = [v2.ToImage(), v2.Resize(size, antialias=True)]
    if train:
        steps += [
            v2.RandomResizedCrop(size, scale=CROP_SCALE, ratio=CROP_RATIO, antialias=True),
            v2.ColorJitter(**COLOR_JITTER),
        ]
    steps += [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        v2.ToPureTensor(),
    ]
    return v2.Compose(steps)


def find_image_files(paths: list[str]) -> list[Path]:
    """Image files named by files, directories (recursive) and glob patterns; see
    ``files.find_files`` for the rules and errors."""
    return find_files(paths, SUPPORTED_IMAGE_EXTENSIONS, "image")
