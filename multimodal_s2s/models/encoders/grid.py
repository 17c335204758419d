"""The parts that the image encoders share: a channels-last convolutional trunk and the
head that turns its ``(B, C, H', W')`` feature grid into the memory ``(B, H' * W', D)``."""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from multimodal_s2s.errors import InputError
from multimodal_s2s.models.encoders.base import EncoderOutput


class ChannelsLastTrunk(nn.Sequential):
    """Image layers whose weights and activations use the channels-last memory layout
    (``(B, C, H, W)`` tensors stored as ``B, H, W, C``), the layout of oneDNN's (and cuDNN's)
    fastest convolutions, with which the scenes recipe trains and captions faster
    (``recipes/scenes_captioning/experiments.md``). Parameter names and values are those of an
    ``nn.Sequential`` of the same layers.

    In eval mode on the CPU, a large batch runs in chunks of images whose first activation
    takes at most ``EVAL_CHUNK_BYTES``, so that each layer's output is still in the cache
    when the next layer reads it (a whole batch's first activation can be larger than the
    cache). Each image's output does not depend on its chunk; training keeps whole batches
    (batch statistics).
    """

    EVAL_CHUNK_BYTES = 8 * 2**20

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__(*layers)
        self.to(memory_format=torch.channels_last)

    def forward(self, inputs: Tensor) -> Tensor:
        """``(B, C, H, W)`` in any layout -> ``(B, C', H', W')`` channels-last features.

        In eval mode, a convolution followed by batch norm runs as one convolution whose
        weights and bias have the norm's running statistics folded in (the same function,
        without a pass over the activations for the norm), and a ReLU followed by a 2 x 2 max
        pool as ``max_pool_2x2_relu``.
        """
        features = inputs.contiguous(memory_format=torch.channels_last)
        steps = self._steps()
        chunk = self._eval_chunk(features)
        if chunk >= features.size(0):
            return _apply(steps, features)
        return torch.cat([_apply(steps, part) for part in features.split(chunk)])

    def _steps(self) -> list[Callable[[Tensor], Tensor]]:
        """The layers in order as functions; in eval mode each convolution + batch norm pair
        folded into one convolution, and each ReLU + 2 x 2 max pool pair made one step."""
        layers = list(self)
        steps: list[Callable[[Tensor], Tensor]] = []
        index = 0
        while index < len(layers):
            layer = layers[index]
            following = layers[index + 1] if index + 1 < len(layers) else None
            if not self.training and _foldable(layer, following):
                steps.append(_conv_with_folded_norm(layer, following))
                index += 2
            elif not self.training and _relu_then_2x2_pool(layer, following):
                steps.append(max_pool_2x2_relu)
                index += 2
            else:
                steps.append(layer)
                index += 1
        return steps

    def _eval_chunk(self, features: Tensor) -> int:
        """Images per chunk: all of them in training or off the CPU, else as many as keep
        the first convolution's output within ``EVAL_CHUNK_BYTES``."""
        if self.training or features.device.type != "cpu":
            return features.size(0)
        first = next(layer for layer in self if isinstance(layer, nn.Conv2d))
        height, width = (size // step for size, step in zip(features.shape[2:], first.stride))
        image_bytes = first.out_channels * height * width * features.element_size()
        return max(1, self.EVAL_CHUNK_BYTES // max(1, image_bytes))


def _apply(steps: list[Callable[[Tensor], Tensor]], features: Tensor) -> Tensor:
    for step in steps:
        features = step(features)
    return features


def _foldable(layer: nn.Module, following: nn.Module | None) -> bool:
    return (
        isinstance(layer, nn.Conv2d)
        and isinstance(following, nn.BatchNorm2d)
        and following.track_running_stats
    )


def _relu_then_2x2_pool(layer: nn.Module, following: nn.Module | None) -> bool:
    return (
        isinstance(layer, nn.ReLU)
        and isinstance(following, nn.MaxPool2d)
        and following.kernel_size in (2, (2, 2))
        and following.stride in (2, (2, 2))
        and following.padding in (0, (0, 0))
        and following.dilation in (1, (1, 1))
        and not following.ceil_mode
        and not following.return_indices
    )


def max_pool_2x2_relu(features: Tensor) -> Tensor:
    """``max_pool2d(relu(x), 2)`` as ``relu(max of the four strided 2 x 2 positions)`` for
    ``(B, C, H, W)`` features (an odd last row or column is dropped, as the pool does): the
    same values, with the ReLU over a quarter of them. On the CPU, PyTorch's max pool over
    channels-last activations is slower than these two elementwise maxima
    (``recipes/scenes_captioning/experiments.md``)."""
    height, width = features.shape[2] // 2 * 2, features.shape[3] // 2 * 2
    features = features[:, :, :height, :width]
    rows = torch.maximum(features[:, :, 0::2], features[:, :, 1::2])
    return torch.maximum(rows[:, :, :, 0::2], rows[:, :, :, 1::2]).relu_()


def _conv_with_folded_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> Callable[[Tensor], Tensor]:
    """``inputs -> norm(conv(inputs))`` of an eval-mode norm, as one convolution
    (differentiable)."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    shift = -norm.running_mean if conv.bias is None else conv.bias - norm.running_mean
    if norm.affine:
        scale = scale * norm.weight
    bias = shift * scale + norm.bias if norm.affine else shift * scale
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    return lambda inputs: conv._conv_forward(inputs, weight, bias)


class GridHead(nn.Module):
    """``(B, C, H', W')`` feature map -> ``EncoderOutput`` with optional 1x1 projection.

    ``config`` (a ``CNNConfig`` or ``ResNetConfig``) gives:

    * ``coordinates``: each position's row and column, scaled to ``[-1, 1]``, are appended
      to its ``C`` features (before the projection). Convolutional features barely say where
      they are, and the attention context is a weighted mean of them, so without coordinates
      the decoder has little to tell "left of" from "above" with.
    * ``output_dim``: the projection's width (``None``: no projection).
    * ``dropout``: on the features before the projection.
    * ``self_attention_layers``: that many Transformer encoder layers (pre-norm,
      ``SELF_ATTENTION_HEADS`` heads, feed-forward twice the width, ``dropout``) over the
      ``S`` positions after the projection, so that each position's memory can say where the
      other objects are: which object lies left of or above which is a relation between
      positions, which a per-position feature cannot hold. The attention runs as plain
      matrix products: over a few dozen positions, PyTorch's CPU flash-attention kernel is
      slower in training.
    """

    SELF_ATTENTION_HEADS = 4

    def __init__(self, channels: int, config: Any) -> None:
        super().__init__()
        self.coordinates = config.coordinates
        features = channels + 2 if config.coordinates else channels
        output_dim = config.output_dim
        self.projection = nn.Linear(features, output_dim) if output_dim is not None else None
        self.dropout = nn.Dropout(config.dropout)
        self.output_dim = output_dim if output_dim is not None else features
        self.context = _self_attention(
            self.output_dim, config.self_attention_layers, config.dropout
        )

    def forward(self, features: Tensor) -> EncoderOutput:
        batch, _, height, width = features.shape
        memory = features.permute(0, 2, 3, 1).flatten(1, 2)
        if self.coordinates:
            grid = grid_coordinates(height, width, memory)
            memory = torch.cat([memory, grid.expand(batch, -1, -1)], dim=2)
        memory = self.dropout(memory)
        if self.projection is not None:
            memory = self.projection(memory)
        if self.context is not None:
            with sdpa_kernel(SDPBackend.MATH):  # a few dozen positions: see the docstring
                memory = self.context(memory)
        lengths = torch.full(
            (memory.size(0),), memory.size(1), dtype=torch.long, device=memory.device
        )
        return EncoderOutput(memory, lengths)


def _self_attention(width: int, layers: int, dropout: float) -> nn.TransformerEncoder | None:
    """``layers`` pre-norm Transformer encoder layers over ``(B, S, width)``, or ``None``."""
    heads = GridHead.SELF_ATTENTION_HEADS
    if layers < 0:
        raise InputError(f"encoder.self_attention_layers must be >= 0, got {layers}")
    if layers == 0:
        return None
    if width % heads:
        raise InputError(
            f"encoder.self_attention_layers needs a memory width divisible by {heads} "
            f"heads, got {width}"
        )
    layer = nn.TransformerEncoderLayer(
        width, heads, 2 * width, dropout, batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def grid_coordinates(height: int, width: int, like: Tensor) -> Tensor:
    """``(1, H * W, 2)`` (row, column) of each position, row by row, each in ``[-1, 1]``
    (0 for a grid one position wide), in ``like``'s dtype and device."""
    rows = torch.linspace(-1.0, 1.0, height) if height > 1 else torch.zeros(1)
    columns = torch.linspace(-1.0, 1.0, width) if width > 1 else torch.zeros(1)
    grid = torch.stack(torch.meshgrid(rows, columns, indexing="ij"), dim=-1)
    return grid.view(1, height * width, 2).to(like)
