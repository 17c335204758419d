"""Show-Attend-Tell attention figures: where the decoder looked for each generated word.

The figure is one PNG laid out as a grid of ``PANEL_COLUMNS`` columns. The first panel is the
original image; each following panel is the image dimmed everywhere except where the decoder
attended when it generated one word, with the word written above the panel. Each panel's
attention grid ``(H', W')`` is upsampled bilinearly to the image size (to the crop's box, for
a caption decoded from a test-time crop) and scaled so that its maximum is 1; a pixel keeps
``MIN_BRIGHTNESS + (1 - MIN_BRIGHTNESS) * attention`` of its brightness.

Layout, for an image of ``W x H`` pixels and ``n = 1 + len(words)`` panels::

    columns = min(n, PANEL_COLUMNS)            rows = ceil(n / columns)
    width   = columns * (W + PADDING) + PADDING
    height  = rows * (LABEL_HEIGHT + H + PADDING) + PADDING

Listen-Attend-Spell alignment figures (``save_alignment_figure``): a recording's log-mel
spectrogram on top (time to the right, low frequencies at the bottom, darker is louder over the
``SPECTROGRAM_RANGE`` below the loudest bin), and under it one row per output token, darker where
that token attended, on the same time axis. Each of the ``T`` spectrogram frames is
``FRAME_PIXELS`` wide, each of the ``F`` mel bins ``BIN_PIXELS`` tall and each of the ``L`` token
rows ``ROW_HEIGHT`` tall, with the tokens written left of their rows::

    width  = PADDING + LABEL_WIDTH + T * FRAME_PIXELS + PADDING
    height = PADDING + F * BIN_PIXELS + PADDING + L * ROW_HEIGHT + PADDING
"""

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.transforms.functional import pil_to_tensor, to_pil_image

from multimodal_s2s.atomic_file import atomic_write
from multimodal_s2s.frontends.image import Crop

PANEL_COLUMNS = 5
PADDING = 4
LABEL_HEIGHT = 16
MIN_BRIGHTNESS = 0.25
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)
ORIGINAL_LABEL = "<image>"
_LABEL_TOP = 2  # pixels between the top of a cell and its label
FRAME_PIXELS = 2
BIN_PIXELS = 2
ROW_HEIGHT = 14
LABEL_WIDTH = 48
SPECTROGRAM_RANGE = 80.0 * math.log(10.0) / 10.0  # 80 dB, in the natural log of power
SPECTROGRAM_LABEL = "log-mel"


def save_attention_map(
    image: Image.Image,
    words: list[str],
    weights: Tensor,
    grid_hw: tuple[int, int],
    path: Path,
    crop: Crop | None = None,
) -> None:
    """Write the attention figure of one generated caption as a PNG (atomically).

    Args:
        image: the picture the caption describes; panels have its size, so resize a large
            picture first.
        words: the T generated words, one panel each.
        weights: ``(T, S)`` attention weights over the encoder grid, ``S = H' * W'`` in
            row-major order (as the image encoder flattens its ``(H', W')`` feature map).
        grid_hw: ``(H', W')``, the encoder grid size.
        path: where to write the PNG; parent directories are created.
        crop: the part of the image the encoder saw (a test-time variant), over which the
            grid is drawn; ``None``: the whole image.
    """
    height, width = grid_hw
    if tuple(weights.shape) != (len(words), height * width):
        raise ValueError(
            f"weights must have shape (T, H'*W') = ({len(words)}, {height * width}) "
            f"for {len(words)} words and grid {grid_hw}, got {tuple(weights.shape)}"
        )
    picture = image.convert("RGB")
    panels = [picture] + [_attention_panel(picture, step, grid_hw, crop) for step in weights]
    labels = [ORIGINAL_LABEL, *words]
    with atomic_write(path, binary=True) as file:
        _tile_panels(panels, labels).save(file, format="PNG")


def _attention_panel(
    picture: Image.Image, step_weights: Tensor, grid_hw: tuple[int, int], crop: Crop | None
) -> Image.Image:
    """The picture dimmed outside the attended region of one decoding step.

    Args:
        picture: RGB image, ``W x H`` pixels.
        step_weights: ``(S,)`` attention weights of one step, ``S = H' * W'``.
        grid_hw: ``(H', W')``.
        crop: the part of the picture the grid covers; ``None``: all of it.
    """
    crop = crop or Crop(1.0, 0.0, 0.0)
    width, height = round(crop.side * picture.width), round(crop.side * picture.height)
    left = round((picture.width - width) * crop.x)
    top = round((picture.height - height) * crop.y)
    grid = step_weights.detach().to(device="cpu", dtype=torch.float32).reshape(1, 1, *grid_hw)
    attention = torch.zeros(1, picture.height, picture.width)
    upsampled = F.interpolate(grid, size=(height, width), mode="bilinear")
    attention[:, top : top + height, left : left + width] = upsampled[0].clamp(min=0.0)
    attention = attention / attention.max().clamp(min=torch.finfo(torch.float32).tiny)
    brightness = MIN_BRIGHTNESS + (1.0 - MIN_BRIGHTNESS) * attention  # (1, H, W)
    pixels = pil_to_tensor(picture).to(torch.float32) * brightness  # (3, H, W)
    return to_pil_image(pixels.round().to(torch.uint8))


