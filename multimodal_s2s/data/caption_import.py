"""Importers from the layouts caption data comes in, to the ``images`` source's manifests.

One record per image with all its reference captions::

    {"id": "...", "image": "/abs/path.jpg", "caption": "first caption", "captions": ["first
    caption", "second", ...]}

``caption`` (the first reference) keeps the record readable where one caption per image is
expected; ``captions`` lists every reference, in the order the source gives them (COCO's
``width`` and ``height`` are kept too). ``CAPTION_IMPORTERS`` names the layouts
``ms2s import`` reads beside the speech ones (``manifest.IMPORTERS``):

* ``coco``: a COCO caption file (``captions_train2017.json``: ``images`` and
  ``annotations``), its ``file_name``\\ s resolved against the images folder;
* ``flickr``: Flickr8k ``Flickr8k.token.txt`` or Flickr30k ``results_20130124.token``
  (``IMAGE#N<TAB>caption``), or Flickr30k's ``results.csv``
  (``image_name| comment_number| comment``);
* ``caption-tsv``: a folder of images with a ``captions.tsv`` (``file<TAB>caption``, several
  lines per image allowed, paths relative to the folder).

Images named by the captions but missing from the images folder are skipped with a warning
(Flickr8k's token file names one image that the corpus lacks).
"""

import json
import re
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from multimodal_s2s.errors import InputError

# Where the images of a Flickr corpus usually are, beside its caption file.
FLICKR_IMAGE_FOLDERS = (
    "Flicker8k_Dataset",
    "Flickr8k_Dataset",
    "flickr30k-images",
    "flickr30k_images",
    "Images",
    "images",
)


