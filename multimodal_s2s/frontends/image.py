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

These are the defaults of ``ImageAugmentation`` (``data.augmentation`` of an image config),
which can widen them and add Gaussian blur and noise, each in a share of the images (off by
default): for images drawn another way than the training images (issue 40).
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


@dataclass
class ImageAugmentation:
    """Train-time augmentation of the image frontend (``data.augmentation``; module
    docstring). ``crop_scale``: the crop's area as a fraction of the image, ``crop_ratio``:
    its width / height range; ``brightness``, ``contrast``, ``saturation``: each factor
    uniform in ``1 +- strength``; ``blur_probability`` of the images blurred by a Gaussian
    of standard deviation uniform in ``blur_sigma`` pixels; ``noise_probability`` of them
    given Gaussian noise of standard deviation uniform in ``noise_std`` (of the 0-1 range,
    each pixel and channel its own). The defaults are the recipes' augmentation."""

    crop_scale: list[float] = field(default_factory=lambda: list(CROP_SCALE))
    crop_ratio: list[float] = field(default_factory=lambda: list(CROP_RATIO))
    brightness: float = COLOR_JITTER["brightness"]
    contrast: float = COLOR_JITTER["contrast"]
    saturation: float = COLOR_JITTER["saturation"]
    blur_probability: float = 0.0
    blur_sigma: list[float] = field(default_factory=lambda: [0.3, 1.2])
    noise_probability: float = 0.0
    noise_std: list[float] = field(default_factory=lambda: [0.005, 0.03])

    def __post_init__(self) -> None:
        ranges = {
            "crop_scale": self.crop_scale,
            "crop_ratio": self.crop_ratio,
            "blur_sigma": self.blur_sigma,
            "noise_std": self.noise_std,
        }
        for name, (low, high) in ((n, _pair(n, v)) for n, v in ranges.items()):
            if not 0 < low <= high or (name == "crop_scale" and high > 1):
                raise InputError(
                    f"data.augmentation.{name} must be 0 < low <= high, got {ranges[name]}"
                )
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) < 1:
                raise InputError(
                    f"data.augmentation.{name} must be in [0, 1), got {getattr(self, name)}"
                )
        for name in ("blur_probability", "noise_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise InputError(
                    f"data.augmentation.{name} must be in [0, 1], got {getattr(self, name)}"
                )


def _pair(name: str, values: list[float]) -> tuple[float, float]:
    if len(values) != 2:
        raise InputError(f"data.augmentation.{name} must be [low, high], got {values}")
    return float(values[0]), float(values[1])


class ImageFrontend(nn.Module):
    """``uint8`` images ``(B, 3, H, W)`` -> normalised float32 ``(B, 3, H, W)``.

    With ``augment`` and in training mode, each image is randomly cropped and colour-jittered
    first, as ``augmentation`` says (``ImageAugmentation``; by default the module
    docstring's), and maybe blurred and given noise. Always computes in float32, also inside
    an autocast region.
    Holds no parameters and no saved state. ``variants``: the test-time changes ``forward``
    takes (``ImageViews``).
    """

    variants = frozenset({"crop"})

    def __init__(self, augment: bool = True, augmentation: ImageAugmentation | None = None) -> None:
        super().__init__()
        self.augment = augment
        self.augmentation = augmentation if augmentation is not None else ImageAugmentation()
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
                pixels = augment_images(pixels, self.augmentation)
            return (pixels - self.mean) / self.std, lengths


def augment_images(pixels: Tensor, augmentation: ImageAugmentation) -> Tensor:
    """Train-time augmentation of ``(B, 3, H, W)`` images of values in ``[0, 1]``: a random
    resized crop, colour jitter, then (where their probabilities are not 0) blur and noise.
    With the default ``augmentation`` it draws the same random numbers as it always has."""
    a = augmentation
    pixels = random_resized_crop(pixels, tuple(a.crop_scale), tuple(a.crop_ratio))
    strengths = {"brightness": a.brightness, "contrast": a.contrast, "saturation": a.saturation}
    pixels = color_jitter(pixels, strengths)
    if a.blur_probability > 0:
        pixels = random_blur(pixels, a.blur_probability, tuple(a.blur_sigma))
    if a.noise_probability > 0:
        pixels = random_noise(pixels, a.noise_probability, tuple(a.noise_std))
    return pixels


