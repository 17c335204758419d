"""Where the relation goes wrong: by a scene's distance from the diagonal, and in the memory.

    python recipes/scenes_captioning/relation_analysis.py --corpus CACHE \
        --report RUN/report/test.jsonl [--model RUN/best.pt]

The scene corpus is seeded, so each test scene is rendered again to get its objects'
centres and its margin ``| |dx| - |dy| |`` in pixels (the caption says "left of" when
``|dx| >= |dy|``). First, how often the pixels decide the relation: the caption's rule
applied to the centres of the boxes around each object's visible pixels (alpha at least 1,
less those of the object drawn over it). Then the report's captions (``ms2s evaluate
--report``) are counted: how many name two different objects, and how often their relation
word is right, by margin, and how often they say "left of" by the signed margin
``|dx| - |dy|``: whether the captions near the diagonal lean to one relation (a bias) or
scatter around it (imprecise centres).

With ``--model``, a logistic-regression probe is trained on the frozen encoder memory of
the first ``--probe-train`` training scenes to predict the relation, and scored on the test
scenes by margin: how much of the relation the memory itself holds.
"""

import argparse
import json
from pathlib import Path

import torch
from PIL import Image, ImageChops

from multimodal_s2s.checkpoint import load_model
from multimodal_s2s.corpora.scenes.backgrounds import find_package_photos, find_photos
from multimodal_s2s.corpora.scenes.plan import SceneSpec
from multimodal_s2s.corpora.scenes.prepare import (
    CORPUS_VERSION,
    CompositionRenderer,
    plan_corpus,
)
from multimodal_s2s.corpora.scenes.render import RenderedScene
from multimodal_s2s.corpora.scenes.stamps import find_objects
from multimodal_s2s.data.image import build_image_transform, load_image
from multimodal_s2s.data.scene_captions import (
    LEFT,
    PlacedObject,
    caption_structure,
    parse_caption,
)

