"""Decoding batches to text, shared by training, evaluation and the CLI."""

import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NamedTuple

import torch
from torch import Tensor

from multimodal_s2s.cpu import slow_bfloat16_warning
from multimodal_s2s.errors import InputError
from multimodal_s2s.models.ctc import CTCPrefixScorer
from multimodal_s2s.models.encoders.base import EncoderOutput
from multimodal_s2s.models.model import Seq2Seq
from multimodal_s2s.search.beam import Hypothesis, SearchConfig, beam_search, greedy_search
from multimodal_s2s.search.fusion import LanguageModelScorer, ScorerChain, load_language_model
from multimodal_s2s.search.rerank import rerank_with_bag_of_words
from multimodal_s2s.text import Tokenizer


class Decoded(NamedTuple):
    """The best hypothesis of one source, as text, and the test-time view it was decoded
    from (one of ``decode_batch``'s ``views``; ``{}``: the source as it is). ``nbest``: the
    ``(text, score)`` of that view's ``search.nbest`` best hypotheses (fewer when the beam is
    smaller), best first; its first is ``(text, score)``."""

    text: str
    score: float
    hypothesis: Hypothesis
    variant: dict[str, Any]
    nbest: tuple[tuple[str, float], ...] = ()


@torch.no_grad()
def decode_batch(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    sources: Tensor,
    lengths: Tensor | None,
    search: SearchConfig,
    beam: bool = True,
    views: Sequence[dict[str, Any]] = ({},),
) -> list[Decoded]:
    """Encode a padded batch and decode it with beam search (or greedy when ``beam`` is
    False or ``search.beam_size`` is 1). ``search.ctc_weight`` adds the model's CTC prefix
    scores to every beam search step, ``search.lm`` the language model's scores (times
    ``search.lm_weight``; the LM is read once per decoding run and must have ``tokenizer``'s
    vocabulary); ``search.bag_of_words_weight`` re-ranks the whole final beam with its
    bag-of-words head. ``views``: test-time views of the sources, as
    keyword arguments of the model's frontend (``frontends.decoding_views``: speeds and warps
    of speech, corner crops of images); beam search runs once per view and keeps each
    source's best-scoring hypothesis (the first view's on a tie). ``search.cpu_bfloat16``
    runs all of it under bfloat16 autocast when the sources are on a CPU. Sources must
    already be on the model's device."""
    bfloat16 = search.cpu_bfloat16 and sources.device.type == "cpu"
    warning = slow_bfloat16_warning("search.cpu_bfloat16") if bfloat16 else None
    if warning is not None:
        warnings.warn(warning, stacklevel=2)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
        if not beam or search.beam_size == 1:
            best = greedy_search(model, model.encode(sources, lengths), search)
            return [_decoded([h], {}, tokenizer) for h in best]
        _check_views(views, getattr(model.frontend, "variants", frozenset()))
        runs = [
            _beam_search(model, model.encode(sources, lengths, **v), search, tokenizer)
            for v in views
        ]
    decoded = []
    for candidates in zip(*runs):
        chosen = max(range(len(views)), key=lambda i: candidates[i][0].score)
        decoded.append(_decoded(candidates[chosen][: search.nbest], views[chosen], tokenizer))
    return decoded


def _decoded(nbest: list[Hypothesis], view: dict[str, Any], tokenizer: Tokenizer) -> Decoded:
    """The ``Decoded`` of one source's hypotheses (best first) decoded from ``view``."""
    texts = tuple((tokenizer.decode(h.tokens), h.score) for h in nbest)
    return Decoded(texts[0][0], nbest[0].score, nbest[0], view, texts)


def _check_views(views: Sequence[dict[str, Any]], accepted: frozenset[str]) -> None:
    """Raise ``InputError`` naming a view change that the model's frontend does not take
    (``accepted``: its ``variants``)."""
    for view in views:
        for change in view.keys() - accepted:
            raise InputError(f"test-time view {change!r} needs a frontend that takes it")


def _beam_search(
    model: Seq2Seq, encoded: EncoderOutput, search: SearchConfig, tokenizer: Tokenizer
) -> list[list[Hypothesis]]:
    """Beam search with the auxiliary heads and the language model that ``search`` turns
    on."""
    scorers = []
    if search.ctc_weight:
        _check_head(model.ctc, "ctc_weight")
        log_probs, lengths = model.ctc_log_probs(encoded)
        scorers.append(CTCPrefixScorer(log_probs, lengths, search.beam_size, search.ctc_weight))
    if search.lm:
        language_model = load_language_model(search.lm, encoded.memory.device, tokenizer)
        rows = encoded.memory.size(0) * search.beam_size
        scorers.append(LanguageModelScorer(language_model, rows, search.lm_weight))
    scorer = scorers[0] if len(scorers) == 1 else ScorerChain(scorers) if scorers else None
    if not search.bag_of_words_weight:
        return beam_search(model, encoded, search, scorer)
    _check_head(model.bag_of_words, "bag_of_words_weight")
    whole = beam_search(model, encoded, replace(search, nbest=search.beam_size), scorer)
    logits = model.bag_of_words(encoded)
    return rerank_with_bag_of_words(logits, whole, search.bag_of_words_weight)


def _check_head(head: torch.nn.Module | None, weight: str) -> None:
    if head is None:
        raise InputError(f"search.{weight} needs a model trained with loss.{weight} > 0")
