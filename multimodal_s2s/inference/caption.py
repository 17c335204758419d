"""Images to captions with a trained checkpoint: ``Captioner`` (the Python API) and the
``ms2s caption`` command built on it.

The command takes files, directories (searched recursively) and glob patterns. A path or file
that cannot be read is reported as one ``error: ...`` line on stderr and skipped; the others
are still captioned and the command then exits with status 1 (so does an attention map that
cannot be written: its image's caption is kept). Results go to stdout as ``path<TAB>caption``
lines, or with ``--output`` to a JSON Lines file of ``{"image", "caption", "score"}`` records
(written atomically). ``--attention-maps DIR`` writes one Show-Attend-Tell figure per image,
at ``DIR`` plus the image's path relative to the folder all inputs share, with ``.png``
appended (``a/cat.jpg`` -> ``DIR/a/cat.jpg.png``).
"""

import argparse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from multimodal_s2s.config import DECODING_SECTIONS, Config, split_overrides, with_nbest
from multimodal_s2s.data.files import add_batch_command_arguments
from multimodal_s2s.data.image import (
    SUPPORTED_IMAGE_EXTENSIONS,
    build_image_transform,
    load_image,
    to_rgb,
)
from multimodal_s2s.data.images import ImageData
from multimodal_s2s.errors import InputError
from multimodal_s2s.frontends import decoding_views
from multimodal_s2s.inference.attention_maps import save_attention_map
from multimodal_s2s.inference.decoding import (
    Result,
    load_for_decoding,
    read_windows,
)
from multimodal_s2s.inference.file_decoding import FileKind, decode_files
from multimodal_s2s.models.model import Seq2Seq
from multimodal_s2s.search.beam import SearchConfig
from multimodal_s2s.search.decode import Decoded, decode_batch
from multimodal_s2s.text import EOS_ID, Tokenizer

MIN_DISPLAY_SIZE = 160  # attention-map panels are at least this many pixels wide
# Images a batch: beam search advances a whole batch per step, so bigger batches share each
# step's fixed costs among more images (benchmarks/README.md).
BATCH_SIZE = 64
IMAGE_FILES = FileKind("images", SUPPORTED_IMAGE_EXTENSIONS, "image", "caption", "image")
# An image: a file, a PIL image or an ``(H, W, 3)`` (or ``(H, W)``) uint8 array.
ImageItem = str | Path | Image.Image | np.ndarray


