"""The varied composition of the scene corpus (``prepare --composition varied``).

The classic composition (:mod:`.render`) draws every object the same way: the stamp's own
alpha, Lanczos-resized, its longer side uniform in 25-60% of the image, no box covering the
other's centre, over a square crop of a MATE photo or a generated texture, with no lighting
or noise. A model trained on it learned that drawing too: it named 45% of the objects of
scenes composited another way (issue 40). This composition draws the same planned scenes
(:mod:`.plan`: objects, stamps, backgrounds) far more variously; every random choice comes
from the corpus seed and the scene id, so the corpus is the same on every build:

==================  =============================================================================
object size         longer side log-uniform in :data:`SIDE_FRACTIONS` (16-62%) of the image side
aspect              width / height times a log-uniform factor in 1 / 1.25 - 1.25
resampling          Lanczos, bicubic, bilinear, box or Hamming, from a stamp of up to twice the
                    image side
rotation            uniform in +-15 degrees in half of the objects (the box is the rotated
                    stamp's)
edges               the stamp's alpha (40%), soft (alpha blurred 0.3-1.2 px, 30%) or hard
                    (alpha cut at a threshold of 64-192, 30%); a 1-pixel sticker outline in 10%
object light        in 30% of the objects: their own brightness 0.75-1.25 and a slight tint
placement           uniform boxes inside the image; they may overlap, but the object drawn
                    below keeps at least :data:`MIN_VISIBLE_FRACTION` of its alpha visible,
                    and the centres lie at least :data:`MIN_CENTRE_DISTANCE_FRACTION` of the
                    side apart along x or y; the upper object is either one
shadow              in 35% of the scenes: each object casts a blurred (0.5-2.5 px) drop shadow
                    of opacity 0.25-0.7, offset 2-10% of the side in one direction per scene
background          MATE photos, the images of :data:`.backgrounds.PACKAGE_BACKGROUNDS`, and
                    generated textures of :data:`.backgrounds.VARIED_TEXTURE_KINDS`; a crop of
                    20-100% of the shorter side with its aspect jittered by up to 1.3, any of the
                    resamplings, mirrored half the time, blurred 0.3-1.5 px in 30% of scenes
lighting            colour temperature (red and blue gains 1 +- 0.15), saturation 0.6-1.4,
                    contrast and brightness 0.65-1.35, gamma 0.75-1.33
camera              Gaussian blur 0.3-0.9 px in 20% of scenes; Gaussian noise of 1-8 levels
                    in half (per channel or grey); JPEG quality 35-95, chroma 4:4:4, 4:2:2 or
                    4:2:0 (decoded again before the corpus file is written)
==================  =============================================================================

The caption follows the grammar's rule (``data/scene_captions.py``) on the centres of the
boxes around the objects' visible pixels as drawn (alpha of at least
:data:`ALPHA_FLOOR`; fainter pixels are cleared), as in the classic composition. Nothing of
the independently composited splits' code (:mod:`.independent`) is used.
"""

import io
import math
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from multimodal_s2s.corpora.scenes.backgrounds import load_background
from multimodal_s2s.corpora.scenes.layout import Box
from multimodal_s2s.corpora.scenes.plan import SceneSpec
from multimodal_s2s.corpora.scenes.render import RenderedScene
from multimodal_s2s.corpora.scenes.stamps import load_stamp
from multimodal_s2s.data.scene_captions import PlacedObject, caption_structure
from multimodal_s2s.errors import InputError

VERSION = 1
SIDE_FRACTIONS = (0.16, 0.62)
ASPECT_JITTER = 1.25
ROTATION_PROBABILITY = 0.5
MAX_ROTATION_DEGREES = 15.0
EDGES = (("own", 0.4), ("soft", 0.3), ("hard", 0.3))
OUTLINE_PROBABILITY = 0.1
OBJECT_LIGHT_PROBABILITY = 0.3
MIN_VISIBLE_FRACTION = 0.6
MIN_CENTRE_DISTANCE_FRACTION = 0.12
SHADOW_PROBABILITY = 0.35
BACKGROUND_CROP = (0.2, 1.0)
BACKGROUND_ASPECT = 1.3
BACKGROUND_BLUR_PROBABILITY = 0.3
IMAGE_BLUR_PROBABILITY = 0.2
NOISE_PROBABILITY = 0.5
JPEG_QUALITY = (35, 95)
ALPHA_FLOOR = 8

