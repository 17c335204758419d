"""Scores for scene captions, read through the caption grammar (``scene_captions.parse_caption``).

Every function takes hypothesis and reference caption texts of equal length. References
must be in the grammar; a hypothesis outside it names no objects and no relation.
"""

from multimodal_s2s.data.scene_captions import ParsedCaption, parse_caption
from multimodal_s2s.errors import InputError


def object_accuracy(hyps: list[str], refs: list[str]) -> float:
    """Correct object slots over all reference object slots.

    Slot ``i`` of a reference is its ``i``-th object in caption order (the left or upper one
    first). It is correct when the hypothesis names the same object in its own slot ``i``, so
    ``"a cat above a dog"`` for the reference ``"a dog above a cat"`` gets 0 of 2 and
    ``"a dog"`` gets 1 of 2. Extra hypothesis objects cost nothing here (see
    :func:`exact_match`).
    """
    pairs = _parse_pairs(hyps, refs)
    correct = sum(sum(_named_slots(hyp, ref)) for hyp, ref in pairs)
    return correct / sum(len(ref.objects) for _, ref in pairs)


def named_slots(hyp: str, ref: str) -> list[bool]:
    """For each object slot of the reference caption ``ref``, whether ``hyp`` names its
    object in that slot, as :func:`object_accuracy` counts it."""
    ((parsed_hyp, parsed_ref),) = _parse_pairs([hyp], [ref])
    return _named_slots(parsed_hyp, parsed_ref)


def _named_slots(hyp: ParsedCaption, ref: ParsedCaption) -> list[bool]:
    return [i < len(hyp.objects) and hyp.objects[i] == name for i, name in enumerate(ref.objects)]


def relation_accuracy(hyps: list[str], refs: list[str]) -> float:
    """Share of two-object references whose hypothesis gets the spatial relation right,
    separately from naming the objects (``object_accuracy`` scores names, ``exact_match``
    both).

    Correct means a two-object hypothesis with the same relation word (``left``/``above``)
    that puts neither reference object in the other's slot. For ``"a dog above a cat"``:
    ``"a dog above a fox"`` is right (an object error, not a relation error);
    ``"a cat above a dog"`` and ``"a cat above a fox"`` (the cat moved to the top) and
    ``"a dog to the left of a cat"`` are wrong. Returns NaN when no reference has two objects.
    """
    pairs = [(hyp, ref) for hyp, ref in _parse_pairs(hyps, refs) if ref.relation is not None]
    if not pairs:
        return float("nan")
    return sum(_same_relation(hyp, ref) for hyp, ref in pairs) / len(pairs)


def _same_relation(hyp: ParsedCaption, ref: ParsedCaption) -> bool:
    if hyp.relation != ref.relation or len(hyp.objects) != 2:
        return False
    first, second = ref.objects
    return hyp.objects[0] != second and hyp.objects[1] != first


def exact_match(hyps: list[str], refs: list[str]) -> float:
    """Share of hypotheses equal to their reference, ignoring repeated and surrounding spaces."""
    _check_lengths(hyps, refs)
    matches = sum(h.split() == r.split() for h, r in zip(hyps, refs, strict=True))
    return matches / len(refs)


def _parse_pairs(hyps: list[str], refs: list[str]) -> list[tuple[ParsedCaption, ParsedCaption]]:
    _check_lengths(hyps, refs)
    pairs = []
    for hyp, ref in zip(hyps, refs, strict=True):
        parsed_ref = parse_caption(ref)
        if not parsed_ref.objects:
            raise InputError(f"reference caption is outside the scene grammar: {ref!r}")
        pairs.append((parse_caption(hyp), parsed_ref))
    return pairs


def _check_lengths(hyps: list[str], refs: list[str]) -> None:
    if len(hyps) != len(refs) or not refs:
        raise InputError(
            f"need equal, non-zero numbers of hypotheses and references: "
            f"{len(hyps)} and {len(refs)}"
        )