def _tile_panels(panels: list[Image.Image], labels: list[str]) -> Image.Image:
    """Lay equally sized panels out on a grid, each with its label above it."""
    panel_width, panel_height = panels[0].size
    columns = min(len(panels), PANEL_COLUMNS)
    rows = math.ceil(len(panels) / columns)
    cell_width, cell_height = panel_width + PADDING, LABEL_HEIGHT + panel_height + PADDING
    figure = Image.new(
        "RGB", (columns * cell_width + PADDING, rows * cell_height + PADDING), BACKGROUND
    )
    draw = ImageDraw.Draw(figure)
    font = ImageFont.load_default()
    for index, (panel, label) in enumerate(zip(panels, labels, strict=True)):
        left = PADDING + (index % columns) * cell_width
        top = PADDING + (index // columns) * cell_height
        text = _fit_text(draw, label, font, panel_width)
        draw.text((left, top + _LABEL_TOP), text, fill=TEXT_COLOUR, font=font)
        figure.paste(panel, (left, top + LABEL_HEIGHT))
    return figure


def _fit_text(
    draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, max_width: int
) -> str:
    """``text``, shortened with an ellipsis if it is wider than ``max_width`` pixels."""
    if draw.textlength(text, font=font) <= max_width:
        return text
    while text and draw.textlength(text + "...", font=font) > max_width:
        text = text[:-1]
    return text + "..."


def save_alignment_figure(
    log_mel: Tensor,
    frame_seconds: float,
    words: list[str],
    weights: Tensor,
    column_times: Tensor,
    path: Path,
) -> None:
    """Write the attention alignment of one transcript under its spectrogram as a PNG
    (atomically; layout in the module docstring).

    Args:
        log_mel: ``(T, F)`` natural-log mel power of the whole recording.
        frame_seconds: the hop between spectrogram frames, in seconds.
        words: the ``L`` output tokens, one row each.
        weights: ``(L, S)`` attention weights over the encoder's ``S`` positions.
        column_times: ``(S,)`` the start of each position, in seconds, non-decreasing; a
            position lasts until the next one starts (the last one to the end). A frame's
            pixels show the weight of the position its start falls in, scaled so that the
            row's largest weight is black.
        path: where to write the PNG; parent directories are created.
    """
    if weights.dim() != 2 or tuple(weights.shape) != (len(words), column_times.shape[0]):
        raise ValueError(
            f"weights must have shape (L, S) = ({len(words)}, {column_times.shape[0]}) for "
            f"{len(words)} words and {column_times.shape[0]} positions, got {tuple(weights.shape)}"
        )
    frames, bins = log_mel.shape
    starts = torch.arange(frames, dtype=torch.float64) * frame_seconds
    columns = torch.searchsorted(column_times.to(torch.float64).contiguous(), starts, right=True)
    weights = weights.detach().to(device="cpu", dtype=torch.float32)
    rows = weights[:, (columns - 1).clamp(min=0)]  # (L, T)
    rows = rows / weights.amax(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)
    loud = log_mel.detach().to(device="cpu", dtype=torch.float32)
    loud = ((loud - loud.max() + SPECTROGRAM_RANGE) / SPECTROGRAM_RANGE).clamp(0.0, 1.0)
    spectrogram = _darkness(loud.T.flip(0), BIN_PIXELS, FRAME_PIXELS)  # low bins at the bottom
    alignment = _darkness(rows.clamp(0.0, 1.0), ROW_HEIGHT, FRAME_PIXELS)
    left = PADDING + LABEL_WIDTH
    spectrogram_height = bins * BIN_PIXELS
    figure = Image.new(
        "RGB",
        (
            left + frames * FRAME_PIXELS + PADDING,
            3 * PADDING + spectrogram_height + len(words) * ROW_HEIGHT,
        ),
        BACKGROUND,
    )
    figure.paste(spectrogram, (left, PADDING))
    top = 2 * PADDING + spectrogram_height
    figure.paste(alignment, (left, top))
    draw = ImageDraw.Draw(figure)
    font = ImageFont.load_default()
    labels = [(SPECTROGRAM_LABEL, PADDING)] + [
        (word if word.strip() else "_", top + index * ROW_HEIGHT)
        for index, word in enumerate(words)
    ]
    for label, y in labels:
        text = _fit_text(draw, label, font, LABEL_WIDTH - PADDING)
        draw.text((PADDING, y + 1), text, fill=TEXT_COLOUR, font=font)
    with atomic_write(path, binary=True) as file:
        figure.save(file, format="PNG")


def _darkness(values: Tensor, cell_height: int, cell_width: int) -> Image.Image:
    """A greyscale picture of ``(R, C)`` values in ``[0, 1]`` (0 white, 1 black), each value a
    ``cell_height`` x ``cell_width`` block."""
    pixels = ((1.0 - values) * 255.0).round().to(torch.uint8)
    pixels = pixels.repeat_interleave(cell_height, dim=0).repeat_interleave(cell_width, dim=1)
    return to_pil_image(pixels.unsqueeze(0)).convert("RGB")
