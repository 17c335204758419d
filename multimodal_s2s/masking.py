"""The one padding-mask helper every attention and loss uses."""

import torch
from torch import Tensor


def padding_mask(lengths: Tensor, max_length: int | None = None) -> Tensor:
    """Mark padded positions.

    Args:
        lengths: ``(B,)`` int64, valid length of each sequence.
        max_length: ``S``; defaults to ``lengths.max()``.

    Returns:
        ``(B, S)`` bool, True where a position is padding (``position >= length``).
    """
    size = int(lengths.max()) if max_length is None else max_length
    positions = torch.arange(size, device=lengths.device)
    return positions.unsqueeze(0) >= lengths.unsqueeze(1)