MARGIN_BUCKETS = ((0, 2), (2, 4), (4, 8), (8, None))
SIGNED_BUCKETS = ((-64, -8), (-8, -4), (-4, -2), (-2, 0), (0, 2), (2, 4), (4, 8), (8, 64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="the prepared corpus folder")
    parser.add_argument("--report", type=Path, required=True, help="a report's test.jsonl")
    parser.add_argument("--model", type=Path, help="a checkpoint to probe")
    parser.add_argument("--probe-train", type=int, default=10000)
    args = parser.parse_args()
    scenes = _SceneGeometry(args.corpus)
    test = [spec for spec in scenes.plan["test"] if len(spec.objects) == 2]
    signed, horizontal, visible = scenes.relations(test)
    margins = {key: abs(value) for key, value in signed.items()}
    print("the visible pixels' boxes give the caption's relation:")
    _print_by_margin(list(margins.values()), visible)
    rows = {Path(r["key"]).stem: r for r in map(json.loads, args.report.open())}
    _print_caption_relations(test, rows, signed)
    if args.model is not None:
        train = [s for s in scenes.plan["train"][: args.probe_train] if len(s.objects) == 2]
        correct = _probe(args.model, scenes, train, test, horizontal)
        print(f"probe on the memory of {len(train)} training scenes, test accuracy:")
        _print_by_margin(list(margins.values()), correct)


def _print_caption_relations(
    test: list[SceneSpec], rows: dict[str, dict], signed: dict[str, float]
) -> None:
    """How often the report's captions that name two different objects get the relation
    word right, by margin, and how often they say "left of", by signed margin."""
    right = {}
    for spec in test:
        hyp, ref = parse_caption(rows[spec.id]["hyp"]), parse_caption(rows[spec.id]["ref"])
        if len(set(hyp.objects)) == 2:
            right[spec.id] = hyp.relation == ref.relation
    named = f"{len(right)} of {len(test)} captions name two different objects"
    if not right:
        print(f"{named}: no relation word to score")
        return
    print(f"{named}; relation word right:")
    _print_by_margin([abs(signed[key]) for key in right], list(right.values()))
    said_left = [parse_caption(rows[key]["hyp"]).relation == LEFT for key in right]
    print('they say "left of" by signed margin |dx| - |dy| (> 0: left of is right):')
    _print_by_margin([signed[key] for key in right], said_left, SIGNED_BUCKETS)


class _SceneGeometry:
    """The corpus's scene plan and renderer, rebuilt from its settings (a corpus of another
    version was planned by other code, so its scenes cannot be rebuilt)."""

    def __init__(self, corpus: Path) -> None:
        self.corpus = corpus
        settings = json.loads((corpus / "corpus.json").read_text())["settings"]
        if settings["version"] != CORPUS_VERSION:
            raise SystemExit(
                f"{corpus} is a version {settings['version']} corpus; this code plans version "
                f"{CORPUS_VERSION}"
            )
        photos = find_photos()
        if "composition" in settings:  # prepare --composition varied or mixed
            photos |= find_package_photos()
        self.plan = plan_corpus(find_objects(), photos, settings)
        self.renderer = CompositionRenderer(settings["image_size"], settings["seed"], photos)
        self.image_size = settings["image_size"]
        self.image_format = settings["image_format"]

    def relations(self, specs: list[SceneSpec]) -> tuple[dict[str, float], list[bool], list[bool]]:
        """Each two-object scene's signed margin from the diagonal ``|dx| - |dy|`` (the
        caption says "left of" when it is at least 0), whether its caption says "left of",
        and whether its visible pixels give the caption's relation."""
        signed, horizontal, visible = {}, [], []
        for spec in specs:
            scene = self.renderer.render(spec)
            first, second = (box.centre for box in scene.boxes)
            signed[spec.id] = abs(first[0] - second[0]) - abs(first[1] - second[1])
            horizontal.append(scene.caption.relation == LEFT)
            # drawing order: spec order, but a varied scene may draw the first object on top
            order = list(range(len(scene.boxes)))
            if scene.composition is not None and scene.composition["on_top"] == spec.objects[0]:
                order.reverse()
            masks = [_drawn_mask(scene, index) for index in order]
            seen = [
                PlacedObject(name, *_visible_centre(masks, order.index(index)))
                for index, name in enumerate(spec.objects)
            ]
            visible.append(caption_structure(seen).relation == scene.caption.relation)
        return signed, horizontal, visible

    def images(self, split: str, specs: list[SceneSpec]) -> torch.Tensor:
        """``(N, 3, S, S)`` uint8 images of the scenes, as the corpus saved them."""
        transform = build_image_transform(self.image_size)
        folder = self.corpus / "images" / split
        return torch.stack(
            [transform(load_image(folder / f"{s.id}.{self.image_format}")) for s in specs]
        )


def _drawn_mask(scene: RenderedScene, index: int) -> Image.Image:
    """An image-sized ``L`` mask, 255 where object ``index``'s stamp has alpha at least 1."""
    stamp, box = scene.stamps[index], scene.boxes[index]
    mask = Image.new("L", scene.image.size)
    mask.paste(stamp.getchannel("A").point(lambda value: 255 if value else 0), box[:2])
    return mask


def _visible_centre(masks: list[Image.Image], index: int) -> tuple[float, float]:
    """The centre of the box around object ``index``'s mask less the masks drawn after it
    (all of its mask when they cover every pixel)."""
    shown = masks[index]
    for cover in masks[index + 1 :]:
        shown = ImageChops.subtract(shown, cover)
    left, top, right, bottom = shown.getbbox() or masks[index].getbbox()
    return (left + right) / 2, (top + bottom) / 2


def _probe(
    model_path: Path,
    scenes: _SceneGeometry,
    train: list[SceneSpec],
    test: list[SceneSpec],
    test_horizontal: list[bool],
) -> list[bool]:
    """Per test scene: does a probe trained on the training scenes' memory get it right?"""
    model = load_model(model_path)[0]
    features = {}
    horizontal = {"train": scenes.relations(train)[1], "test": test_horizontal}
    for split, specs in (("train", train), ("test", test)):
        images = scenes.images(split, specs)
        with torch.no_grad():
            memory = [model.encode(chunk).memory.flatten(1) for chunk in images.split(100)]
        labels = torch.tensor(horizontal[split], dtype=torch.float32)
        features[split] = (torch.cat(memory), labels)
    (x_train, y_train), (x_test, y_test) = features["train"], features["test"]
    mean, std = x_train.mean(0), x_train.std(0) + 1e-5
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    torch.manual_seed(0)
    probe = torch.nn.Linear(x_train.shape[1], 1)
    optimizer = torch.optim.AdamW(probe.parameters(), 1e-3, weight_decay=1e-2)
    for _ in range(60):
        for batch in torch.randperm(len(x_train)).split(256):
            logits = probe(x_train[batch]).squeeze(1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return ((probe(x_test).squeeze(1) > 0).float() == y_test).tolist()


def _print_by_margin(
    margins: list[float], right: list[bool], buckets: tuple = MARGIN_BUCKETS
) -> None:
    """The share of ``right`` over all and within each bucket ``(low, high)`` of margins
    (pixels from the diagonal; ``high`` None: no upper bound)."""
    print(f"  all: {sum(right) / len(right):.3f} of {len(right)}")
    for low, high in buckets:
        top = float("inf") if high is None else high
        inside = [r for m, r in zip(margins, right, strict=True) if low <= m < top]
        label = f"{low}+ px" if high is None else f"{low} to {high} px"
        print(f"  {label}: {sum(inside) / max(1, len(inside)):.3f} of {len(inside)}")


if __name__ == "__main__":
    main()
