"""Auxiliary CTC loss on encoder frames (joint CTC-attention training, Kim et al. 2017).

Training minimises ``ctc_weight * CTC + (1 - ctc_weight) * attention``. The CTC loss makes
the encoder learn monotonic alignments early, which pulls the attention along.

- Frames: ``EncoderOutput.auxiliary`` when the encoder returns one (pblstm's
  ``encoder.ctc_layer``), else the memory. Character CTC needs at least as many frames as
  labels (plus one per doubled letter), so fast speech needs 20 or 40 ms frames.
- Blank: ``PAD_ID`` (0). PAD is never a target, so its output unit is free; the CTC head
  has its own projection, so the generator's PAD logit is not shared with the blank.
- Targets: the decoder targets ``y_1 .. y_m`` without EOS (``y_m``). An utterance whose
  labels cannot fit its frames has an infinite loss; it is counted as zero (loss and
  gradient, ``zero_infinity``), and the attention loss still trains on it.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multimodal_s2s.data.text import EOS_ID, PAD_ID
from multimodal_s2s.encoders.base import EncoderOutput

BLANK_ID = PAD_ID


class CTCHead(nn.Module):
    """``(B, T, D)`` encoder frames -> ``(B, T, V)`` float32 log-probabilities (blank = 0)."""

    def __init__(self, input_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.projection = nn.Linear(input_dim, vocab_size)

    def forward(self, frames: Tensor) -> Tensor:
        """At least float32 (computed outside autocast), so CTC is AMP-safe."""
        weight, bias = self.projection.weight, self.projection.bias
        dtype = torch.promote_types(weight.dtype, torch.float32)
        with torch.autocast(frames.device.type, enabled=False):
            logits = F.linear(frames.to(dtype), weight.to(dtype), bias.to(dtype))
        return torch.log_softmax(logits, dim=-1)


def ctc_frames(encoded: EncoderOutput) -> EncoderOutput:
    """The frames the CTC head reads: the auxiliary output when present, else the memory."""
    if encoded.auxiliary is not None:
        return encoded.auxiliary
    return EncoderOutput(encoded.memory, encoded.lengths)


def ctc_loss(log_probs: Tensor, lengths: Tensor, targets: Tensor) -> Tensor:
    """Per-utterance CTC negative log-likelihood.

    Args:
        log_probs: ``(B, T, V)`` from ``CTCHead``; frames ``>= lengths`` are padding.
        lengths: ``(B,)`` valid frames per utterance.
        targets: ``(B, L)`` decoder targets ``y_1 .. y_m`` (``y_m`` = EOS), PAD after.

    Returns:
        ``(B,)`` float32 (float64 for float64 inputs) ``-log p_ctc(y_1 .. y_{m-1} | x)``;
        0 where the labels cannot fit the frames.
    """
    labels = targets.masked_fill(targets == EOS_ID, PAD_ID)
    label_lengths = (labels != PAD_ID).sum(dim=1)
    return F.ctc_loss(
        log_probs.to(torch.promote_types(log_probs.dtype, torch.float32)).transpose(0, 1),
        labels,
        lengths.to(torch.long),
        label_lengths,
        blank=BLANK_ID,
        reduction="none",
        zero_infinity=True,
    )


def joint_ctc_attention_loss(
    model: nn.Module, encoded: EncoderOutput, targets: Tensor, attention: Tensor, weight: float
) -> Tensor:
    """``weight * CTC + (1 - weight) * attention``, both summed over the batch.

    Args:
        model: a ``Seq2Seq`` built with a CTC head.
        encoded: the encoder output of the batch.
        targets: ``(B, L)`` decoder targets (``y_m`` = EOS), PAD after.
        attention: scalar summed attention (token) loss of the batch.
    """
    log_probs, lengths = model.ctc_log_probs(encoded)
    ctc = ctc_loss(log_probs, lengths, targets).sum()
    return weight * ctc + (1.0 - weight) * attention
