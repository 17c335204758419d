"""The encoder -> decoder contract."""

from abc import ABC, abstractmethod
from typing import NamedTuple

from torch import Tensor, nn


class EncoderOutput(NamedTuple):
    """What every encoder returns.

    memory: ``(B, S, D)`` float, batch first.
    lengths: ``(B,)`` int64 with ``1 <= lengths <= S``; positions ``>= length`` are padding.
    auxiliary: optional frames of an intermediate layer for auxiliary losses (the CTC loss,
        see ``ctc.py``), itself an ``EncoderOutput``: ``(B, S_a, D_a)`` with lengths ``(B,)``
        (for pblstm with ``ctc_layer: k``, ``S_a = T // 2**k`` and ``D_a = auxiliary_dim``).
        ``None`` when the encoder has none; the decoder never reads it.
    """

    memory: Tensor
    lengths: Tensor
    auxiliary: "EncoderOutput | None" = None


class Encoder(nn.Module, ABC):
    """A source (audio features, image, ...) -> memory bank the decoder attends over."""

    output_dim: int
    auxiliary_dim: int | None = None  # D_a of ``EncoderOutput.auxiliary``; None = no auxiliary
    min_frames: int = 1  # the fewest frames a sequence of a padded batch may have

    @abstractmethod
    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """Encode a padded batch; ``lengths`` is ``None`` for sources without padding."""
