"""Draw a planned scene: a background view with stamps composited through their alpha."""

import random
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from multimodal_s2s.corpora.scenes.backgrounds import (
    load_background,
    random_view,
)
from multimodal_s2s.corpora.scenes.layout import Box, object_size, place_objects, side_range
from multimodal_s2s.corpora.scenes.plan import SceneSpec
from multimodal_s2s.corpora.scenes.stamps import load_stamp
from multimodal_s2s.data.scene_captions import ParsedCaption, PlacedObject, caption_structure


class RenderedScene(NamedTuple):
    """A drawn scene: the RGB image, each object's box (in spec order), its caption parts, and
    each object's stamp as drawn (RGBA, the size of its box, pasted at the box's top-left
    corner; here in spec order, each drawn over the ones before it). ``composition``: the
    random choices of a scene of the varied composition (:mod:`.varied`; its
    ``on_top`` names the object drawn last), else None."""

    image: Image.Image
    boxes: list[Box]
    caption: ParsedCaption
    stamps: list[Image.Image]
    composition: dict | None = None


class SceneRenderer:
    """Renders scenes of side ``image_size``; a scene's randomness comes from ``seed`` and its id.

    Stamps, photos and textures are loaded once and kept.
    """

    def __init__(self, image_size: int, seed: int, photo_files: dict[str, Path]) -> None:
        self.image_size = image_size
        self.seed = seed
        self.photo_files = photo_files
        self._stamps: dict[Path, Image.Image] = {}
        self._backgrounds: dict[str, Image.Image] = {}

    def render(self, spec: SceneSpec) -> RenderedScene:
        rng = random.Random(f"{self.seed}/{spec.id}")
        stamps = [self._stamp(path) for path in spec.stamps]
        sizes = [object_size(s.width / s.height, self.image_size, rng) for s in stamps]
        boxes = place_objects(sizes, self.image_size, rng)
        image = random_view(self._background(spec.background), self.image_size, rng)
        drawn = []
        for stamp, box in zip(stamps, boxes, strict=True):
            scaled = stamp.resize(
                (box.right - box.left, box.bottom - box.top), Image.Resampling.LANCZOS
            )
            image.paste(scaled, (box.left, box.top), scaled)
            drawn.append(scaled)
        placed = [
            PlacedObject(name, *box.centre) for name, box in zip(spec.objects, boxes, strict=True)
        ]
        return RenderedScene(image, boxes, caption_structure(placed), drawn)

    def _stamp(self, path: Path) -> Image.Image:
        if path not in self._stamps:
            self._stamps[path] = load_stamp(path, side_range(self.image_size)[1])
        return self._stamps[path]

    def _background(self, background_id: str) -> Image.Image:
        if background_id not in self._backgrounds:
            self._backgrounds[background_id] = load_background(
                background_id, self.photo_files, self.image_size, self.seed
            )
        return self._backgrounds[background_id]
