"""Greedy and batched beam search over any ``Seq2Seq`` model.

Beam search advances all ``B`` sources x ``K`` beams as one ``(B * K, ...)`` batch per step.
A hypothesis that emits EOS stays in its beam as finished: it is extended only by PAD at
log-probability 0, so its score never changes, and it is fed PAD (never EOS). A source is
done when its best ``nbest`` beams are finished or its length cap is reached; done sources
leave the batch. Hypotheses are ranked by ``rank_score`` (log-probability, length
normalised or GNMT-penalised, plus the optional coverage penalty).
"""

from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

import torch
from torch import Tensor

from multimodal_s2s.errors import InputError
from multimodal_s2s.models.encoders.base import EncoderOutput
from multimodal_s2s.text import BOS_ID, EOS_ID, PAD_ID


@dataclass
class SearchConfig:
    """Decoding options.

    ``length_norm``: "none" ranks by total log-probability, "length" by log-probability per
    token (EOS counted), "gnmt" divides by ``((5 + n) / 6) ** length_alpha`` (Wu et al. 2016).
    ``coverage_penalty`` (GNMT's beta) adds ``beta * sum_j log(min(coverage_j, 1))``.
    The output length cap of a source is ``min(max_length, ceil(max_length_ratio * S))``.
    ``ctc_weight`` > 0 (models trained with a CTC head only): beam search scores every
    extension by ``(1 - w) * log p_att + w * log p_ctc`` with CTC prefix scores
    (``ctc.CTCPrefixScorer``). ``bag_of_words_weight`` > 0 (models trained with a
    bag-of-words head only) re-ranks the whole final beam, adding that times the presence
    log-odds of each distinct token a hypothesis names (``rerank.rerank_with_bag_of_words``).
    Greedy search ignores both. ``lm`` (a checkpoint of ``ms2s train-lm``; empty: none)
    fuses a language model into beam search (shallow fusion, ``fusion.LanguageModelScorer``):
    every extension scores ``log p_att (+ CTC as above) + lm_weight * log p_lm``.
    ``length_bonus`` is added for every token a beam search hypothesis emits (EOS included),
    so that fusion does not favour short outputs; with ``length_norm`` "length" it adds the
    same to every score, so it matters with "none" or "gnmt". Greedy search ignores these
    three too. ``no_repeat_ngram_size`` n > 0 forbids any hypothesis to emit an n-gram of
    tokens it has emitted before (Hugging Face's option of that name, OpenNMT's
    ``block_ngram_repeat``), in greedy and beam search.

    Test-time views of a source (speeds and warps of speech, corner crops of images) belong
    to its modality: ``data.test_views`` (``frontends.features.SpeechViews``,
    ``frontends.image.ImageViews``).

    ``cpu_bfloat16`` decodes on a CPU under bfloat16 autocast (``decode.decode_batch``): the
    matrix products and convolutions read bfloat16 and accumulate in float32, while the
    scores add up in float32. On a CPU with bfloat16 instructions (``cpu.py``) those products
    run faster than in float32; elsewhere autocast emulates them and they are slower. Each
    source's result still does not depend on the batch (``tests/test_search.py``).
    """

    beam_size: int = 8
    nbest: int = 1
    length_norm: Literal["none", "length", "gnmt"] = "length"
    length_alpha: float = 0.6
    coverage_penalty: float = 0.0
    max_length_ratio: float = 2.0
    max_length: int = 200
    ctc_weight: float = 0.0
    bag_of_words_weight: float = 0.0
    no_repeat_ngram_size: int = 0
    cpu_bfloat16: bool = False
    lm: str = ""
    lm_weight: float = 0.0
    length_bonus: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise InputError(f"search.ctc_weight must be in [0, 1], got {self.ctc_weight}")
        if self.bag_of_words_weight < 0.0:
            raise InputError(
                f"search.bag_of_words_weight must be >= 0, got {self.bag_of_words_weight}"
            )
        if self.no_repeat_ngram_size < 0:
            raise InputError(
                f"search.no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}"
            )
        if self.lm_weight < 0.0:
            raise InputError(f"search.lm_weight must be >= 0, got {self.lm_weight}")
        if self.lm_weight and not self.lm:
            raise InputError("search.lm_weight needs search.lm (a language model checkpoint)")


