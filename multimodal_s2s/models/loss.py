"""Training losses shared by every recipe."""

from dataclasses import dataclass

from torch import Tensor

from multimodal_s2s.errors import InputError
from multimodal_s2s.masking import padding_mask
from multimodal_s2s.text import PAD_ID


@dataclass
class LossConfig:
    """``attention_penalty`` is the weight of the doubly stochastic penalty (Show-Attend-Tell).

    ``ctc_weight`` in ``[0, 1)``: joint CTC-attention training, ``ctc_weight * CTC +
    (1 - ctc_weight) * attention`` (both summed over the batch, divided by the target tokens).
    The CTC head reads the encoder's auxiliary frames (pblstm: ``encoder.ctc_layer``), else
    its memory; see ``ctc.py``. 0 builds no CTC head and trains exactly as without it.

    ``bag_of_words_weight`` >= 0 adds that times the bag-of-words loss of the encoder memory
    (``bag_of_words.py``: is each vocabulary token in the target?). 0 builds no head.
    """

    label_smoothing: float = 0.1
    attention_penalty: float = 0.0
    ctc_weight: float = 0.0
    bag_of_words_weight: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.ctc_weight < 1.0:
            raise InputError(f"loss.ctc_weight must be in [0, 1), got {self.ctc_weight}")
        if self.bag_of_words_weight < 0.0:
            raise InputError(
                f"loss.bag_of_words_weight must be >= 0, got {self.bag_of_words_weight}"
            )


def token_loss(log_probs: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Summed token cross-entropy with label smoothing, ignoring PAD targets.

    Args:
        log_probs: ``(B, L, V)`` generator output.
        targets: ``(B, L)`` ``y_1 .. y_m`` (``y_m`` = EOS), PAD after.

    Returns:
        scalar: sum over non-PAD tokens of
        ``(1 - eps) * -log p(y) + eps * mean_v(-log p(v))``.
    """
    valid = targets != PAD_ID
    nll = -log_probs.gather(2, targets.unsqueeze(2)).squeeze(2)
    smooth = -log_probs.mean(dim=2)
    per_token = (1.0 - label_smoothing) * nll + label_smoothing * smooth
    return per_token.masked_select(valid).sum()


def doubly_stochastic_penalty(weights: Tensor, targets: Tensor, memory_lengths: Tensor) -> Tensor:
    """Show-Attend-Tell penalty ``sum_b sum_j (1 - sum_t a_{b,t,j})**2`` over valid positions.

    Args:
        weights: ``(B, L, S)`` attention weights from teacher forcing.
        targets: ``(B, L)``; steps whose target is PAD do not count.
        memory_lengths: ``(B,)``; memory positions at or past the length do not count.
    """
    steps = (targets != PAD_ID).unsqueeze(2).to(weights.dtype)
    totals = (weights * steps).sum(dim=1)
    valid = ~padding_mask(memory_lengths, weights.size(2))
    return ((1.0 - totals) ** 2).masked_select(valid).sum()