_RESAMPLINGS = (
    Image.Resampling.LANCZOS,
    Image.Resampling.BICUBIC,
    Image.Resampling.BILINEAR,
    Image.Resampling.BOX,
    Image.Resampling.HAMMING,
)
_STAMP_SCALE = 2
_FLOOR = [0 if value < ALPHA_FLOOR else value for value in range(256)]
_OUTLINE_SHAPE = [255 if value >= 64 else 0 for value in range(256)]
_ATTEMPTS = 300
_SHRINK = 0.85


def parameters() -> dict:
    """The composition's version and settings, as the corpus records them (``corpus.json``),
    so that a corpus drawn with other settings is drawn again rather than reused."""
    return {
        "version": VERSION,
        "side_fractions": list(SIDE_FRACTIONS),
        "aspect_jitter": ASPECT_JITTER,
        "rotation": [ROTATION_PROBABILITY, MAX_ROTATION_DEGREES],
        "edges": [list(option) for option in EDGES],
        "outline": OUTLINE_PROBABILITY,
        "object_light": OBJECT_LIGHT_PROBABILITY,
        "min_visible_fraction": MIN_VISIBLE_FRACTION,
        "min_centre_distance_fraction": MIN_CENTRE_DISTANCE_FRACTION,
        "shadow": SHADOW_PROBABILITY,
        "background_crop": list(BACKGROUND_CROP),
        "background_aspect": BACKGROUND_ASPECT,
        "background_blur": BACKGROUND_BLUR_PROBABILITY,
        "image_blur": IMAGE_BLUR_PROBABILITY,
        "noise": NOISE_PROBABILITY,
        "jpeg_quality": list(JPEG_QUALITY),
        "alpha_floor": ALPHA_FLOOR,
    }


