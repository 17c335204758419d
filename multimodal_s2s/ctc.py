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
from multimodal_s2s.search import Hypothesis

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


def ctc_loss(
    log_probs: Tensor, lengths: Tensor, targets: Tensor, zero_infinity: bool = True
) -> Tensor:
    """Per-utterance CTC negative log-likelihood.

    Args:
        log_probs: ``(B, T, V)`` from ``CTCHead``; frames ``>= lengths`` are padding.
        lengths: ``(B,)`` valid frames per utterance.
        targets: ``(B, L)`` decoder targets ``y_1 .. y_m`` (``y_m`` = EOS), PAD after.

    Returns:
        ``(B,)`` float32 (float64 for float64 inputs) ``-log p_ctc(y_1 .. y_{m-1} | x)``;
        where the labels cannot fit the frames, 0 (``zero_infinity``, for training) or inf.
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
        zero_infinity=zero_infinity,
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


def rescore_with_ctc(
    model: nn.Module, encoded: EncoderOutput, nbests: list[list[Hypothesis]], weight: float
) -> list[list[Hypothesis]]:
    """Re-rank each source's n-best list by joint CTC-attention log-probability per token.

    A hypothesis of ``n`` tokens scores ``((1 - weight) * log p_att + weight * log p_ctc) /
    (n + 1)`` (EOS counted, as ``length_norm: length`` does); a hypothesis whose labels cannot
    fit the source's CTC frames scores ``-inf``.

    Args:
        model: a ``Seq2Seq`` built with a CTC head.
        encoded: the encoder output the hypotheses were searched on, ``B`` sources.
        nbests: ``B`` lists of hypotheses (``beam_search``'s output).
        weight: CTC weight in ``[0, 1]``.

    Returns:
        The same hypotheses with the joint ``score``, best first per source.
    """
    log_probs, lengths = model.ctc_log_probs(encoded)
    owners = [source for source, nbest in enumerate(nbests) for _ in nbest]
    hypotheses = [hypothesis for nbest in nbests for hypothesis in nbest]
    if not hypotheses:
        return nbests
    longest = max(len(h.tokens) for h in hypotheses) + 1
    targets = torch.full((len(hypotheses), longest), PAD_ID, dtype=torch.long)
    for row, hypothesis in enumerate(hypotheses):
        targets[row, : len(hypothesis.tokens)] = torch.tensor(hypothesis.tokens, dtype=torch.long)
    index = torch.tensor(owners, device=log_probs.device)
    nll = ctc_loss(log_probs[index], lengths[index], targets.to(log_probs.device), False)
    rescored = [[] for _ in nbests]
    for hypothesis, owner, ctc_nll in zip(hypotheses, owners, nll.tolist(), strict=True):
        joint = (1.0 - weight) * hypothesis.log_prob - weight * ctc_nll
        rescored[owner].append(hypothesis._replace(score=joint / (len(hypothesis.tokens) + 1)))
    return [sorted(nbest, key=lambda h: -h.score) for nbest in rescored]
