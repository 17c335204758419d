"""The encoder -> decoder contract."""

from abc import ABC, abstractmethod
from typing import NamedTuple

from torch import Tensor, nn


class EncoderOutput(NamedTuple):
    """What every encoder returns.

    memory: ``(B, S, D)`` float, batch first.
    lengths: ``(B,)`` int64 with ``1 <= lengths <= S``; positions ``>= length`` are padding.
    """

    memory: Tensor
    lengths: Tensor


class Encoder(nn.Module, ABC):
    """A source (audio features, image, ...) -> memory bank the decoder attends over."""

    output_dim: int

    @abstractmethod
    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """Encode a padded batch; ``lengths`` is ``None`` for sources without padding."""