class VariedRenderer:
    """Renders scenes of side ``image_size`` in the varied composition; a scene's randomness
    comes from ``seed`` and its id. Stamps, photos and textures are loaded once and kept.

    ``photo_files`` maps every photo background id (MATE's and the packages') to its file.
    """

    def __init__(self, image_size: int, seed: int, photo_files: dict[str, Path]) -> None:
        if image_size < 16:
            raise InputError(f"the varied composition needs image_size >= 16, got {image_size}")
        self.image_size = image_size
        self.seed = seed
        self.photo_files = photo_files
        self._stamps: dict[Path, Image.Image] = {}
        self._backgrounds: dict[str, Image.Image] = {}

    def render(self, spec: SceneSpec) -> RenderedScene:
        """The scene, with ``composition`` (the random choices made, for the manifest)."""
        rng = random.Random(f"{self.seed}/varied/{spec.id}")
        details = [{} for _ in spec.stamps]
        objects = [
            self._object(path, rng, detail)
            for path, detail in zip(spec.stamps, details, strict=True)
        ]
        order = list(range(len(objects)))  # drawing order: the last is on top
        if rng.random() < 0.5:
            order.reverse()
        drawn, boxes = self._place(objects, order, rng)
        image, composition = self._background_view(spec.background, rng)
        shadow = _shadow_settings(self.image_size, rng)
        for index in order:
            if shadow is not None:
                _cast_shadow(image, drawn[index], boxes[index], shadow)
            image.paste(drawn[index], boxes[index][:2], drawn[index])
        image = _light(image, rng, composition)
        image = _camera(image, rng, composition)
        composition["shadow"] = shadow is not None
        composition["on_top"] = spec.objects[order[-1]]
        for detail, box in zip(details, boxes, strict=True):
            detail["size"] = [box.right - box.left, box.bottom - box.top]
        composition["objects"] = details
        placed = [
            PlacedObject(name, *box.centre) for name, box in zip(spec.objects, boxes, strict=True)
        ]
        return RenderedScene(image, boxes, caption_structure(placed), drawn, composition)

    def _object(self, path: Path, rng: random.Random, detail: dict) -> Image.Image:
        """One stamp sized, stretched, rotated, edged, outlined and lit at random; RGBA,
        cropped to its pixels of alpha >= ``ALPHA_FLOOR`` (fainter ones cleared)."""
        stamp = self._stamp(path)
        size = self.image_size
        low, high = (math.log(f * size) for f in SIDE_FRACTIONS)
        longer = math.exp(rng.uniform(low, high))
        aspect = math.exp(rng.uniform(-math.log(ASPECT_JITTER), math.log(ASPECT_JITTER)))
        width, height = stamp.width * math.sqrt(aspect), stamp.height / math.sqrt(aspect)
        scale = longer / max(width, height)
        resampling = rng.choice(_RESAMPLINGS)
        sized = stamp.resize(
            (max(1, round(width * scale)), max(1, round(height * scale))), resampling
        )
        angle = 0.0
        if rng.random() < ROTATION_PROBABILITY:
            angle = rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES)
            sized = sized.rotate(angle, Image.Resampling.BICUBIC, expand=True)
        edges = _weighted_choice(EDGES, rng)
        edged = _edges(sized, edges, rng)
        outline = rng.random() < OUTLINE_PROBABILITY
        if outline:
            edged = _outline(edged, rng)
        lit = rng.random() < OBJECT_LIGHT_PROBABILITY
        if lit:
            edged = _object_light(edged, rng)
        drawn = _tight(edged)
        if drawn is None:  # the edges removed every pixel (a thin, faint stamp made small)
            drawn = _tight(sized)
        if drawn is None:
            raise InputError(f"stamp {path} vanishes at {sized.width} x {sized.height} pixels")
        if max(drawn.size) > size:
            drawn = _shrunk(drawn, size / max(drawn.size))
        detail.update(
            aspect=round(aspect, 3),
            rotation=round(angle, 2),
            edges=edges,
            outline=outline,
            lit=lit,
        )
        return drawn

    def _place(
        self, objects: list[Image.Image], order: list[int], rng: random.Random
    ) -> tuple[list[Image.Image], list[Box]]:
        """Uniform boxes for the objects (in spec order) that leave the lower one at least
        ``MIN_VISIBLE_FRACTION`` visible, with centres apart; the objects shrink by 15% after
        every ``_ATTEMPTS`` failed draws."""
        size = self.image_size
        while True:
            for _ in range(_ATTEMPTS):
                boxes = []
                for stamp in objects:
                    left = rng.randint(0, size - stamp.width)
                    top = rng.randint(0, size - stamp.height)
                    boxes.append(Box(left, top, left + stamp.width, top + stamp.height))
                if len(boxes) == 1:
                    return objects, boxes
                (x1, y1), (x2, y2) = boxes[0].centre, boxes[1].centre
                if max(abs(x1 - x2), abs(y1 - y2)) < MIN_CENTRE_DISTANCE_FRACTION * size:
                    continue
                lower, upper = order
                fraction = visible_fraction(
                    objects[lower], boxes[lower], objects[upper], boxes[upper]
                )
                if fraction >= MIN_VISIBLE_FRACTION:
                    return objects, boxes
            objects = [_shrunk(stamp, _SHRINK) for stamp in objects]

    def _background_view(self, background: str, rng: random.Random) -> tuple[Image.Image, dict]:
        """A crop of 20-100% of the source's shorter side, its aspect jittered, resized to
        the image with a random resampling, maybe mirrored and blurred; RGB."""
        source = self._background(background)
        shorter = min(source.size)
        side = rng.uniform(*BACKGROUND_CROP) * shorter
        aspect = math.exp(rng.uniform(-math.log(BACKGROUND_ASPECT), math.log(BACKGROUND_ASPECT)))
        width = max(1, min(source.width, round(side * math.sqrt(aspect))))
        height = max(1, min(source.height, round(side / math.sqrt(aspect))))
        left = rng.randint(0, source.width - width)
        top = rng.randint(0, source.height - height)
        view = source.crop((left, top, left + width, top + height))
        view = view.resize((self.image_size, self.image_size), rng.choice(_RESAMPLINGS))
        if rng.random() < 0.5:
            view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if view.mode == "RGBA":
            colour = tuple(rng.randrange(256) for _ in range(3))
            view = Image.alpha_composite(Image.new("RGBA", view.size, (*colour, 255)), view)
        view = view.convert("RGB")
        blur = rng.uniform(0.3, 1.5) if rng.random() < BACKGROUND_BLUR_PROBABILITY else 0.0
        if blur:
            view = view.filter(ImageFilter.GaussianBlur(blur))
        return view, {"crop": round(side / shorter, 3), "background_blur": round(blur, 3)}

    def _stamp(self, path: Path) -> Image.Image:
        if path not in self._stamps:
            self._stamps[path] = load_stamp(path, _STAMP_SCALE * self.image_size)
        return self._stamps[path]

    def _background(self, background_id: str) -> Image.Image:
        if background_id not in self._backgrounds:
            self._backgrounds[background_id] = load_background(
                background_id, self.photo_files, self.image_size, self.seed
            )
        return self._backgrounds[background_id]


