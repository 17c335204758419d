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
    much slower than its ``sigmoid`` (``benchmarks/README.md``), and this is the largest
    elementwise operation of a beam-search step.
    Half-precision inputs (autocast training) keep ``tanh``: there the sigmoid form's
    cancellation around 0 costs accuracy (mean error 1.7e-3 against 1.0e-3 in bfloat16).
    """
    if hidden.dtype in (torch.float16, torch.bfloat16):
        return functional.linear(hidden.tanh_(), weight)
    return functional.linear(hidden.mul_(2.0).sigmoid_(), 2.0 * weight, -weight.sum(1))


class Attention(nn.Module):
    """Base class: subclasses implement ``prepare`` and ``_scores``.

    ``gated``: whether the context is rescaled by a function of the query (the additive
    attention's gate). Without a gate the context is exactly ``weights @ memory``, so any
    linear map of it equals ``weights @ (memory @ W^T)`` (the decoder precomputes that when
    decoding).
    """

    gated = False

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
        weights = self.weights(query, keys, mask, previous)
        return self.read(query, weights, memory), weights.flatten(0, 1)

    def weights(self, query: Tensor, keys: Tensor, mask: Tensor, previous: Tensor) -> Tensor:
        """The attention weights alone, grouped by memory row: ``(B, K, S)`` (arguments as
        in ``forward``)."""
        batch, length = mask.shape
        grouped = query.view(batch, -1, query.size(1))
        scores = self._scores(grouped, keys, previous.view(batch, -1, length))
        return torch.softmax(scores.masked_fill(mask.unsqueeze(1), float("-inf")), dim=-1)

    def read(self, query: Tensor, weights: Tensor, memory: Tensor) -> Tensor:
        """``(B * K, Q)`` queries, ``(B, K, S)`` weights, ``(B, S, D)`` memory -> the
        (gated) context ``(B * K, D)``."""
        return self._gate(query, torch.bmm(weights, memory).flatten(0, 1))

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

    @property
    def gated(self) -> bool:
        return self.gate is not None

    def prepare(self, memory: Tensor) -> Tensor:
        return self.memory_projection(memory)

    def _scores(self, query: Tensor, keys: Tensor, previous: Tensor) -> Tensor:
        return dot_tanh_(self._hidden(keys, query), self.energy.weight).squeeze(3)

    def _hidden(self, keys: Tensor, query: Tensor) -> Tensor:
        """keys ``(B, S, A)``, query ``(B, K, Q)`` -> ``keys + W q``, a new ``(B, K, S, A)``
        buffer that the energy is then computed in (for large beams each ``(B, K, S, A)``
        temporary is megabytes)."""
        return keys.unsqueeze(1) + self.query_projection(query).unsqueeze(2)

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
        """The location term ``U conv(previous)`` is added to the energy's buffer by the
        projection's matrix product itself (``addmm_``), not as a temporary of its own."""
        batch, groups, length = previous.shape
        features = self.location_conv(previous.reshape(batch * groups, 1, length))
        hidden = self._hidden(keys, query)
        dtype = hidden.dtype  # in-place products are not autocast
        flat = hidden.view(-1, hidden.size(3))
        features = features.transpose(1, 2).reshape(-1, features.size(1)).to(dtype)
        weight = self.location_projection.weight.t().to(dtype)
        if torch.jit.is_tracing():  # the ONNX exporter loses an in-place update of a view
            hidden = torch.addmm(flat, features, weight).view(hidden.shape)
        else:
            flat.addmm_(features, weight)
        return dot_tanh_(hidden, self.energy.weight).squeeze(3)


ATTENTIONS = {
    "dot": (DotAttention, DotConfig),
    "general": (GeneralAttention, GeneralConfig),
    "additive": (AdditiveAttention, AdditiveConfig),
    "location": (LocationAttention, LocationConfig),
}
