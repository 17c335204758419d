"""Attention over the encoder memory, chosen by name from ``ATTENTIONS``.

Every kind scores each memory position, masks padding with the mask that
``masking.padding_mask`` made (True = padding), and returns the softmax weights and the
weighted sum of the memory. ``prepare`` computes once per source what depends on the
memory alone (projected keys), so a decoding step only pays for the query.
"""

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional


@dataclass
class DotConfig:
    """Luong dot: ``score_j = q . m_j``; needs decoder hidden size == encoder output size."""

    name: str = "dot"


@dataclass
class GeneralConfig:
    """Luong general: ``score_j = (W q) . m_j``."""

    name: str = "general"


@dataclass
class AdditiveConfig:
    """Bahdanau / Show-Attend-Tell: ``score_j = v . tanh(W q + U m_j)``.

    ``gate`` multiplies the context by ``sigmoid(W_b q)`` (Show-Attend-Tell's beta).
    """

    name: str = "additive"
    dim: int = 128
    gate: bool = False


@dataclass
class LocationConfig:
    """Location-aware (Chorowski et al. 2015): ``v . tanh(W q + U m_j + V (F * a_prev)_j)``.

    ``F`` is a 1-D convolution with ``channels`` filters of odd width ``kernel_size`` over
    the previous step's attention weights.
    """

    name: str = "location"
    dim: int = 128
    channels: int = 10
    kernel_size: int = 31


def dot_tanh_(hidden: Tensor, weight: Tensor) -> Tensor:
    """``(..., A)`` hidden, ``(1, A)`` weight -> ``weight . tanh(hidden)`` ``(..., 1)``;
    overwrites ``hidden``.

    In float32 and float64 computed as ``2 weight . sigmoid(2 hidden) - sum(weight)``
    (``tanh(x) = 2 sigmoid(2x) - 1``, equal up to float rounding): PyTorch's CPU ``tanh`` is
    about 7x slower than its ``sigmoid`` (3.3 against 0.5 ms over 3.1 M float32 values with
    AVX512, 2 threads), and this is the largest elementwise operation of a beam-search step.
    Half-precision inputs (autocast training) keep ``tanh``: there the sigmoid form's
    cancellation around 0 costs accuracy (mean error 1.7e-3 against 1.0e-3 in bfloat16).
    """
    if hidden.dtype in (torch.float16, torch.bfloat16):
        return functional.linear(hidden.tanh_(), weight)
    return functional.linear(hidden.mul_(2.0).sigmoid_(), 2.0 * weight, -weight.sum(1))


