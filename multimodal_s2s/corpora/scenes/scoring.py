"""Scores for scene captions, read through the caption grammar (:func:`.caption.parse_caption`).

Every function takes hypothesis and reference caption texts of equal length. References
must be in the grammar; a hypothesis outside it names no objects and no relation.
"""

from multimodal_s2s.corpora.scenes.caption import ParsedCaption, parse_caption
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
    correct = sum(
        sum(i < len(hyp.objects) and hyp.objects[i] == name for i, name in enumerate(ref.objects))
        for hyp, ref in pairs
    )
    return correct / sum(len(ref.objects) for _, ref in pairs)


def relation_accuracy(hyps: list[str], refs: list[str]) -> float:
    """Share of two-object references whose hypothesis states the same spatial fact.

    Correct means the same relation word (``left``/``above``) AND the reference's two objects
    in the reference's order; for ``"a dog above a cat"``, ``"a cat above a dog"`` and
    ``"a dog to the left of a cat"`` are both wrong. Returns NaN when no reference has two
    objects.
    """
    pairs = [(hyp, ref) for hyp, ref in _parse_pairs(hyps, refs) if ref.relation is not None]
    if not pairs:
        return float("nan")
    return sum(hyp == ref for hyp, ref in pairs) / len(pairs)


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