class Hypothesis(NamedTuple):
    """One output: ``tokens`` (no BOS/EOS), ``score`` (rank score), ``log_prob`` (total),
    ``attention`` ``(T, S_i)`` one row per emitted token (EOS included when ``finished``)."""

    tokens: list[int]
    score: float
    log_prob: float
    attention: Tensor
    finished: bool


def max_output_lengths(memory_lengths: Tensor, config: SearchConfig) -> Tensor:
    """``(B,)`` length caps ``min(max_length, ceil(ratio * S_i))``, at least 1."""
    ratio_caps = torch.ceil(memory_lengths.double() * config.max_length_ratio).long()
    return ratio_caps.clamp(min=1, max=config.max_length)


def rank_score(
    log_prob: Tensor, length: Tensor, coverage: Tensor | None, config: SearchConfig
) -> Tensor:
    """Score hypotheses for ranking.

    Args:
        log_prob: ``(...)`` total log-probabilities.
        length: ``(...)`` emitted tokens (EOS included), broadcastable to ``log_prob``.
        coverage: ``(..., S)`` summed attention (padding positions set to 1), or ``None``.
    """
    length = length.to(log_prob.dtype).clamp(min=1)
    if config.length_norm == "length":
        score = log_prob / length
    elif config.length_norm == "gnmt":
        score = log_prob / ((5.0 + length) / 6.0) ** config.length_alpha
    else:
        score = log_prob
    if config.coverage_penalty and coverage is not None:
        penalty = coverage.clamp(min=1e-6, max=1.0).log().sum(-1)
        score = score + config.coverage_penalty * penalty
    return score


def _never_pad_or_bos(log_probs: Tensor) -> Tensor:
    """``(N, V)`` log-probabilities with PAD and BOS impossible: neither is ever a target, but
    label smoothing leaves them some probability, and an emitted PAD would then be fed back."""
    return log_probs.index_fill(
        1, log_probs.new_tensor([PAD_ID, BOS_ID], dtype=torch.long), float("-inf")
    )


def _ban_repeated_ngrams(log_probs: Tensor, history: Tensor, size: int) -> Tensor:
    """``(N, V)`` log-probabilities with ``-inf`` for every token that would complete an
    n-gram (``n = size``) already in its row of ``history`` ``(N, t)`` (emitted tokens)."""
    if size == 0 or history.size(1) < size:
        return log_probs
    windows = history.unfold(1, size, 1)
    seen = (windows[:, :, :-1] == history[:, None, history.size(1) - size + 1 :]).all(-1)
    banned = torch.zeros_like(log_probs).scatter_add_(1, windows[:, :, -1], seen.to(log_probs))
    return log_probs.masked_fill(banned > 0, float("-inf"))


