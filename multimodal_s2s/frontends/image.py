"""Model-side image preprocessing: 8-bit pixels -> normalised floats, augmented in training.

The data pipeline hands the model resized ``uint8`` images (``image.build_image_transform``);
`ImageFrontend` turns a whole batch into ImageNet-normalised float32 at once, and in training
mode augments every image of the batch with its own random draw, as one tensor operation on
the model's device. Doing this per batch instead of per image in loading workers takes it off
the CPU cores that train.

Train-time augmentation is chosen so that a caption stays true of the augmented image:

* No horizontal (or vertical) flip: it would swap "left of" and "right of" ("above"/"below").
* Random resized crop of the (already square) image with area scale in ``CROP_SCALE`` and
  aspect ratio (width / height) in ``CROP_RATIO``, sampled as torchvision's
  ``RandomResizedCrop`` samples them (a side that would exceed the image is clamped to it),
  resampled bilinearly to the full size. The crop side along one axis is at least
  ``sqrt(0.85 * 0.95) = 0.899`` of the image side, so at most ~10% of the side is removed in
  total. Objects occupy 25-60% of the image side, so even an object touching the border keeps
  at least ``(0.25 - 0.10) / 0.25 = 60%`` of its extent in view, and the crop is a monotone
  map, so the left/right and above/below order of objects never changes. The aspect change is
  at most ~5%, too little to turn a circle into an ellipse.
* Colour jitter of brightness, contrast and saturation (each factor uniform in
  ``1 +- COLOR_JITTER[name]``, applied in that order, with torchvision's formulas); hue is
  left alone because captions name colours ("a red square"). Brightness varies most (0.4 to
  1.6): the scene corpus draws every object at its own brightness, and with 1 +- 0.2 the
  captioning model named far fewer objects right in darkened photos than in the originals
  (``recipes/scenes_captioning/experiments.md``).
"""

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multimodal_s2s.errors import InputError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
CROP_SCALE: tuple[float, float] = (0.85, 1.0)
CROP_RATIO: tuple[float, float] = (0.95, 1.0 / 0.95)
COLOR_JITTER: dict[str, float] = {"brightness": 0.6, "contrast": 0.2, "saturation": 0.2}
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights, as torchvision's rgb_to_grayscale
# Where corner crops sit: (x, y) of the margin they leave, top-left, top-right, bottom-left,
# bottom-right (``Crop``).
_CORNERS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0))


class Crop(NamedTuple):
    """A square crop ``side`` times the image side, its left and top edges at ``x`` and ``y``
    of the margin it leaves (0: flush with the left / top edge, 1: with the right / bottom)."""

    side: float
    x: float
    y: float


@dataclass
class ImageViews:
    """Test-time views of an image (``data.test_views`` of an image config).

    Beam search (``search.decode.decode_batch``) decodes every image once per view
    (``variants``) and keeps its best-scoring hypothesis: the image itself and, for each
    side in ``corner_crops`` (a fraction of the image side, in ``(0, 1)``), its four corner
    squares of that side, each resampled to the full size.
    """

    corner_crops: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if any(not 0 < side < 1 for side in self.corner_crops):
            raise InputError(
                f"data.test_views.corner_crops must be in (0, 1), got {self.corner_crops}"
            )

    def variants(self) -> list[dict[str, Any]]:
        """Keyword arguments of ``ImageFrontend.forward``: ``{}`` (the whole image), then
        a ``crop`` per side and corner (top-left, top-right, bottom-left, bottom-right)."""
        crops = [Crop(side, x, y) for side in self.corner_crops for x, y in _CORNERS]
        return [{}] + [{"crop": crop} for crop in crops]


