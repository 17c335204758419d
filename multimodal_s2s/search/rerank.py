"""Re-ranking a finished beam with the model's bag-of-words head (``models/bag_of_words.py``)."""

from torch import Tensor

from multimodal_s2s.search.beam import Hypothesis
from multimodal_s2s.text import SPECIAL_TOKENS


def rerank_with_bag_of_words(
    logits: Tensor, nbests: list[list[Hypothesis]], weight: float
) -> list[list[Hypothesis]]:
    """Re-rank each source's n-best list with the bag-of-words head's opinion.

    A hypothesis's ``score`` gains ``weight`` times the sum of the logits of the distinct
    non-special tokens it contains. A logit is the log-odds ``log p_c - log(1 - p_c)``, so
    the gain is ``weight`` times the hypothesis's bag-of-words log-likelihood, less that of
    the empty bag (the same for every hypothesis of a source): outputs that name what the
    encoder detects rise, and naming one thing twice gains nothing.

    Args:
        logits: ``(B, V)`` from ``BagOfWordsHead`` for the ``B`` sources.
        nbests: ``B`` lists of hypotheses (``beam_search``'s output).
        weight: >= 0.

    Returns:
        The same hypotheses with the new ``score``, best first per source.
    """
    gains = logits.tolist()
    reranked = []
    for source_gains, nbest in zip(gains, nbests, strict=True):
        rescored = []
        for hypothesis in nbest:
            present = set(hypothesis.tokens) - set(range(len(SPECIAL_TOKENS)))
            gain = weight * sum(source_gains[token] for token in present)
            rescored.append(hypothesis._replace(score=hypothesis.score + gain))
        reranked.append(sorted(rescored, key=lambda h: -h.score))
    return reranked
