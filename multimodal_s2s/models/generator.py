"""The generator: decoder outputs -> log-probabilities over the vocabulary."""

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class GeneratorConfig:
    """``tie_weights`` shares the output matrix with the decoder's token embedding."""

    tie_weights: bool = False


class Generator(nn.Module):
    """``(..., O)`` decoder outputs -> ``(..., V)`` log-probabilities (log_softmax)."""

    def __init__(self, input_dim: int, vocab_size: int, tied: nn.Embedding | None = None) -> None:
        super().__init__()
        self.projection = nn.Linear(input_dim, vocab_size)
        if tied is not None:
            if tied.embedding_dim != input_dim:
                raise ValueError(
                    f"tied generator needs decoder output size ({input_dim}) == "
                    f"embedding_dim ({tied.embedding_dim})"
                )
            self.projection.weight = tied.weight

    def forward(self, outputs: Tensor) -> Tensor:
        return torch.log_softmax(self.projection(outputs), dim=-1)
