"""A torchvision ResNet trunk as an image encoder."""

from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

from multimodal_s2s.errors import InputError
from multimodal_s2s.models.encoders.base import Encoder, EncoderOutput
from multimodal_s2s.models.encoders.grid import ChannelsLastTrunk, GridHead

_TRUNK_CHANNELS = {18: [64, 128, 256, 512], 34: [64, 128, 256, 512], 50: [256, 512, 1024, 2048]}


@dataclass
class ResNetConfig:
    """ResNet-``depth`` up to ``layer{trunk_layers}``; stride ``2**(trunk_layers + 1)``.

    ``weights_path`` names a local torchvision state dict (nothing is downloaded);
    ``None`` starts from random weights. ``freeze`` keeps the trunk fixed (batch norm in
    eval mode) until ``set_frozen(False)`` is called, e.g. for two-stage training.
    ``coordinates`` appends each position's (row, column) to its features and
    ``self_attention_layers`` relates the positions to each other (``grid.GridHead``).
    """

    name: str = "resnet"
    depth: int = 18
    trunk_layers: int = 4
    weights_path: str | None = None
    freeze: bool = False
    coordinates: bool = False
    output_dim: int | None = None
    dropout: float = 0.0
    self_attention_layers: int = 0


class ResNetEncoder(Encoder):
    """``(B, 3, H, W)`` images -> memory ``(B, H' * W', D)``, ``H' = H // 2**(L + 1)``."""

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        if config.depth not in _TRUNK_CHANNELS:
            raise ValueError(f"encoder.depth must be one of 18, 34, 50, got {config.depth}")
        if not 1 <= config.trunk_layers <= 4:
            raise ValueError(f"encoder.trunk_layers must be 1..4, got {config.trunk_layers}")
        resnet = getattr(torchvision.models, f"resnet{config.depth}")(weights=None)
        if config.weights_path is not None:
            _load_weights(resnet, Path(config.weights_path))
        layers = [resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4]
        self.trunk = ChannelsLastTrunk(
            resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool, *layers[: config.trunk_layers]
        )
        self.reduction = 2 ** (config.trunk_layers + 1)
        channels = _TRUNK_CHANNELS[config.depth][config.trunk_layers - 1]
        self.head = GridHead(channels, config)
        self.output_dim = self.head.output_dim
        self.frozen = False
        self.set_frozen(config.freeze)

    def set_frozen(self, frozen: bool) -> None:
        """Freeze (no gradients, batch norm statistics fixed) or unfreeze the trunk."""
        self.frozen = frozen
        self.trunk.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> "ResNetEncoder":
        super().train(mode)
        if self.frozen:
            self.trunk.eval()
        return self

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(H', W')`` feature grid for an ``H x W`` input."""
        grid_h, grid_w = height, width
        for _ in range(self.reduction.bit_length() - 1):
            grid_h, grid_w = (grid_h + 1) // 2, (grid_w + 1) // 2
        return grid_h, grid_w

    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """Encode images.

        Args:
            inputs: ``(B, 3, H, W)`` normalised images.
            lengths: ignored (images carry no padding).

        Returns:
            memory ``(B, H' * W', D)`` and lengths ``(B,)`` all equal to ``S = H' * W'``.
        """
        return self.head(self.trunk(inputs))


def _load_weights(resnet: nn.Module, path: Path) -> None:
    """Load a local torchvision ResNet state dict, naming the file on any problem."""
    if not path.is_file():
        raise InputError(f"{path}: ResNet weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        resnet.load_state_dict(state)
    except Exception as error:
        first_line = str(error).splitlines()[0]
        raise InputError(f"{path}: not usable ResNet weights ({first_line})") from error