@torch.no_grad()
def greedy_search(model, encoded: EncoderOutput, config: SearchConfig) -> list[Hypothesis]:
    """Pick the most probable token at every step until EOS or the length cap.

    Returns one hypothesis per source; ``score`` is ranked as in beam search.
    """
    memory, state = model.decoder.start(encoded, decoding=True)
    batch = memory.memory.size(0)
    caps = max_output_lengths(encoded.lengths, config)
    tokens = torch.full((batch,), BOS_ID, dtype=torch.long, device=memory.memory.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=tokens.device)
    dtype = _score_dtype(memory.memory)
    log_prob = memory.memory.new_zeros(batch, dtype=dtype)
    emitted, weights = [], []
    for step in range(int(caps.max())):
        output, state = model.decoder.step(tokens, memory, state)
        step_log_probs = _never_pad_or_bos(model.generator(output))
        if emitted and config.no_repeat_ngram_size:
            step_log_probs = _ban_repeated_ngrams(
                step_log_probs, torch.stack(emitted, dim=1), config.no_repeat_ngram_size
            )
        best_log_prob, best = step_log_probs.max(dim=-1)
        log_prob = log_prob + torch.where(finished, 0.0, best_log_prob)
        best = torch.where(finished, PAD_ID, best)
        emitted.append(best)
        weights.append(state.weights)
        finished = finished | (best == EOS_ID) | (caps.to(tokens.device) <= step + 1)
        if bool(finished.all()):
            break
        tokens = torch.where(finished, PAD_ID, best)
    emitted_tokens = torch.stack(emitted, dim=1).tolist()
    attention = torch.stack(weights, dim=1).to(dtype)
    hypotheses = []
    for index, row in enumerate(emitted_tokens):
        length = row.index(EOS_ID) + 1 if EOS_ID in row else int(caps[index])
        ended = EOS_ID in row
        source_length = int(encoded.lengths[index])
        row_attention = attention[index, :length, :source_length]
        score = rank_score(log_prob[index], torch.tensor(length), row_attention.sum(0), config)
        hypotheses.append(
            Hypothesis(
                row[: length - 1] if ended else row[:length],
                float(score),
                float(log_prob[index]),
                row_attention,
                ended,
            )
        )
    return hypotheses


def _score_dtype(memory: Tensor) -> torch.dtype:
    """Scores and attention weights add up in float32 (float64 for a float64 model), also
    from the bfloat16 outputs of decoding under autocast (``SearchConfig.cpu_bfloat16``)."""
    return torch.promote_types(memory.dtype, torch.float32)


class PrefixScorer(Protocol):
    """A second model scoring every extension of every beam (e.g. ``ctc.CTCPrefixScorer``).

    Rows are beam rows ``i * K + k``. Each step beam search calls ``joint`` with the
    decoder's ``(N, V)`` log-probabilities and ranks by what it returns, then ``select``
    with the ``(N,)`` parent rows and tokens it chose, then ``keep`` with the rows of the
    sources still decoding when some leave.
    """

    def joint(self, log_probs: Tensor) -> Tensor: ...

    def select(self, parents: Tensor, tokens: Tensor) -> None: ...

    def keep(self, rows: Tensor) -> None: ...


@torch.no_grad()
def beam_search(
    model, encoded: EncoderOutput, config: SearchConfig, scorer: PrefixScorer | None = None
) -> list[list[Hypothesis]]:
    """Batched beam search: every step advances all unfinished sources' beams together.

    Args:
        model: a ``Seq2Seq`` (its ``decoder`` and ``generator`` are used).
        encoded: memory ``(B, S, D)`` and lengths ``(B,)``.
        scorer: optional; beams are then extended and ranked by its joint log-probabilities
            (``Hypothesis.log_prob`` is their total) instead of the decoder's alone; several
            scorers chain with ``fusion.ScorerChain``. ``config.length_bonus`` is added to
            every emitted token's (EOS included) and so to ``Hypothesis.log_prob`` as well.

    Returns:
        for each source, its ``nbest`` hypotheses (at most ``beam_size``), best first. A source
        where no hypothesis reached EOS within its cap returns its best unfinished ones.
    """
    memory, state = model.decoder.start(encoded, decoding=True)
    caps = max_output_lengths(encoded.lengths, config)
    beams = _Beams(memory.mask, caps, config, _score_dtype(memory.memory))
    rows = torch.arange(memory.mask.size(0), device=beams.device)
    state = state.select(rows.repeat_interleave(config.beam_size))
    results: list[list[Hypothesis]] = [[] for _ in range(memory.mask.size(0))]
    while beams.sources.numel() > 0:
        output, state = model.decoder.step(beams.next_tokens(), memory, state)
        log_probs = model.generator(output)
        if scorer is not None:
            log_probs = scorer.joint(log_probs)
        if config.length_bonus:
            log_probs = log_probs + config.length_bonus
        parents = beams.advance(log_probs, state.weights)
        if scorer is not None:
            scorer.select(parents, beams.tokens[-1])
        state = state.select(parents)
        done = beams.done()
        done_sources = done.nonzero().flatten()
        nbests = beams.hypotheses(done_sources)
        for source, nbest in zip(beams.sources[done_sources].tolist(), nbests):
            results[source] = nbest
        if done_sources.numel():
            kept, rows, length = beams.keep(~done)
            memory, state = memory.select(kept, length), state.select(rows, length)
            if scorer is not None:
                scorer.keep(rows)
    return results


