"""Find the object stamps of Debian's ``tuxpaint-stamps-default`` and load them as images."""

import re
from pathlib import Path

from PIL import Image

from multimodal_s2s.errors import InputError

DEFAULT_STAMP_ROOT = Path("/usr/share/tuxpaint/stamps")

_DESCRIPTION = re.compile(r"(?:A|An) ([A-Za-z][A-Za-z-]*(?: [A-Za-z][A-Za-z-]*){0,2})\.")


def parse_stamp_name(first_line: str) -> str | None:
    """The object name in a stamp description line, or None when it names no single object.

    The line must be exactly ``A <name>.`` or ``An <name>.`` where ``<name>`` is 1 to 3
    space-separated words of letters and hyphens; the name is returned lowercased
    (``"An apple."`` -> ``"apple"``, ``"A very big red dog."`` -> None).
    """
    match = _DESCRIPTION.fullmatch(first_line)
    return match.group(1).lower() if match else None


def find_objects(stamp_root: Path = DEFAULT_STAMP_ROOT) -> dict[str, list[Path]]:
    """Map each object name to its stamp PNGs (sorted), for stamps whose ``.txt`` names one object.

    A stamp is ``<stem>.png`` next to ``<stem>.txt``; the first line of the text file is read
    with :func:`parse_stamp_name`. Stamps that share a name are one object.
    """
    if not stamp_root.is_dir():
        raise InputError(
            f"stamp directory not found: {stamp_root} (apt-get install tuxpaint-stamps-default)"
        )
    objects: dict[str, list[Path]] = {}
    for png in sorted(stamp_root.rglob("*.png")):
        name = _stamp_name(png.with_suffix(".txt"))
        if name is not None:
            objects.setdefault(name, []).append(png)
    if not objects:
        raise InputError(f"no stamp named a single object in {stamp_root}")
    return objects


def load_stamp(path: Path, max_side: int) -> Image.Image:
    """An RGBA stamp cropped to its visible (alpha > 0) pixels, longer side at most ``max_side``."""
    try:
        with Image.open(path) as image:
            stamp = image.convert("RGBA")
    except OSError as error:
        raise InputError(f"cannot read stamp image {path}: {error}") from None
    box = stamp.getchannel("A").getbbox()
    if box is None:
        raise InputError(f"stamp image is fully transparent: {path}")
    stamp = stamp.crop(box)
    stamp.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return stamp


def _stamp_name(description: Path) -> str | None:
    if not description.is_file():
        return None
    lines = description.read_bytes().decode("utf-8", errors="replace").splitlines()
    return parse_stamp_name(lines[0]) if lines else None
