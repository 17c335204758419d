"""Evaluation metrics: WER/CER for speech recognition, BLEU-4 and CIDEr-D for captions.

WER and CER are corpus-level, as jiwer computes them: the total edit count over all
utterances divided by the total reference length (not a mean of per-utterance rates).

BLEU-4 and CIDEr-D are the COCO caption evaluation scorers (``pycocoevalcap``: ``Bleu(4)``
with the "closest" reference length, and ``Cider``, which is CIDEr-D: clipped n-gram
counts, a Gaussian length penalty with sigma 6, and a x10 scale). The COCO pipeline
tokenises with the Stanford PTB tokenizer, which needs Java; here captions are instead
lowercased, punctuation other than in-word apostrophes and hyphens is dropped, and the rest is
split on whitespace. For ordinary captions this matches PTB tokenisation except that
contractions are kept whole ("dog's" stays one token where PTB makes "dog 's").

CIDEr-D weights n-grams by their inverse document frequency over the evaluated corpus, so it is
only meaningful for a corpus of several images; for a single image every weight is zero and
the score is 0.
"""

import re

import jiwer
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from multimodal_s2s.errors import InputError

_NON_WORD = re.compile(r"[^\w\s'-]")
_ALIGNMENT_HEADER = re.compile(r"^=== SENTENCE \d+ ===\n\n")


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Corpus-level word error rate: (S + D + I) / reference words, over all utterances."""
    _check_pairs(refs, hyps)
    return float(jiwer.wer(refs, hyps))


def closest_reference_wer(refs: list[list[str]], hyps: list[str]) -> float:
    """Corpus word error rate against each item's closest reference: the total edits of each
    hypothesis to its reference with the fewest of them (the first on a tie), over the total
    words of those references. With one reference per item it is ``word_error_rate``."""
    _check_pairs(refs, hyps)
    edits = words = 0
    for item_refs, hyp in zip(refs, hyps, strict=True):
        if isinstance(item_refs, str) or len(item_refs) == 0:
            raise InputError("each item needs a list of one or more references")
        counts = []
        for ref in item_refs:
            output = jiwer.process_words(ref, hyp)
            counts.append((output.substitutions + output.deletions + output.insertions, ref))
        best_edits, best_ref = min(counts, key=lambda count: count[0])
        edits += best_edits
        words += len(best_ref.split())
    return edits / words if words else float(edits > 0)


def char_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Corpus-level character error rate: (S + D + I) / reference characters."""
    _check_pairs(refs, hyps)
    return float(jiwer.cer(refs, hyps))


def wer_alignments(refs: list[str], hyps: list[str]) -> list[dict[str, str | int]]:
    """Per-utterance word alignment, for reading ASR errors.

    Returns:
        One dict per utterance with keys ``ref``, ``hyp``, ``substitutions``, ``deletions``,
        ``insertions``, ``hits`` (word counts) and ``alignment``: three lines ``REF: ...``,
        ``HYP: ...`` and a marker line with S/D/I under each error (asterisks fill the gap
        of a deleted word in HYP and of an inserted word in REF), drawn by
        ``jiwer.visualize_alignment``.
    """
    _check_pairs(refs, hyps)
    return [_align_utterance(ref, hyp) for ref, hyp in zip(refs, hyps, strict=True)]


def _align_utterance(ref: str, hyp: str) -> dict[str, str | int]:
    """Word alignment and error counts of one reference/hypothesis pair."""
    output = jiwer.process_words(ref, hyp)
    drawing = jiwer.visualize_alignment(output, show_measures=False, skip_correct=False)
    lines = [line.rstrip() for line in _ALIGNMENT_HEADER.sub("", drawing).split("\n")]
    return {
        "ref": ref,
        "hyp": hyp,
        "substitutions": output.substitutions,
        "deletions": output.deletions,
        "insertions": output.insertions,
        "hits": output.hits,
        "alignment": "\n".join(lines).rstrip("\n"),
    }


def bleu4(refs: list[list[str]], hyps: list[str]) -> float:
    """Corpus BLEU-4 as the COCO caption evaluation computes it.

    Args:
        refs: for each item, one or more reference captions.
        hyps: one generated caption per item.

    Returns:
        BLEU-4 in [0, 1] (geometric mean of 1- to 4-gram precisions times brevity penalty).
    """
    references, hypotheses = _coco_inputs(refs, hyps)
    scores, _ = Bleu(4).compute_score(references, hypotheses, verbose=0)
    return float(scores[3])


def cider_d(refs: list[list[str]], hyps: list[str]) -> float:
    """Corpus CIDEr-D as the COCO caption evaluation computes it (x10 scale; 0 for one item).

    Args:
        refs: for each item, one or more reference captions.
        hyps: one generated caption per item.

    Returns:
        The mean over items of the CIDEr-D score, where identical captions of 4+ words score 10.
    """
    references, hypotheses = _coco_inputs(refs, hyps)
    score, _ = Cider().compute_score(references, hypotheses)
    return float(score)


def tokenize_caption(text: str) -> str:
    """Lowercase ``text``, drop punctuation and join its words with single spaces."""
    words = _NON_WORD.sub(" ", text.lower()).split()
    return " ".join(word for word in words if any(char.isalnum() for char in word))


def _coco_inputs(
    refs: list[list[str]], hyps: list[str]
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """Tokenised ``{item: [captions]}`` dicts in the form the pycocoevalcap scorers take."""
    _check_pairs(refs, hyps)
    references = {}
    for index, item_refs in enumerate(refs):
        if isinstance(item_refs, str) or len(item_refs) == 0:
            raise InputError(f"item {index} needs a list of one or more reference captions")
        references[index] = [tokenize_caption(ref) for ref in item_refs]
        if "" in references[index]:
            raise InputError(f"item {index} has a reference caption with no words: {item_refs}")
    hypotheses = {index: [tokenize_caption(hyp)] for index, hyp in enumerate(hyps)}
    return references, hypotheses


def _check_pairs(refs: list, hyps: list) -> None:
    """Raise InputError unless there are as many hypotheses as references, at least one."""
    if len(refs) != len(hyps):
        raise InputError(f"got {len(refs)} references but {len(hyps)} hypotheses")
    if len(refs) == 0:
        raise InputError("no references and hypotheses to score")