class ImageFrontend(nn.Module):
    """``uint8`` images ``(B, 3, H, W)`` -> normalised float32 ``(B, 3, H, W)``.

    With ``augment`` and in training mode, each image is randomly cropped and colour-jittered
    first (module docstring). Always computes in float32, also inside an autocast region.
    Holds no parameters and no saved state. ``variants``: the test-time changes ``forward``
    takes (``ImageViews``).
    """

    variants = frozenset({"crop"})

    def __init__(self, augment: bool = True) -> None:
        super().__init__()
        self.augment = augment
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)

    def forward(
        self, images: Tensor, lengths: Tensor | None, crop: Crop | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Normalise (and in training, augment) a batch; ``lengths`` passes through.
        ``crop``: cut every image to it and resample it bilinearly back to ``H x W`` first
        (a test-time variant, in either mode)."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise InputError(
                f"image frontend expects uint8 RGB images (B, 3, H, W), got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        with torch.autocast(images.device.type, enabled=False):  # float32 under mixed precision
            pixels = images.to(torch.float32) / 255.0
            if crop is not None:
                box = pixels.new_tensor([[crop.side, crop.side, crop.x, crop.y]])
                pixels = crop_and_resize(pixels, *box.unbind(1))
            if self.training and self.augment:
                pixels = color_jitter(random_resized_crop(pixels))
            return (pixels - self.mean) / self.std, lengths


def random_resized_crop(pixels: Tensor) -> Tensor:
    """Crop each ``(B, C, H, W)`` image to its own random box (``CROP_SCALE`` of the area,
    ``CROP_RATIO`` aspect) and resample it bilinearly back to ``H x W``."""
    batch = pixels.shape[0]
    draws = torch.rand(batch, 4, device=pixels.device)
    area = CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * draws[:, 0]
    log_low, log_high = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    ratio = torch.exp(log_low + (log_high - log_low) * draws[:, 1])
    width = (area * ratio).sqrt().clamp(max=1.0)  # fractions of the image side
    height = (area / ratio).sqrt().clamp(max=1.0)
    return crop_and_resize(pixels, width, height, draws[:, 2], draws[:, 3])


def crop_and_resize(pixels: Tensor, width: Tensor, height: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Cut each ``(B, C, H, W)`` image to its box and resample it bilinearly back to ``H x W``.

    All arguments but ``pixels`` are ``(B,)``, or ``(1,)`` for one box for every image (the
    sampling grid is then computed once): the box's width and height as fractions of the
    image's, and its left and top edges at ``x`` and ``y`` of the margin it leaves (0: flush
    with the left / top edge, 1: with the right / bottom).
    """
    boxes = width.size(0)
    left = (1.0 - width) * x
    top = (1.0 - height) * y
    theta = torch.zeros(boxes, 2, 3, device=pixels.device)
    theta[:, 0, 0] = width  # output x in [-1, 1] -> input x in the crop's [-1, 1] span
    theta[:, 0, 2] = 2.0 * left + width - 1.0
    theta[:, 1, 1] = height
    theta[:, 1, 2] = 2.0 * top + height - 1.0
    grid = F.affine_grid(theta, [boxes, *pixels.shape[1:]], align_corners=False)
    grid = grid.expand(pixels.size(0), -1, -1, -1)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)


def color_jitter(pixels: Tensor) -> Tensor:
    """Random brightness, contrast and saturation factors per ``(B, 3, H, W)`` image of values
    in ``[0, 1]`` (torchvision's formulas); the result stays in ``[0, 1]``."""
    factors = {
        name: 1.0 + strength * (2.0 * torch.rand(len(pixels), 1, 1, 1, device=pixels.device) - 1.0)
        for name, strength in COLOR_JITTER.items()
    }
    pixels = (pixels * factors["brightness"]).clamp_(0.0, 1.0)
    mean_gray = _grayscale(pixels).mean(dim=(1, 2, 3), keepdim=True)
    contrast = factors["contrast"]
    pixels = (pixels * contrast).add_(mean_gray * (1.0 - contrast)).clamp_(0.0, 1.0)
    return torch.lerp(_grayscale(pixels), pixels, factors["saturation"]).clamp_(0.0, 1.0)


def _grayscale(pixels: Tensor) -> Tensor:
    """``(B, 3, H, W)`` -> ``(B, 1, H, W)`` luma."""
    weights = torch.tensor([_LUMA], device=pixels.device, dtype=pixels.dtype)  # (1, 3)
    return (weights @ pixels.flatten(2)).view(len(pixels), 1, *pixels.shape[2:])
