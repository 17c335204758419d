"""``ms2s caption``: caption image files with a trained checkpoint.

Inputs are files, directories (searched recursively) and glob patterns. A path or file that
cannot be read is reported as one ``error: ...`` line on stderr and skipped; the others are
still captioned and the command then exits with status 1 (so does an attention map that
cannot be written: its image's caption is kept). Results go to stdout as
``path<TAB>caption`` lines, or with ``--output`` to a JSON Lines file of
``{"image", "caption", "score"}`` records (written atomically). ``--attention-maps DIR``
writes one Show-Attend-Tell figure per image, at ``DIR`` plus the image's path relative to
the folder all inputs share, with ``.png`` appended (``a/cat.jpg`` -> ``DIR/a/cat.jpg.png``).
"""

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from multimodal_s2s.atomic_file import check_writable
from multimodal_s2s.checkpoint import load_model
from multimodal_s2s.config import DECODING_SECTIONS, decoding_config, split_overrides
from multimodal_s2s.data.files import (
    add_batch_command_arguments,
    find_files_reporting,
    print_result,
    report_skipped,
)
from multimodal_s2s.data.image import SUPPORTED_IMAGE_EXTENSIONS, load_image
from multimodal_s2s.data.images import ImageData, ImageDataConfig
from multimodal_s2s.data.manifest import collected_records
from multimodal_s2s.devices import resolve_device
from multimodal_s2s.errors import InputError
from multimodal_s2s.frontends import decoding_views
from multimodal_s2s.inference.attention_maps import save_attention_map
from multimodal_s2s.models.model import Seq2Seq
from multimodal_s2s.search.beam import SearchConfig
from multimodal_s2s.search.decode import Decoded, decode_batch
from multimodal_s2s.text import EOS_ID, Tokenizer

MIN_DISPLAY_SIZE = 160  # attention-map panels are at least this many pixels wide
# Images a batch: beam search advances a whole batch per step, so bigger batches share each
# step's fixed costs among more images (benchmarks/README.md).
BATCH_SIZE = 64


def caption(
    model_path: str | Path,
    paths: list[str],
    output: Path | None,
    beam: int | None = None,
    batch_size: int = BATCH_SIZE,
    attention_maps: Path | None = None,
    device: str = "auto",
    overrides: Sequence[str] = (),
) -> int:
    """Caption every image named by ``paths``; returns 0, or 1 if any input was skipped.

    Decoding settings are the checkpoint's, changed by ``overrides`` (``search.KEY=VALUE``
    and ``data.test_views.KEY=VALUE``; ``data.test_views.corner_crops=[]`` captions the
    image alone) and then by ``beam`` when given (1 decodes greedily).

    Raises:
        InputError: the checkpoint is unusable or not an image captioning model, or
            ``beam`` / ``batch_size`` is below 1, or ``output`` / ``attention_maps`` cannot be
            written (checked before any image is captioned).
    """
    if (beam is not None and beam < 1) or batch_size < 1:
        raise InputError(f"--beam and --batch-size must be >= 1, got {beam} and {batch_size}")
    if attention_maps is not None:
        check_writable(attention_maps, folder=True)
    target = resolve_device(device)
    model, tokenizer, config = load_model(model_path, target)
    if not isinstance(config.data, ImageDataConfig):
        raise InputError(
            f"{model_path}: not an image captioning model (data.name={config.data.name})"
        )
    config = decoding_config(config, overrides, DECODING_SECTIONS, beam)
    views = decoding_views(config.data)
    files, failed = find_files_reporting(paths, SUPPORTED_IMAGE_EXTENSIONS, "image")
    root = _common_folder(files)
    bar = tqdm(total=len(files), unit="image", file=sys.stderr, disable=None, dynamic_ncols=True)
    with bar, collected_records(output) as records:
        for chunk in _chunks(files, batch_size):
            loaded, sources = _read_images(chunk, config.data)
            failed |= len(loaded) < len(chunk)
            decoded = decode_images(model, tokenizer, sources, config.search, views, target)
            for path, result in zip(loaded, decoded, strict=True):
                records.append({"image": str(path), "caption": result.text, "score": result.score})
                if output is None:
                    print_result(path, result.text)
                if attention_maps is not None:
                    map_path = attention_maps / f"{path.resolve().relative_to(root)}.png"
                    try:
                        _save_map(model, tokenizer, config.data.image_size, path, result, map_path)
                    except InputError as error:
                        report_skipped(error)
                        failed = True
            bar.update(len(chunk))
    return 1 if failed else 0


def add_caption_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``caption`` on the ``ms2s`` sub-command parser."""
    parser = subparsers.add_parser("caption", help="caption image files with a checkpoint")
    add_batch_command_arguments(parser, "image", batch_unit="images", batch_size=BATCH_SIZE)
    parser.add_argument("--attention-maps", type=Path, help="folder for attention figures")
    parser.set_defaults(run=_run_caption)


def _run_caption(args: argparse.Namespace) -> int:
    paths, overrides = split_overrides(args.paths, DECODING_SECTIONS)
    return caption(
        args.model,
        paths,
        args.output,
        beam=args.beam,
        batch_size=args.batch_size,
        attention_maps=args.attention_maps,
        device=args.device,
        overrides=overrides,
    )


def _read_images(
    files: list[Path], config: ImageDataConfig
) -> tuple[list[Path], list[torch.Tensor]]:
    """The readable files and their ``(3, S, S)`` tensors; unreadable ones are reported."""
    loaded, sources = [], []
    for path in files:
        try:
            sources.append(ImageData.read_source(config, path))
            loaded.append(path)
        except InputError as error:
            report_skipped(error)
    return loaded, sources


def decode_images(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    sources: list[torch.Tensor],
    search: SearchConfig,
    views: list[dict[str, Any]],
    device: torch.device,
) -> list[Decoded]:
    """Caption ``(3, S, S)`` images as one batch (nothing for no images), in each of the
    test-time ``views``."""
    if not sources:
        return []
    batch, lengths = ImageData.collate_sources(sources)
    return decode_batch(model, tokenizer, batch.to(device), lengths, search, views=views)


def _common_folder(files: list[Path]) -> Path:
    """The deepest folder containing every file (resolved); ``/`` for no files."""
    if not files:
        return Path("/")
    return Path(os.path.commonpath([path.resolve().parent for path in files]))


def _chunks(files: list[Path], size: int) -> Iterator[list[Path]]:
    for first in range(0, len(files), size):
        yield files[first : first + size]


def _save_map(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    image_size: int,
    path: Path,
    result: Decoded,
    map_path: Path,
) -> None:
    """Draw the hypothesis attention ``(T, S)`` over the image, one panel per emitted token
    (the end-of-caption token included when the caption finished)."""
    hypothesis = result.hypothesis
    token_ids = hypothesis.tokens + ([EOS_ID] if hypothesis.finished else [])
    words = [tokenizer.tokens[token] for token in token_ids]
    display = max(image_size, MIN_DISPLAY_SIZE)
    picture = load_image(path).resize((display, display))
    grid = model.encoder.grid_size(image_size, image_size)
    weights = hypothesis.attention.to(device="cpu", dtype=torch.float32)
    save_attention_map(picture, words, weights, grid, map_path, result.variant.get("crop"))
