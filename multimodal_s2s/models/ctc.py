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
- Decoding: ``CTCPrefixScorer`` adds CTC prefix scores to every beam search step
  (``search.ctc_weight``, joint CTC-attention decoding as in ESPnet).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multimodal_s2s.masking import padding_mask
from multimodal_s2s.models.encoders.base import EncoderOutput
from multimodal_s2s.models.float32_linear import Float32Linear
from multimodal_s2s.text import BOS_ID, EOS_ID, PAD_ID

BLANK_ID = PAD_ID


class CTCHead(nn.Module):
    """``(B, T, D)`` encoder frames -> ``(B, T, V)`` float32 log-probabilities (blank = 0)."""

    def __init__(self, input_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.projection = Float32Linear(input_dim, vocab_size)

    def forward(self, frames: Tensor) -> Tensor:
        """At least float32 (computed outside autocast), so CTC is AMP-safe."""
        return torch.log_softmax(self.projection(frames), dim=-1)


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


class CTCPrefixScorer:
    """CTC prefix scores for batched beam search (joint CTC-attention decoding, Watanabe et
    al. 2017, Algorithm 2), for every candidate token of every beam at once.

    For a prefix ``g`` the scorer keeps the forward variables ``r_t^n(g)`` and ``r_t^b(g)``
    (log-probability of ``g`` over frames ``1..t``, ending in a label or a blank) and the
    prefix probability ``psi(g)`` (of every CTC output that starts with ``g``). ``joint``
    returns ``(1 - weight) * log p_att(c | g) + weight * (psi(g c) - psi(g))`` for every token
    ``c``; EOS uses ``psi(g EOS) = log p_ctc(g | x)``. Along one hypothesis the CTC terms
    telescope to ``log p_ctc(y | x)``, so a finished hypothesis scores ``(1 - weight) *
    log p_att(y) + weight * log p_ctc(y)``. Padded frames are made to emit blank with
    probability 1, so padding changes no score. PAD and BOS score ``-inf``.

    Rows are beam rows ``i * K + k`` as in ``search.beam_search``, which calls ``joint``,
    then ``select`` with the chosen parents and tokens, then ``keep`` when sources leave.

    The recursion over frames runs as a loop of ``T`` small steps (``_loop_over_frames``) on
    the CPU, and as cumulative sums (``_scan_over_frames``) on CUDA, where each step of the
    loop would be a handful of kernel launches; on the CPU the loop's small steps cost less
    than the scan's extra arithmetic.
    """

    def __init__(
        self,
        log_probs: Tensor,
        lengths: Tensor,
        beam_size: int,
        weight: float,
        scan: bool | None = None,
    ) -> None:
        """``log_probs`` ``(B, T, V)`` and ``lengths`` ``(B,)`` from ``Seq2Seq.ctc_log_probs``;
        ``weight`` in ``(0, 1]``; ``scan`` picks the recursion (default: scan on CUDA)."""
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"the CTC weight of joint decoding must be in (0, 1], got {weight}")
        self.scan = log_probs.is_cuda if scan is None else scan
        frames = log_probs.transpose(0, 1)
        blank_only = torch.full_like(frames[0, 0], float("-inf"))
        blank_only[BLANK_ID] = 0.0
        padding = padding_mask(lengths, frames.size(0)).transpose(0, 1).unsqueeze(2)
        self.frames = torch.where(padding, blank_only, frames).repeat_interleave(beam_size, 1)
        self.lengths = lengths.repeat_interleave(beam_size)
        self.weight = weight
        rows = self.frames.size(1)
        self.nonblank = torch.full_like(self.frames[:, :, 0], float("-inf"))
        self.blank = self.frames[:, :, BLANK_ID].cumsum(0)
        self.prefix = self.blank.new_zeros(rows)
        self.last: Tensor | None = None
        self._candidates: tuple[Tensor, Tensor, Tensor] | None = None

    def joint(self, attention_log_probs: Tensor) -> Tensor:
        """``(N, V)`` attention log-probabilities of the next token -> ``(N, V)`` joint ones."""
        frames = self.frames
        total = torch.logaddexp(self.nonblank, self.blank)
        start = total.unsqueeze(2).expand_as(frames)
        if self.last is not None:
            repeat = F.one_hot(self.last, frames.size(2)).bool()
            start = torch.where(repeat, self.blank.unsqueeze(2), start)
        recursion = _scan_over_frames if self.scan else _loop_over_frames
        nonblank, blank = recursion(frames, start, self.last is None)
        prefix = torch.logsumexp(torch.cat([nonblank[:1], start[:-1] + frames[1:]]), dim=0)
        prefix[:, EOS_ID] = total[-1]
        prefix[:, [PAD_ID, BOS_ID]] = float("-inf")
        self._candidates = nonblank, blank, prefix
        impossible = prefix == float("-inf")
        increment = torch.where(impossible, float("-inf"), prefix - self.prefix.unsqueeze(1))
        if self.weight == 1.0:
            return increment
        return (1.0 - self.weight) * attention_log_probs + self.weight * increment

    def select(self, parents: Tensor, tokens: Tensor) -> None:
        """Make row ``r`` the prefix ``parents[r]`` extended by ``tokens[r]`` (``(N,)`` each)."""
        nonblank, blank, prefix = self._candidates
        self.nonblank = nonblank[:, parents, tokens]
        self.blank = blank[:, parents, tokens]
        self.prefix = prefix[parents, tokens]
        self.last = tokens
        self._candidates = None

    def keep(self, rows: Tensor) -> None:
        """Keep only ``rows`` ``(N',)`` and the frames the longest of them uses."""
        length = int(self.lengths[rows].max()) if rows.numel() else 0
        self.frames = self.frames[:length, rows]
        self.lengths = self.lengths[rows]
        self.nonblank = self.nonblank[:length, rows]
        self.blank = self.blank[:length, rows]
        self.prefix = self.prefix[rows]
        self.last = self.last[rows] if self.last is not None else None