class Captioner:
    """Captions images with an image captioning model, e.g.::

    captioner = Captioner.from_checkpoint("exp/scenes_captioning/best.pt")
    texts = [result.text for result in captioner.caption(["photo.jpg", pil_image])]
    """

    def __init__(self, model: Seq2Seq, tokenizer: Tokenizer, config: Config) -> None:
        """``config``: the config to decode with (``inference.decoding.load_for_decoding``)."""
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.views: list[dict[str, Any]] = decoding_views(config.data)
        self.transform = build_image_transform(config.data.image_size)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "auto", **settings: Any
    ) -> "Captioner":
        """Load an image captioning checkpoint on ``device`` ("auto": CUDA when there is
        one). ``settings`` change its decoding settings: keys of ``SearchConfig``
        (``beam_size=4``) and of the test-time views (``corner_crops=[]``); a setting not
        given keeps the checkpoint's value.

        Raises:
            InputError: the checkpoint is unusable or not an image captioning model; a
                setting is unknown (``ConfigError``, naming it) or has a bad value.
        """
        return cls(*load_for_decoding(path, device, "images", settings=settings))

    def caption(
        self,
        items: Sequence[ImageItem],
        batch_size: int = BATCH_SIZE,
        nbest: int | None = None,
        attention: bool = False,
    ) -> list[Result]:
        """One ``Result`` per item, in order. An item is an image file, a PIL image or an
        ``(H, W, 3)`` uint8 array. ``batch_size``: images decoded at once; ``nbest``:
        hypotheses per item (at most the beam size; ``None``: ``search.nbest``, 1 unless
        set); ``attention``: fill ``Result.attention`` and its labels.

        Raises:
            InputError: an item cannot be read (naming it), or a bad option.
        """
        return list(self.results(items, batch_size, nbest, attention))

    def results(
        self,
        items: Sequence[ImageItem],
        batch_size: int = BATCH_SIZE,
        nbest: int | None = None,
        attention: bool = False,
        skip: Callable[[InputError], None] | None = None,
    ) -> Iterator[Result]:
        """``caption``, yielding the results of each batch as soon as it is decoded. With
        ``skip``, an item that cannot be read is handed to it and left out instead of
        raising."""
        search = with_nbest(self.config.search, nbest)
        device = next(self.model.parameters()).device
        for batch in read_windows(items, batch_size, batch_size, self._source, skip):
            sources = [source for _, source in batch]
            decoded = decode_images(self.model, self.tokenizer, sources, search, self.views, device)
            for (item, _), result in zip(batch, decoded, strict=True):
                yield self._result(result, _path(item), attention)

    def save_attention_map(self, result: Result, item: ImageItem, path: str | Path) -> None:
        """Draw ``result`` (of ``caption(..., attention=True)``) over ``item`` as a PNG at
        ``path``: one panel per emitted token (the end-of-caption token included when the
        caption finished; ``attention_maps.save_attention_map``)."""
        if result.attention is None:
            raise InputError("the result has no attention: caption with attention=True")
        image_size = self.config.data.image_size
        display = max(image_size, MIN_DISPLAY_SIZE)
        picture = self._picture(item, 0).resize((display, display))
        grid = self.model.encoder.grid_size(image_size, image_size)
        weights = torch.from_numpy(result.attention)
        save_attention_map(
            picture, result.attention_tokens, weights, grid, Path(path), result.view.get("crop")
        )

    def _source(self, item: ImageItem, index: int) -> torch.Tensor:
        """An item as the model's ``(3, S, S)`` uint8 input."""
        return self.transform(self._picture(item, index))

    def _picture(self, item: ImageItem, index: int) -> Image.Image:
        """An item as an RGB picture (a file read as ``load_image`` reads it)."""
        if isinstance(item, (str, Path)):
            return load_image(item)
        if isinstance(item, Image.Image):
            return to_rgb(item)
        if (
            isinstance(item, np.ndarray)
            and item.dtype == np.uint8
            and (item.ndim == 2 or (item.ndim == 3 and item.shape[2] == 3))
        ):
            return Image.fromarray(item).convert("RGB")
        got = type(item).__name__
        if isinstance(item, np.ndarray):
            got += f" of shape {item.shape} and dtype {item.dtype}"
        raise InputError(
            f"input {index}: expected an image path, a PIL image or an (H, W, 3) uint8 array, "
            f"got {got}"
        )

    def _result(self, decoded: Decoded, path: Path | None, attention: bool) -> Result:
        nbest = list(decoded.nbest) or [(decoded.text, decoded.score)]
        result = Result(decoded.text, decoded.score, nbest, path=path, view=decoded.variant)
        if attention:
            hypothesis = decoded.hypothesis
            tokens = hypothesis.tokens + ([EOS_ID] if hypothesis.finished else [])
            result.attention = hypothesis.attention.to(device="cpu", dtype=torch.float32).numpy()
            result.attention_tokens = [self.tokenizer.tokens[token] for token in tokens]
        return result


def _path(item: ImageItem) -> Path | None:
    return Path(item) if isinstance(item, (str, Path)) else None


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


def caption(
    model_path: str | Path,
    paths: list[str],
    output: Path | None,
    beam: int | None = None,
    batch_size: int = BATCH_SIZE,
    attention_maps: Path | None = None,
    device: str = "auto",
    overrides: Sequence[str] = (),
    nbest: int | None = None,
) -> int:
    """``ms2s caption``: caption every image named by ``paths`` with a ``Captioner``; returns
    0, or 1 if any input was skipped. With ``nbest``, each JSON Lines record also has
    ``"nbest"``: ``[{"text", "score"}, ...]``, best first.

    Decoding settings are the checkpoint's, changed by ``overrides`` (``search.KEY=VALUE``
    and ``data.test_views.KEY=VALUE``; ``data.test_views.corner_crops=[]`` captions the
    image alone), then by ``beam`` when given (1 decodes greedily) and ``nbest``.

    Raises:
        InputError: the checkpoint is unusable or not an image captioning model, or
            ``beam`` / ``batch_size`` is below 1, or ``output`` / ``attention_maps`` cannot be
            written (checked before any image is captioned).
    """
    return decode_files(
        IMAGE_FILES,
        Captioner,
        model_path,
        paths,
        output=output,
        beam=beam,
        batch_size=batch_size,
        device=device,
        overrides=overrides,
        nbest=nbest,
        attention_maps=attention_maps,
    )


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
        nbest=args.nbest,
    )
