"""Which objects and background each scene of each split gets.

Every object appears alone in training (several times for the default counts) and in
training pairs; ``SINGLE_FRACTION`` of the training scenes hold one object (but at least
one scene per object). Dev and test scenes hold two objects whose pair never occurs in
training, on backgrounds whose family (see :func:`.backgrounds.family`) never occurs in
training; dev and test also use disjoint pairs and background families.

Since every dev and test scene holds two objects, the single fraction is kept small: with
more one-object scenes the recipe's captioning model ended more test captions after one
object and got fewer relations right (``recipes/scenes_captioning/experiments.md``).
"""

import itertools
import random
from pathlib import Path
from typing import NamedTuple

from multimodal_s2s.corpora.scenes.backgrounds import family
from multimodal_s2s.errors import InputError

SPLITS = ("train", "dev", "test")
SINGLE_FRACTION = 0.1
HELD_OUT_FRACTION = 0.15
PHOTO_PROBABILITY = 0.5

Pair = tuple[str, str]


class SceneSpec(NamedTuple):
    """One scene to render: object names with the stamp drawn for each, a background id, and
    the composition that draws it (``"classic"``: :mod:`.render`, ``"varied"``: :mod:`.varied`)."""

    id: str
    objects: tuple[str, ...]
    stamps: tuple[Path, ...]
    background: str
    composition: str = "classic"


def split_backgrounds(
    photo_ids: list[str], texture_ids: list[str], rng: random.Random
) -> dict[str, dict[str, list[str]]]:
    """``{split: {"photo": ids, "texture": ids}}`` with each background family in one split.

    Of each kind, about 15% of the families go to test and 15% to dev (at least one each
    when there are 3 or more families); the rest, and all of a kind with fewer, to train.
    """
    pools: dict[str, dict[str, list[str]]] = {split: {} for split in SPLITS}
    for kind, ids in (("photo", photo_ids), ("texture", texture_ids)):
        families = sorted({family(bid) for bid in ids})
        rng.shuffle(families)
        held = max(1, round(HELD_OUT_FRACTION * len(families))) if len(families) >= 3 else 0
        split_of = {fam: "test" for fam in families[:held]}
        split_of.update({fam: "dev" for fam in families[held : 2 * held]})
        for split in SPLITS:
            pools[split][kind] = [bid for bid in ids if split_of.get(family(bid), "train") == split]
    for split in SPLITS:
        if not any(pools[split].values()):
            raise InputError(f"too few backgrounds to give the {split} split its own")
    return pools


def held_out_pairs(
    names: list[str], num_dev: int, num_test: int, rng: random.Random
) -> tuple[list[Pair], list[Pair]]:
    """Disjoint lists of distinct object pairs for dev and test (each at most a fifth of all)."""
    pairs = list(itertools.combinations(sorted(names), 2))
    num_dev_pairs = min(num_dev, max(1, len(pairs) // 5))
    num_test_pairs = min(num_test, max(1, len(pairs) // 5))
    if len(names) < 3 or num_dev_pairs + num_test_pairs >= len(pairs):
        raise InputError(f"need at least 3 objects to hold out object pairs, got {len(names)}")
    held = rng.sample(pairs, num_dev_pairs + num_test_pairs)
    return held[:num_dev_pairs], held[num_dev_pairs:]


def plan_scenes(
    objects: dict[str, list[Path]],
    backgrounds: dict[str, dict[str, list[str]]],
    counts: dict[str, int],
    seed: int,
    composition: str = "classic",
) -> dict[str, list[SceneSpec]]:
    """The scenes of every split, reproducible from ``seed``, each to be drawn in
    ``composition`` (which changes nothing else of the plan).

    ``objects`` maps names to stamp files, ``backgrounds`` is :func:`split_backgrounds`'s
    result and ``counts`` gives the number of scenes per split.
    """
    names = sorted(objects)
    if counts["train"] < len(names):
        raise InputError(
            f"num_train={counts['train']} must be at least the number of objects ({len(names)})"
        )
    rng = random.Random(f"{seed}/plan")
    dev_pairs, test_pairs = held_out_pairs(names, counts["dev"], counts["test"], rng)
    groups = {
        "train": _training_groups(names, counts["train"], set(dev_pairs + test_pairs), rng),
        "dev": _cycle(dev_pairs, counts["dev"]),
        "test": _cycle(test_pairs, counts["test"]),
    }
    return {
        split: [
            SceneSpec(
                id=f"{split}-{index:06d}",
                objects=group,
                stamps=tuple(rng.choice(objects[name]) for name in group),
                background=_choose_background(backgrounds[split], rng),
                composition=composition,
            )
            for index, group in enumerate(groups[split])
        ]
        for split in SPLITS
    }


def _training_groups(
    names: list[str], count: int, held_out: set[Pair], rng: random.Random
) -> list[tuple[str, ...]]:
    """Single objects (every name, evenly) and pairs never in ``held_out``, shuffled."""
    num_singles = min(count, max(len(names), round(SINGLE_FRACTION * count)))
    groups: list[tuple[str, ...]] = [(name,) for name in _balanced(names, num_singles, rng)]
    while len(groups) < count:
        order = rng.sample(names, len(names))
        for pair in zip(order[0::2], order[1::2], strict=False):
            if tuple(sorted(pair)) not in held_out and len(groups) < count:
                groups.append(pair)
    rng.shuffle(groups)
    return groups


def _balanced(names: list[str], count: int, rng: random.Random) -> list[str]:
    """``count`` names, each used ``count // len(names)`` or one more times."""
    chosen: list[str] = []
    while len(chosen) < count:
        chosen.extend(rng.sample(names, len(names)))
    return chosen[:count]


def _cycle(pairs: list[Pair], count: int) -> list[tuple[str, ...]]:
    return [pairs[i % len(pairs)] for i in range(count)] if pairs else []


def _choose_background(pool: dict[str, list[str]], rng: random.Random) -> str:
    use_photo = pool["photo"] and (not pool["texture"] or rng.random() < PHOTO_PROBABILITY)
    return rng.choice(pool["photo"] if use_photo else pool["texture"])