def visible_fraction(
    lower: Image.Image, lower_box: Box, upper: Image.Image, upper_box: Box
) -> float:
    """The share of the lower object's alpha that the upper one, drawn over it, leaves
    visible (each object an RGBA image pasted at its box's top-left corner)."""
    below = np.asarray(lower.getchannel("A"), np.float32) / 255
    total = float(below.sum())
    if total == 0:
        return 0.0
    left, top = max(lower_box.left, upper_box.left), max(lower_box.top, upper_box.top)
    right, bottom = min(lower_box.right, upper_box.right), min(lower_box.bottom, upper_box.bottom)
    if left >= right or top >= bottom:
        return 1.0
    above = np.asarray(upper.getchannel("A"), np.float32) / 255
    rows, cols = slice(top, bottom), slice(left, right)
    low = below[_shifted(rows, lower_box.top), _shifted(cols, lower_box.left)]
    high = above[_shifted(rows, upper_box.top), _shifted(cols, upper_box.left)]
    return 1.0 - float((low * high).sum()) / total


def _shifted(span: slice, origin: int) -> slice:
    return slice(span.start - origin, span.stop - origin)


def _weighted_choice(options: tuple[tuple[str, float], ...], rng: random.Random) -> str:
    draw = rng.random()
    for name, probability in options:
        if draw < probability:
            return name
        draw -= probability
    return options[-1][0]


def _edges(stamp: Image.Image, edges: str, rng: random.Random) -> Image.Image:
    """``own``: the alpha as it is; ``soft``: the alpha blurred (the stamp padded so the blur
    can spread); ``hard``: alpha at or above a random threshold opaque, the rest cleared (the
    threshold lowered to the median visible alpha where it would clear more than half of the
    visible pixels, as in a translucent stamp)."""
    if edges == "own":
        return stamp
    alpha = np.asarray(stamp.getchannel("A"))
    if edges == "soft":  # blurred with premultiplied colours, so no dark fringe
        radius = rng.uniform(0.3, 1.2)
        margin = math.ceil(2 * radius) + 1
        padded = Image.new("RGBA", (stamp.width + 2 * margin, stamp.height + 2 * margin))
        padded.paste(stamp, (margin, margin))
        return padded.convert("RGBa").filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
    threshold = rng.randint(64, 192)
    visible = alpha[alpha > 0]
    if len(visible) and (visible >= threshold).mean() < 0.5:
        threshold = max(1, int(np.median(visible)))
    result = stamp.copy()
    result.putalpha(Image.fromarray(np.where(alpha >= threshold, 255, 0).astype(np.uint8)))
    return result


def _outline(stamp: Image.Image, rng: random.Random) -> Image.Image:
    """The stamp over a 1-pixel border of one colour (light, dark or any) around its shape."""
    padded = Image.new("RGBA", (stamp.width + 2, stamp.height + 2))
    padded.paste(stamp, (1, 1))
    shape = padded.getchannel("A").point(_OUTLINE_SHAPE)
    border = shape.filter(ImageFilter.MaxFilter(3))
    kind = rng.randrange(3)
    if kind == 0:
        colour = (255, 255, 255)
    elif kind == 1:
        colour = (0, 0, 0)
    else:
        colour = tuple(rng.randrange(256) for _ in range(3))
    base = Image.new("RGBA", padded.size, (*colour, 0))
    base.putalpha(border)
    return Image.alpha_composite(base, padded)


def _object_light(stamp: Image.Image, rng: random.Random) -> Image.Image:
    """The object's colours times its own brightness (0.75-1.25) and a slight tint."""
    gain = rng.uniform(0.75, 1.25)
    tint = np.array([gain * rng.uniform(0.95, 1.05) for _ in range(3)], np.float32)
    pixels = np.asarray(stamp, np.float32).copy()
    pixels[..., :3] = np.clip(np.rint(pixels[..., :3] * tint), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8), "RGBA")


