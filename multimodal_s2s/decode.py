"""Decoding batches to text, shared by training, evaluation and the CLI."""

from dataclasses import replace
from typing import NamedTuple

import torch
from torch import Tensor

from multimodal_s2s.ctc import rescore_with_ctc
from multimodal_s2s.data.text import Tokenizer
from multimodal_s2s.errors import InputError
from multimodal_s2s.model import Seq2Seq
from multimodal_s2s.search import Hypothesis, SearchConfig, beam_search, greedy_search


class Decoded(NamedTuple):
    """The best hypothesis of one source, as text."""

    text: str
    score: float
    hypothesis: Hypothesis


@torch.no_grad()
def decode_batch(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    sources: Tensor,
    lengths: Tensor | None,
    search: SearchConfig,
    beam: bool = True,
) -> list[Decoded]:
    """Encode a padded batch and decode it with beam search (or greedy when ``beam`` is
    False or ``search.beam_size`` is 1); with ``search.ctc_weight`` the whole beam is re-ranked
    with the model's CTC head. Sources must already be on the model's device."""
    encoded = model.encode(sources, lengths)
    if not beam or search.beam_size == 1:
        best = greedy_search(model, encoded, search)
    elif search.ctc_weight == 0:
        best = [nbest[0] for nbest in beam_search(model, encoded, search)]
    else:
        if model.ctc is None:
            raise InputError("search.ctc_weight needs a model trained with loss.ctc_weight > 0")
        whole_beams = beam_search(model, encoded, replace(search, nbest=search.beam_size))
        reranked = rescore_with_ctc(model, encoded, whole_beams, search.ctc_weight)
        best = [nbest[0] for nbest in reranked]
    return [Decoded(tokenizer.decode(h.tokens), h.score, h) for h in best]