def random_resized_crop(
    pixels: Tensor,
    scale: tuple[float, float] = CROP_SCALE,
    ratio: tuple[float, float] = CROP_RATIO,
) -> Tensor:
    """Crop each ``(B, C, H, W)`` image to its own random box (``scale`` of the area,
    ``ratio`` aspect) and resample it bilinearly back to ``H x W``."""
    batch = pixels.shape[0]
    draws = torch.rand(batch, 4, device=pixels.device)
    area = scale[0] + (scale[1] - scale[0]) * draws[:, 0]
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
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


def color_jitter(pixels: Tensor, strengths: dict[str, float] = COLOR_JITTER) -> Tensor:
    """Random brightness, contrast and saturation factors (each ``1 +- strengths[name]``) per
    ``(B, 3, H, W)`` image of values in ``[0, 1]`` (torchvision's formulas); the result stays
    in ``[0, 1]``."""
    factors = {
        name: 1.0 + strength * (2.0 * torch.rand(len(pixels), 1, 1, 1, device=pixels.device) - 1.0)
        for name, strength in strengths.items()
    }
    pixels = (pixels * factors["brightness"]).clamp_(0.0, 1.0)
    mean_gray = _grayscale(pixels).mean(dim=(1, 2, 3), keepdim=True)
    contrast = factors["contrast"]
    pixels = (pixels * contrast).add_(mean_gray * (1.0 - contrast)).clamp_(0.0, 1.0)
    return torch.lerp(_grayscale(pixels), pixels, factors["saturation"]).clamp_(0.0, 1.0)


def random_blur(pixels: Tensor, probability: float, sigma: tuple[float, float]) -> Tensor:
    """Blur a random ``probability`` share of the ``(B, C, H, W)`` images, each by a Gaussian
    of its own standard deviation (uniform in ``sigma`` pixels; separable, borders
    replicated); the others pass unchanged."""
    batch, channels = pixels.shape[:2]
    chosen = torch.rand(batch, device=pixels.device) < probability
    sigmas = sigma[0] + (sigma[1] - sigma[0]) * torch.rand(batch, device=pixels.device)
    picked = chosen.nonzero().flatten()
    if picked.numel() == 0:
        return pixels
    radius = max(1, math.ceil(3 * sigma[1]))
    offsets = torch.arange(-radius, radius + 1, device=pixels.device, dtype=pixels.dtype)
    kernels = torch.exp(-0.5 * (offsets / sigmas[picked, None]) ** 2)
    kernels = (kernels / kernels.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)
    groups = picked.numel() * channels
    flat = pixels[picked].reshape(1, groups, *pixels.shape[2:])
    flat = F.pad(flat, (radius, radius, radius, radius), mode="replicate")
    flat = F.conv2d(flat, kernels.view(-1, 1, 1, 2 * radius + 1), groups=groups)
    flat = F.conv2d(flat, kernels.view(-1, 1, 2 * radius + 1, 1), groups=groups)
    blurred = pixels.clone()
    blurred[picked] = flat.view(picked.numel(), channels, *pixels.shape[2:])
    return blurred


def random_noise(pixels: Tensor, probability: float, std: tuple[float, float]) -> Tensor:
    """Add Gaussian noise (standard deviation uniform in ``std``, its own per image) to a
    random ``probability`` share of the ``(B, C, H, W)`` images in ``[0, 1]``; clamped."""
    batch = pixels.shape[0]
    chosen = torch.rand(batch, device=pixels.device) < probability
    stds = std[0] + (std[1] - std[0]) * torch.rand(batch, device=pixels.device)
    stds = torch.where(chosen, stds, torch.zeros_like(stds)).view(batch, 1, 1, 1)
    return (pixels + stds * torch.randn_like(pixels)).clamp_(0.0, 1.0)


def _grayscale(pixels: Tensor) -> Tensor:
    """``(B, 3, H, W)`` -> ``(B, 1, H, W)`` luma."""
    weights = torch.tensor([_LUMA], device=pixels.device, dtype=pixels.dtype)  # (1, 3)
    return (weights @ pixels.flatten(2)).view(len(pixels), 1, *pixels.shape[2:])