class _Beams:
    """Beam bookkeeping for ``n`` active sources x ``K`` beams (rows ``i * K + k``).

    Per step it keeps only the chosen tokens, their parent rows (in the previous step's
    numbering) and attention weights; hypotheses are read back through the parents when a
    source is done, so no step copies the whole history. Done sources leave the batch at
    once (the last step's history is renumbered with them) and the memory is cut to the
    longest source still decoding.
    """

    def __init__(
        self, mask: Tensor, caps: Tensor, config: SearchConfig, dtype: torch.dtype
    ) -> None:
        size = config.beam_size
        batch = mask.size(0)
        self.config = config
        self.device = mask.device
        self.sources = torch.arange(batch, device=self.device)
        self.caps = caps.to(self.device)
        self.padding = mask.repeat_interleave(size, dim=0)
        self.log_prob = torch.full((batch, size), float("-inf"), dtype=dtype, device=self.device)
        self.log_prob[:, 0] = 0.0
        self.score = self.log_prob.clone()
        self.lengths = torch.zeros(batch, size, dtype=torch.long, device=self.device)
        self.finished = torch.zeros(batch, size, dtype=torch.bool, device=self.device)
        self.coverage = mask.new_zeros(batch * size, mask.size(1), dtype=dtype)
        self.tokens: list[Tensor] = []
        self.parents: list[Tensor] = []
        self.weights: list[Tensor] = []
        self.history = self.lengths.new_zeros(batch * size, 0)

    def rows(self, sources: Tensor) -> Tensor:
        """``(n,)`` local source indices -> ``(n * K,)`` their beam rows."""
        size = self.config.beam_size
        return (sources.unsqueeze(1) * size + torch.arange(size, device=self.device)).view(-1)

    def next_tokens(self) -> Tensor:
        """``(n * K,)`` decoder inputs: BOS first, then the last token, PAD once finished."""
        if not self.tokens:
            return torch.full_like(self.lengths.view(-1), BOS_ID)
        return torch.where(self.finished.view(-1), PAD_ID, self.tokens[-1])

    def advance(self, step_log_probs: Tensor, weights: Tensor) -> Tensor:
        """Extend every beam by its best tokens; returns the ``(n * K,)`` parent rows."""
        sources, size = self.log_prob.shape
        vocab = step_log_probs.size(1)
        alive = ~self.finished.view(-1, 1)
        pad_only = torch.full_like(step_log_probs[0], float("-inf"))
        pad_only[PAD_ID] = 0.0
        allowed = _ban_repeated_ngrams(
            _never_pad_or_bos(step_log_probs), self.history, self.config.no_repeat_ngram_size
        )
        step_log_probs = torch.where(alive, allowed, pad_only)
        coverage = self.coverage + weights * alive
        candidate_log_prob = self.log_prob.view(-1, 1) + step_log_probs
        candidate_length = self.lengths.view(-1, 1) + alive
        candidate_score = rank_score(
            candidate_log_prob,
            candidate_length,
            coverage.masked_fill(self.padding, 1.0).unsqueeze(1),
            self.config,
        )
        self.score, best = candidate_score.view(sources, size * vocab).topk(size, dim=1)
        parent = (
            torch.arange(sources, device=self.device).unsqueeze(1) * size
            + torch.div(best, vocab, rounding_mode="floor")
        ).view(-1)
        tokens = best % vocab
        self.log_prob = candidate_log_prob.view(sources, -1).gather(1, best)
        self.lengths = candidate_length.view(-1)[parent].view(sources, size)
        self.finished = self.finished.view(-1)[parent].view(sources, size) | (tokens == EOS_ID)
        self.finished |= self.lengths >= self.caps.unsqueeze(1)
        self.coverage = coverage[parent]
        self.tokens.append(tokens.view(-1))
        self.weights.append(weights[parent])
        self.parents.append(parent)
        if self.config.no_repeat_ngram_size:
            self.history = torch.cat([self.history[parent], tokens.view(-1, 1)], dim=1)
        return parent

    def done(self) -> Tensor:
        """``(n,)`` True where the ``nbest`` best-ranked beams are all finished."""
        return self.finished[:, : self.config.nbest].all(dim=1)

    def keep(self, sources: Tensor) -> tuple[Tensor, Tensor, int]:
        """Keep the sources where ``sources`` ``(n,)`` is True, and only the memory positions
        they use. Returns the kept sources ``(n',)``, their rows ``(n' * K,)`` and the new
        memory length ``S'`` (the longest kept source)."""
        kept = sources.nonzero().flatten()
        rows = self.rows(kept)
        for name in ("sources", "caps", "log_prob", "score", "lengths", "finished"):
            setattr(self, name, getattr(self, name)[kept])
        length = int((~self.padding[rows]).sum(1).max()) if rows.numel() else 0
        self.padding, self.coverage = self.padding[rows, :length], self.coverage[rows, :length]
        self.history = self.history[rows]
        for history in (self.tokens, self.weights, self.parents):
            history[-1] = history[-1][rows]
        return kept, rows, length

    def hypotheses(self, done: Tensor) -> list[list[Hypothesis]]:
        """The ranked n-best (beams with a finite score) of each active source whose local
        index is in ``done`` ``(m,)``, read back through the parents for all at once."""
        if done.numel() == 0:
            return []
        size = self.config.beam_size
        count = min(self.config.nbest, size)
        rows = (done.unsqueeze(1) * size + torch.arange(count, device=self.device)).view(-1)
        source_lengths = (~self.padding[done * size]).sum(1)
        width = int(source_lengths.max())  # every step's weights are at least this wide
        tokens, weights = [], []
        for step in range(len(self.tokens) - 1, -1, -1):
            tokens.append(self.tokens[step][rows])
            weights.append(self.weights[step][rows, :width])
            rows = self.parents[step][rows]
        tokens = torch.stack(tokens[::-1], dim=1).view(len(done), count, -1).tolist()
        weights = torch.stack(weights[::-1], dim=1).to(self.log_prob.dtype)
        weights = weights.view(len(done), count, len(self.tokens), -1)
        scores = self.score[done, :count].tolist()
        log_probs = self.log_prob[done, :count].tolist()
        lengths = self.lengths[done, :count].tolist()
        output = []
        for index, source_length in enumerate(source_lengths.tolist()):
            nbest = []
            for beam in range(count):
                score = scores[index][beam]
                if nbest and score == float("-inf"):
                    break
                length = lengths[index][beam]
                sequence = tokens[index][beam][:length]
                ended = bool(sequence) and sequence[-1] == EOS_ID
                nbest.append(
                    Hypothesis(
                        sequence[:-1] if ended else sequence,
                        score,
                        log_probs[index][beam],
                        weights[index, beam, :length, :source_length],
                        ended,
                    )
                )
            output.append(nbest)
        return output
