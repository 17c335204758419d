"""Auxiliary bag-of-words loss on the encoder memory (training only).

Each memory position scores every vocabulary entry; a token's score for the source is its
best position's score (max pooling over valid positions, a multiple-instance detector), and
the loss is the binary cross-entropy of those scores against the set of tokens the target
contains. For captioning this trains the image encoder to recognise each named object at
the grid cell where it is, directly, instead of only through the attention decoder, whose
gradient reaches the encoder weakly while its attention is still diffuse.

Special tokens (PAD, BOS, EOS, UNK) are never counted as present or absent.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multimodal_s2s.masking import padding_mask
from multimodal_s2s.models.encoders.base import EncoderOutput
from multimodal_s2s.models.float32_linear import Float32Linear
from multimodal_s2s.text import SPECIAL_TOKENS


class BagOfWordsHead(nn.Module):
    """``(B, S, D)`` memory -> ``(B, V)`` float32 logits of "this token is in the target"."""

    def __init__(self, input_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.projection = Float32Linear(input_dim, vocab_size)

    def forward(self, encoded: EncoderOutput) -> Tensor:
        """Max over the valid positions of per-position logits (outside autocast)."""
        logits = self.projection(encoded.memory)
        padding = padding_mask(encoded.lengths, logits.size(1)).unsqueeze(2)
        return logits.masked_fill(padding, float("-inf")).amax(dim=1)


def bag_of_words_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Summed binary cross-entropy of token presence.

    Args:
        logits: ``(B, V)`` from ``BagOfWordsHead``.
        targets: ``(B, L)`` decoder targets ``y_1 .. y_m``, PAD after.

    Returns:
        scalar: sum over the batch and the non-special vocabulary entries.
    """
    present = torch.zeros_like(logits)
    present.scatter_(1, targets, 1.0)
    counted = torch.ones_like(logits)
    counted[:, : len(SPECIAL_TOKENS)] = 0.0
    losses = F.binary_cross_entropy_with_logits(logits, present, reduction="none")
    return (losses * counted).sum()
