"""The scene caption grammar, and its inverse for scoring.

One object: ``a <name>`` / ``an <name>``. Two objects: when the horizontal distance between
their centres is at least the vertical distance,
``<article> <left name> to the left of <article> <right name>``, otherwise
``<article> <upper name> above <article> <lower name>``.
"""

import re
from typing import NamedTuple

from multimodal_s2s.errors import InputError

LEFT = "left"
ABOVE = "above"

_RELATION_WORDS = {LEFT: "to the left of", ABOVE: "above"}
_NAME = r"[a-z][a-z-]*(?: [a-z][a-z-]*){0,2}"
_NOUN_PHRASE = rf"(an?) ({_NAME})"
_PATTERNS = {
    None: re.compile(_NOUN_PHRASE),
    LEFT: re.compile(rf"{_NOUN_PHRASE} to the left of {_NOUN_PHRASE}"),
    ABOVE: re.compile(rf"{_NOUN_PHRASE} above {_NOUN_PHRASE}"),
}


class PlacedObject(NamedTuple):
    """An object in a scene: its name and centre in image coordinates (y grows downward)."""

    name: str
    x: float
    y: float


class ParsedCaption(NamedTuple):
    """Object names in caption order and the relation (``"left"``, ``"above"`` or None)."""

    objects: list[str]
    relation: str | None


def article(name: str) -> str:
    """``"an"`` when ``name`` starts with a, e, i, o or u, else ``"a"``."""
    return "an" if name[:1] in ("a", "e", "i", "o", "u") else "a"


def describe(objects: list[PlacedObject]) -> str:
    """The caption of a scene of one or two objects (see the module docstring)."""
    return format_caption(caption_structure(objects))


def caption_structure(objects: list[PlacedObject]) -> ParsedCaption:
    """The object names in the order :func:`describe` says them, and the relation it states."""
    if len(objects) == 1:
        return ParsedCaption([objects[0].name], None)
    if len(objects) != 2:
        raise InputError(f"a scene has 1 or 2 objects, got {len(objects)}")
    first, second = objects
    if (first.x, first.y) == (second.x, second.y):
        raise InputError(f"objects {first.name!r} and {second.name!r} share a centre")
    if abs(first.x - second.x) >= abs(first.y - second.y):
        ordered, relation = sorted(objects, key=lambda obj: obj.x), LEFT
    else:
        ordered, relation = sorted(objects, key=lambda obj: obj.y), ABOVE
    return ParsedCaption([obj.name for obj in ordered], relation)


def format_caption(parsed: ParsedCaption) -> str:
    """The caption text of object names in caption order and a relation (inverse of parsing)."""
    phrases = [f"{article(name)} {name}" for name in parsed.objects]
    if parsed.relation is None:
        return phrases[0]
    return f" {_RELATION_WORDS[parsed.relation]} ".join(phrases)


def parse_caption(text: str) -> ParsedCaption:
    """Invert :func:`describe`; a caption outside the grammar gives ``ParsedCaption([], None)``.

    Runs of whitespace count as one space; the article must agree with the name
    (``"a apple"`` is outside the grammar).
    """
    text = " ".join(text.split())
    for relation, pattern in _PATTERNS.items():
        match = pattern.fullmatch(text)
        if match is None:
            continue
        articles, names = match.groups()[0::2], list(match.groups()[1::2])
        if all(article(name) == art for art, name in zip(articles, names, strict=True)):
            return ParsedCaption(names, relation)
    return ParsedCaption([], None)
