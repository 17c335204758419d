"""Random object sizes and positions for a scene: no object covers another's centre."""

import math
import random
from typing import NamedTuple

from multimodal_s2s.errors import InputError

MIN_SIDE_FRACTION = 0.25
MAX_SIDE_FRACTION = 0.6
_ATTEMPTS = 1000


class Box(NamedTuple):
    """A pixel rectangle ``[left, right) x [top, bottom)`` in image coordinates."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def centre(self) -> tuple[float, float]:
        return (self.left + self.right) / 2, (self.top + self.bottom) / 2

    def covers(self, x: float, y: float) -> bool:
        """Whether the point lies strictly inside the box (on the border is not covered)."""
        return self.left < x < self.right and self.top < y < self.bottom


def side_range(image_size: int) -> tuple[int, int]:
    """The smallest and largest allowed longer side (pixels) of an object in the image."""
    return math.ceil(MIN_SIDE_FRACTION * image_size), math.floor(MAX_SIDE_FRACTION * image_size)


def object_size(aspect: float, image_size: int, rng: random.Random) -> tuple[int, int]:
    """A random ``(width, height)`` with the longer side in :func:`side_range`.

    ``aspect`` is the stamp's width / height.
    """
    low, high = side_range(image_size)
    if low > high:
        raise InputError(f"image_size={image_size} is too small for objects of 25-60% of its side")
    longer = rng.randint(low, high)
    shorter = max(1, round(longer * min(aspect, 1 / aspect)))
    return (longer, shorter) if aspect >= 1 else (shorter, longer)


def place_objects(sizes: list[tuple[int, int]], image_size: int, rng: random.Random) -> list[Box]:
    """Random boxes of the given ``(width, height)`` sizes inside a square image.

    Objects may touch or overlap, but no box covers another box's centre.
    """
    for _ in range(_ATTEMPTS):
        boxes = [_random_box(width, height, image_size, rng) for width, height in sizes]
        if not _any_centre_covered(boxes):
            return boxes
    raise InputError(f"cannot place objects of sizes {sizes} in a {image_size}px image")


def _random_box(width: int, height: int, image_size: int, rng: random.Random) -> Box:
    left = rng.randint(0, image_size - width)
    top = rng.randint(0, image_size - height)
    return Box(left, top, left + width, top + height)


def _any_centre_covered(boxes: list[Box]) -> bool:
    return any(
        box.covers(*other.centre)
        for i, box in enumerate(boxes)
        for j, other in enumerate(boxes)
        if i != j
    )