def _tight(stamp: Image.Image) -> Image.Image | None:
    """The stamp with alpha under ``ALPHA_FLOOR`` cleared, cropped to the rest; None when
    nothing is left."""
    alpha = stamp.getchannel("A").point(_FLOOR)
    box = alpha.getbbox()
    if box is None:
        return None
    result = stamp.copy()
    result.putalpha(alpha)
    return result.crop(box)


def _shrunk(stamp: Image.Image, factor: float) -> Image.Image:
    """The stamp resized by ``factor`` (Lanczos), cropped tight again."""
    size = (max(1, round(stamp.width * factor)), max(1, round(stamp.height * factor)))
    smaller = _tight(stamp.resize(size, Image.Resampling.LANCZOS))
    return smaller if smaller is not None else stamp.resize(size, Image.Resampling.NEAREST)


def _shadow_settings(size: int, rng: random.Random) -> dict | None:
    if rng.random() >= SHADOW_PROBABILITY:
        return None
    angle = rng.uniform(0, 2 * math.pi)
    length = rng.uniform(0.02, 0.1) * size
    return {
        "offset": (round(length * math.cos(angle)), round(length * math.sin(angle))),
        "blur": rng.uniform(0.5, 2.5),
        "opacity": rng.uniform(0.25, 0.7),
    }


def _cast_shadow(image: Image.Image, stamp: Image.Image, box: Box, shadow: dict) -> None:
    """Darken ``image`` under the object's blurred alpha, offset (clipped to the image)."""
    margin = math.ceil(3 * shadow["blur"]) + 1
    mask = Image.new("L", (stamp.width + 2 * margin, stamp.height + 2 * margin))
    mask.paste(stamp.getchannel("A"), (margin, margin))
    mask = mask.filter(ImageFilter.GaussianBlur(shadow["blur"]))
    mask = Image.fromarray(
        np.rint(np.asarray(mask, np.float32) * shadow["opacity"]).astype(np.uint8)
    )
    dx, dy = shadow["offset"]
    image.paste((0, 0, 0), (box.left - margin + dx, box.top - margin + dy), mask)


def _light(image: Image.Image, rng: random.Random, composition: dict) -> Image.Image:
    """Colour temperature, saturation, contrast about the mean grey, brightness and gamma."""
    temperature = rng.uniform(-1, 1)
    saturation = rng.uniform(0.6, 1.4)
    contrast = rng.uniform(0.65, 1.35)
    brightness = rng.uniform(0.65, 1.35)
    gamma = math.exp(rng.uniform(math.log(0.75), math.log(1 / 0.75)))
    pixels = np.asarray(image, np.float32) / 255
    pixels = pixels * np.array([1 + 0.15 * temperature, 1, 1 - 0.15 * temperature], np.float32)
    grey = pixels @ np.array([0.299, 0.587, 0.114], np.float32)
    pixels = grey[..., None] + saturation * (pixels - grey[..., None])
    pixels = (pixels - grey.mean()) * contrast + grey.mean()
    pixels = np.clip(pixels * brightness, 0, 1) ** gamma
    composition.update(
        temperature=round(temperature, 3),
        saturation=round(saturation, 3),
        contrast=round(contrast, 3),
        brightness=round(brightness, 3),
        gamma=round(gamma, 3),
    )
    return Image.fromarray(np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8), "RGB")


def _camera(image: Image.Image, rng: random.Random, composition: dict) -> Image.Image:
    """Blur in some scenes, Gaussian noise (per channel or grey) in half, and a JPEG round
    trip at a random quality and chroma subsampling."""
    blur = rng.uniform(0.3, 0.9) if rng.random() < IMAGE_BLUR_PROBABILITY else 0.0
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    noise = rng.uniform(1, 8) if rng.random() < NOISE_PROBABILITY else 0.0
    if noise:
        generator = np.random.default_rng(rng.getrandbits(64))
        shape = (image.height, image.width, 3 if rng.random() < 0.5 else 1)
        pixels = np.asarray(image, np.float32) + generator.normal(0, noise, shape)
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
    quality = rng.randint(*JPEG_QUALITY)
    subsampling = rng.randrange(3)  # 0: 4:4:4, 1: 4:2:2, 2: 4:2:0
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, subsampling=subsampling)
    with Image.open(buffer) as decoded:
        image = decoded.convert("RGB")
    composition.update(
        blur=round(blur, 3), noise=round(noise, 3), quality=quality, subsampling=subsampling
    )
    return image
