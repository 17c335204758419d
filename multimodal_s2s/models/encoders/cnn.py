"""A small convolutional image encoder whose feature grid becomes the memory."""

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from multimodal_s2s.errors import InputError
from multimodal_s2s.models.encoders.base import Encoder, EncoderOutput
from multimodal_s2s.models.encoders.grid import ChannelsLastTrunk, GridHead, grid_coordinates


@dataclass
class CNNConfig:
    """``len(channels)`` blocks of (3x3 conv, batch norm, ReLU), the first ``pooled_blocks``
    (default: all) followed by a 2x2 max pool.

    An ``H x W`` image gives an ``H // 2**n x W // 2**n`` grid (``n = pooled_blocks``),
    flattened row by row to ``S = H' * W'`` memory positions. ``coordinates``,
    ``output_dim``, ``dropout`` and ``self_attention_layers``: see ``GridHead``.
    ``input_coordinates`` (CoordConv, Liu et al. 2018) appends two channels holding each
    pixel's row and column, scaled to ``[-1, 1]``, to the image before the first
    convolution, so features can say where within a grid cell their object lies.
    """

    name: str = "cnn"
    in_channels: int = 3
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    pooled_blocks: int | None = None
    coordinates: bool = False
    input_coordinates: bool = False
    output_dim: int | None = None
    dropout: float = 0.0
    self_attention_layers: int = 0

    def __post_init__(self) -> None:
        if self.pooled_blocks is not None and not 0 <= self.pooled_blocks <= len(self.channels):
            raise InputError(
                f"encoder.pooled_blocks must be between 0 and len(encoder.channels) "
                f"({len(self.channels)}), got {self.pooled_blocks}"
            )


class CNNEncoder(Encoder):
    """``(B, C, H, W)`` images -> memory ``(B, H' * W', D)`` with full lengths."""

    def __init__(self, config: CNNConfig) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        self.input_coordinates = config.input_coordinates
        in_channels = config.in_channels + 2 if config.input_coordinates else config.in_channels
        pooled = len(config.channels) if config.pooled_blocks is None else config.pooled_blocks
        for index, channels in enumerate(config.channels):
            blocks += [
                nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            if index < pooled:
                blocks.append(nn.MaxPool2d(2))
            in_channels = channels
        self.trunk = ChannelsLastTrunk(*blocks)
        self.reduction = 2**pooled
        self.head = GridHead(in_channels, config)
        self.output_dim = self.head.output_dim

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(H', W')`` feature grid for an ``H x W`` input."""
        return height // self.reduction, width // self.reduction

    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """Encode images.

        Args:
            inputs: ``(B, C, H, W)`` images, ``H, W >= 2**n`` (``n = pooled_blocks``).
            lengths: ignored (images carry no padding).

        Returns:
            memory ``(B, (H // 2**n) * (W // 2**n), D)`` and lengths ``(B,)`` all equal to S.
        """
        if self.input_coordinates:
            batch, _, height, width = inputs.shape
            grid = grid_coordinates(height, width, inputs)  # (1, H * W, 2)
            grid = grid.transpose(1, 2).reshape(1, 2, height, width).expand(batch, -1, -1, -1)
            inputs = torch.cat([inputs, grid], dim=1)
        return self.head(self.trunk(inputs))