def import_coco(src: Path, images: Path | None = None) -> list[dict]:
    """Records from a COCO caption file (``captions_<split>.json``).

    ``images`` is the folder the ``file_name``\\ s are in; by default ``<split>/`` beside the
    file's ``annotations/`` folder (COCO's own layout) or beside the file. Records are in
    the file's image order, captions in annotation order; ``id`` is the COCO image id
    (a string), and ``width``/``height`` come from the file. Images without a caption are
    left out.

    Raises:
        InputError: the file is missing or not a COCO caption file (named with what is
            wrong), no images folder is found, or no captioned image is in it.
    """
    src = Path(src)
    if not src.is_file():
        raise InputError(f"{src}: COCO caption file not found")
    try:
        content = json.loads(src.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{src}: not a JSON file ({error})") from error
    if not isinstance(content, dict) or not {"images", "annotations"} <= content.keys():
        raise InputError(f"{src}: a COCO caption file needs 'images' and 'annotations' lists")
    folder = _images_folder(images, _coco_image_folders(src), src, "coco")
    captions: dict[object, list[str]] = {}
    for index, annotation in enumerate(content["annotations"]):
        if not isinstance(annotation, dict) or not {"image_id", "caption"} <= annotation.keys():
            raise InputError(f"{src}: annotations[{index}] needs 'image_id' and 'caption'")
        caption = _clean(annotation["caption"])
        if caption:
            captions.setdefault(annotation["image_id"], []).append(caption)
    entries = []
    for index, image in enumerate(content["images"]):
        if not isinstance(image, dict) or not {"id", "file_name"} <= image.keys():
            raise InputError(f"{src}: images[{index}] needs 'id' and 'file_name'")
        if image["id"] in captions:
            extra = {
                key: image[key] for key in ("width", "height") if isinstance(image.get(key), int)
            }
            entries.append((str(image["id"]), image["file_name"], captions[image["id"]], extra))
    return _records(entries, folder, src)


def import_flickr(src: Path, images: Path | None = None) -> list[dict]:
    """Records from a Flickr8k/30k caption file: ``IMAGE#N<TAB>caption`` lines
    (``Flickr8k.token.txt``, ``results_20130124.token``) or ``results.csv``
    (``image_name| comment_number| comment``, its header line skipped).

    ``images`` is the folder of the image files; by default the first of
    ``FLICKR_IMAGE_FOLDERS`` beside the caption file, else the caption file's folder.
    Records are in order of each image's first caption; ``id`` is the image file name.

    Raises:
        InputError: the file is missing, a line is malformed (named ``file:line``), or none
            of its images is in the images folder.
    """
    src = Path(src)
    if not src.is_file():
        raise InputError(f"{src}: Flickr caption file not found")
    folder = _images_folder(images, [src.parent / name for name in FLICKR_IMAGE_FOLDERS], src)
    lines = _lines(src)
    csv = bool(lines) and "|" in lines[0][1]
    pairs = _flickr_csv_pairs(src, lines) if csv else _flickr_token_pairs(src, lines)
    return _records(_grouped(pairs), folder, src)


def import_caption_tsv(src: Path, images: Path | None = None) -> list[dict]:
    """Records from a folder of images with a ``captions.tsv`` (``src`` is the folder or the
    file): ``file<TAB>caption`` lines, several per image allowed, an optional
    ``file<TAB>caption`` header. Files are relative to ``images`` (default: the folder of
    ``captions.tsv``). Records are in order of each image's first line; ``id`` is the file
    as written.

    Raises:
        InputError: the file is missing, a line is malformed (named ``file:line``), or none
            of its images exists.
    """
    src = Path(src)
    tsv = src / "captions.tsv" if src.is_dir() else src
    if not tsv.is_file():
        raise InputError(f"{tsv}: captions file not found")
    folder = Path(images) if images is not None else tsv.parent
    if not folder.is_dir():
        raise InputError(f"{folder}: images folder not found")
    pairs = []
    for number, line in _lines(tsv):
        name, tab, caption = line.partition("\t")
        if number == 1 and (name.strip().lower(), caption.strip().lower()) == ("file", "caption"):
            continue
        if not tab or not name.strip() or not _clean(caption):
            raise InputError(f"{tsv}:{number}: expected 'file<TAB>caption', got {line!r}")
        pairs.append((name.strip(), _clean(caption)))
    return _records(_grouped(pairs), folder, tsv)


CAPTION_IMPORTERS: dict[str, Callable[[Path, Path | None], list[dict]]] = {
    "coco": import_coco,
    "flickr": import_flickr,
    "caption-tsv": import_caption_tsv,
}


def _coco_image_folders(src: Path) -> list[Path]:
    """``<root>/<split>`` for ``<root>/annotations/captions_<split>.json``, and beside it."""
    match = re.fullmatch(r"captions_(.+)\.json", src.name)
    if match is None:
        return []
    return [src.parent.parent / match[1], src.parent / match[1]]


def _images_folder(given: Path | None, candidates: list[Path], src: Path, layout: str = "") -> Path:
    """The images folder: ``given``, else the first existing candidate, else (for a layout
    other than ``coco``) the caption file's folder."""
    if given is not None:
        if not Path(given).is_dir():
            raise InputError(f"{given}: images folder not found")
        return Path(given)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    if layout == "coco":
        tried = ", ".join(str(c) for c in candidates) or "none"
        raise InputError(f"{src}: no images folder found (tried {tried}); give it with --images")
    return src.parent


def _flickr_token_pairs(src: Path, lines: list[tuple[int, str]]) -> list[tuple[str, str]]:
    """``(image, caption)`` of ``IMAGE#N<TAB>caption`` lines."""
    pairs = []
    for number, line in lines:
        key, tab, caption = line.partition("\t")
        name, hash_sign, index = key.strip().rpartition("#")
        if not tab or not hash_sign or not name or not index.isdigit() or not _clean(caption):
            raise InputError(f"{src}:{number}: expected 'IMAGE#N<TAB>caption', got {line!r}")
        pairs.append((name, _clean(caption)))
    return pairs


def _flickr_csv_pairs(src: Path, lines: list[tuple[int, str]]) -> list[tuple[str, str]]:
    """``(image, caption)`` of ``image_name| comment_number| comment`` lines; a line that
    lost its second ``|`` (``name| 4 caption``, as one line of Flickr30k's file) is read too."""
    pairs = []
    for number, line in lines:
        fields = [field.strip() for field in line.split("|", 2)]
        if number == lines[0][0] and fields[0] == "image_name":
            continue
        if len(fields) == 2:
            fields = [fields[0], *fields[1].split(maxsplit=1)]
        if len(fields) != 3 or not fields[0] or not fields[1].isdigit() or not _clean(fields[2]):
            raise InputError(
                f"{src}:{number}: expected 'image_name| comment_number| comment', got {line!r}"
            )
        pairs.append((fields[0], _clean(fields[2])))
    return pairs


def _grouped(
    pairs: Iterable[tuple[str, str]],
) -> list[tuple[str, str, list[str], dict]]:
    """``(id, file, captions, {})`` per image, in order of each image's first caption."""
    captions: dict[str, list[str]] = {}
    for name, caption in pairs:
        captions.setdefault(name, []).append(caption)
    return [(name, name, texts, {}) for name, texts in captions.items()]


def _records(
    entries: list[tuple[str, str, list[str], dict]], folder: Path, src: Path
) -> list[dict]:
    """Manifest records of ``(id, file, captions, extra keys)`` entries whose file exists in
    ``folder``; the others are skipped with one warning."""
    folder = folder.absolute()
    records, missing = [], []
    for image_id, name, captions, extra in entries:
        path = folder / name
        if not path.is_file():
            missing.append(name)
            continue
        records.append(
            {"id": image_id, "image": str(path), "caption": captions[0], "captions": captions}
            | extra
        )
    if not records:
        raise InputError(f"{src}: none of its {len(entries)} captioned images is in {folder}")
    if missing:
        examples = ", ".join(missing[:3])
        warnings.warn(
            f"{src}: skipping {len(missing)} image(s) not found in {folder} (e.g. {examples})",
            stacklevel=3,
        )
    return records


def _lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, line)`` of a text file's non-blank lines (a BOM and line ends off)."""
    text = path.read_text(encoding="utf-8-sig")
    return [
        (number, line.rstrip("\r"))
        for number, line in enumerate(text.split("\n"), 1)
        if line.strip()
    ]


def _clean(caption: object) -> str:
    """A caption with its whitespace collapsed ("" for a non-string)."""
    return " ".join(caption.split()) if isinstance(caption, str) else ""