class Attention(nn.Module):
    """Base class: subclasses implement ``prepare`` and ``_scores``."""

    def prepare(self, memory: Tensor) -> Tensor:
        """``(B, S, D)`` memory -> keys ``(B, S, *)`` reused at every decoding step."""
        return memory

    def forward(
        self, query: Tensor, memory: Tensor, keys: Tensor, mask: Tensor, previous: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Attend. ``K`` queries may share one memory row (beam search): query row ``b * K + k``
        attends over memory row ``b``; ``K = 1`` otherwise.

        Args:
            query: ``(B * K, Q)`` decoder states.
            memory: ``(B, S, D)`` encoder memory.
            keys: ``(B, S, *)`` from ``prepare(memory)``.
            mask: ``(B, S)`` bool, True = padding.
            previous: ``(B * K, S)`` attention weights of the previous step (zeros at first).

        Returns:
            context ``(B * K, D)`` and weights ``(B * K, S)`` (zero on padding, summing to 1).
        """
        batch, length, _ = memory.shape
        grouped = query.view(batch, -1, query.size(1))
        scores = self._scores(grouped, keys, previous.view(batch, -1, length))
        weights = torch.softmax(scores.masked_fill(mask.unsqueeze(1), float("-inf")), dim=-1)
        context = torch.bmm(weights, memory).flatten(0, 1)
        return self._gate(query, context), weights.flatten(0, 1)

    def _scores(self, query: Tensor, keys: Tensor, previous: Tensor) -> Tensor:
        """query ``(B, K, Q)``, keys ``(B, S, *)``, previous ``(B, K, S)`` -> ``(B, K, S)``."""
        raise NotImplementedError

    def _gate(self, query: Tensor, context: Tensor) -> Tensor:
        return context


class DotAttention(Attention):
    def __init__(self, config: DotConfig, query_dim: int, memory_dim: int) -> None:
        super().__init__()
        if query_dim != memory_dim:
            raise ValueError(
                f"dot attention needs decoder.hidden_dim ({query_dim}) == encoder output "
                f"size ({memory_dim}); use 'general' or set encoder.output_dim"
            )

    def _scores(self, query: Tensor, keys: Tensor, previous: Tensor) -> Tensor:
        return torch.bmm(query, keys.transpose(1, 2))


class GeneralAttention(Attention):
    def __init__(self, config: GeneralConfig, query_dim: int, memory_dim: int) -> None:
        super().__init__()
        self.query_projection = nn.Linear(query_dim, memory_dim, bias=False)

    def _scores(self, query: Tensor, keys: Tensor, previous: Tensor) -> Tensor:
        return torch.bmm(self.query_projection(query), keys.transpose(1, 2))


class AdditiveAttention(Attention):
    def __init__(self, config: AdditiveConfig, query_dim: int, memory_dim: int) -> None:
        super().__init__()
        self.query_projection = nn.Linear(query_dim, config.dim, bias=False)
        self.memory_projection = nn.Linear(memory_dim, config.dim)
        self.energy = nn.Linear(config.dim, 1, bias=False)
        self.gate = nn.Linear(query_dim, memory_dim) if config.gate else None

    def prepare(self, memory: Tensor) -> Tensor:
        return self.memory_projection(memory)

    def _scores(self, query: Tensor, keys: Tensor, previous: Tensor) -> Tensor:
        return self._energy(keys.unsqueeze(1), query)

    def _energy(self, keys: Tensor, query: Tensor, location: Tensor | None = None) -> Tensor:
        """keys ``(B, 1 or K, S, A)``, query ``(B, K, Q)``, location ``(B, K, S, A)`` ->
        ``v . tanh(keys + W q [+ location])`` ``(B, K, S)``.

        ``location`` is overwritten: the sum and the ``tanh`` are computed in one buffer,
        which matters for large beams, where each ``(B, K, S, A)`` temporary is megabytes.
        """
        projected = self.query_projection(query).unsqueeze(2)
        hidden = keys + projected if location is None else location.add_(keys).add_(projected)
        return dot_tanh_(hidden, self.energy.weight).squeeze(3)

    def _gate(self, query: Tensor, context: Tensor) -> Tensor:
        if self.gate is None:
            return context
        return torch.sigmoid(self.gate(query)) * context


class LocationAttention(AdditiveAttention):
    def __init__(self, config: LocationConfig, query_dim: int, memory_dim: int) -> None:
        if config.kernel_size % 2 == 0:
            raise ValueError(
                f"location attention kernel_size must be odd, got {config.kernel_size}"
            )
        super().__init__(AdditiveConfig(dim=config.dim), query_dim, memory_dim)
        self.location_conv = nn.Conv1d(
            1, config.channels, config.kernel_size, padding=config.kernel_size // 2, bias=False
        )
        self.location_projection = nn.Linear(config.channels, config.dim, bias=False)

    def _scores(self, query: Tensor, keys: Tensor, previous: Tensor) -> Tensor:
        batch, groups, length = previous.shape
        location = self.location_conv(previous.reshape(batch * groups, 1, length))
        location = self.location_projection(location.transpose(1, 2))
        return self._energy(keys.unsqueeze(1), query, location.view(batch, groups, length, -1))


ATTENTIONS = {
    "dot": (DotAttention, DotConfig),
    "general": (GeneralAttention, GeneralConfig),
    "additive": (AdditiveAttention, AdditiveConfig),
    "location": (LocationAttention, LocationConfig),
}
