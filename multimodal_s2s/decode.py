"""Decoding batches to text, shared by training, evaluation and the CLI."""

from typing import NamedTuple

import torch
from torch import Tensor

from multimodal_s2s.ctc import CTCPrefixScorer
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
    False or ``search.beam_size`` is 1); with ``search.ctc_weight`` beam search adds the
    model's CTC prefix scores. Sources must already be on the model's device."""
    encoded = model.encode(sources, lengths)
    if not beam or search.beam_size == 1:
        best = greedy_search(model, encoded, search)
    else:
        scorer = None
        if search.ctc_weight:
            if model.ctc is None:
                raise InputError("search.ctc_weight needs a model trained with loss.ctc_weight > 0")
            log_probs, ctc_lengths = model.ctc_log_probs(encoded)
            scorer = CTCPrefixScorer(log_probs, ctc_lengths, search.beam_size, search.ctc_weight)
        best = [nbest[0] for nbest in beam_search(model, encoded, search, scorer)]
    return [Decoded(tokenizer.decode(h.tokens), h.score, h) for h in best]