def _loop_over_frames(frames: Tensor, start: Tensor, first: bool) -> tuple[Tensor, Tensor]:
    """The forward variables of every prefix ``g c``, one frame at a time.

    Args:
        frames: ``(T, N, V)`` CTC log-probabilities of each row's frames.
        start: ``(T, N, V)`` log-probability of ``g`` by frame ``t`` that ``c`` may follow.
        first: ``g`` is empty (``c`` may be emitted on the first frame).

    Returns:
        ``r^n`` and ``r^b`` of ``g c``, each ``(T, N, V)``.
    """
    nonblank = torch.empty_like(frames)
    blank = torch.empty_like(frames)
    nonblank[0] = frames[0] if first else float("-inf")
    blank[0] = float("-inf")
    for t in range(1, frames.size(0)):
        nonblank[t] = torch.logaddexp(nonblank[t - 1], start[t - 1]) + frames[t]
        blank[t] = torch.logaddexp(blank[t - 1], nonblank[t - 1]) + frames[t, :, BLANK_ID, None]
    return nonblank, blank


# Frames that cannot emit a token (padding, log-probability -inf) take this log-probability
# in the scan, and any forward variable below IMPOSSIBLE / 10 is one: real paths stay far
# above it (T frames of float32 log-probabilities above -1e4 each).
IMPOSSIBLE = -1e10


def _scan_over_frames(frames: Tensor, start: Tensor, first: bool) -> tuple[Tensor, Tensor]:
    """``_loop_over_frames`` without a loop over frames, in float64.

    With ``X_t = x_1 + .. + x_t`` the token's cumulative log-probability, the recursion
    ``r^n_t = logaddexp(r^n_{t-1}, start_{t-1}) + x_t`` becomes
    ``r^n_t = X_t + logcumsumexp_u(start_{u-1} - X_{u-1})`` (the ``u = 0`` term being
    ``r^n_0 - X_0``), and ``r^b`` likewise with the blank's cumulative log-probability.
    """
    dtype = frames.dtype
    frames = frames.double().clamp(min=IMPOSSIBLE)
    start = start.double()
    emitted = frames.cumsum(0)
    none = torch.full_like(frames[:1], float("-inf"))
    nonblank = emitted + torch.logcumsumexp(
        torch.cat([torch.zeros_like(none) if first else none, start[:-1] - emitted[:-1]]), 0
    )
    nonblank = _impossible_to_inf(nonblank)
    blanks = frames[:, :, BLANK_ID, None].cumsum(0)
    blank = blanks + torch.logcumsumexp(torch.cat([none, nonblank[:-1] - blanks[:-1]]), 0)
    return nonblank.to(dtype), _impossible_to_inf(blank).to(dtype)


def _impossible_to_inf(log_probs: Tensor) -> Tensor:
    """``-inf`` where a scanned log-probability went through an impossible frame."""
    return log_probs.masked_fill(log_probs < IMPOSSIBLE / 10, float("-inf"))
