"""Tests for WER/CER, per-utterance alignments, BLEU-4 and CIDEr-D, with hand-computed values."""

import math

import pytest

from multimodal_s2s.errors import InputError
from multimodal_s2s.metrics import (
    bleu4,
    char_error_rate,
    cider_d,
    tokenize_caption,
    wer_alignments,
    word_error_rate,
)

# One substitution (cat->bat), one deletion (on), one insertion (here) over 6 reference words.
REF = "the cat sat on the mat"
HYP = "the bat sat the mat here"


def test_word_error_rate_of_one_utterance_is_exact():
    assert word_error_rate([REF], [HYP]) == pytest.approx(3 / 6, abs=1e-12)


def test_word_error_rate_is_corpus_level_not_mean_of_utterances():
    # errors 3 + 2 over 6 + 2 reference words; a mean of rates would be (0.5 + 1.0) / 2
    assert word_error_rate([REF, "a b"], [HYP, ""]) == pytest.approx(5 / 8, abs=1e-12)


def test_char_error_rate_counts_spaces_and_pools_utterances():
    assert char_error_rate(["ab cd", "xyz"], ["ab ce", "xyz"]) == pytest.approx(1 / 8, abs=1e-12)


def test_perfect_transcripts_have_zero_error():
    assert word_error_rate([REF], [REF]) == 0.0
    assert char_error_rate([REF], [REF]) == 0.0


def test_wer_alignments_counts_and_draws_each_utterance():
    first, second = wer_alignments([REF, "a b"], [HYP, "a b"])
    assert first["ref"] == REF and first["hyp"] == HYP
    counts = {key: first[key] for key in ("substitutions", "deletions", "insertions", "hits")}
    assert counts == {"substitutions": 1, "deletions": 1, "insertions": 1, "hits": 4}
    assert first["alignment"] == (
        "REF: the cat sat on the mat ****\n"
        "HYP: the bat sat ** the mat here\n"
        "           S      D            I"
    )
    assert (second["substitutions"], second["deletions"], second["insertions"]) == (0, 0, 0)
    assert second["hits"] == 2
    assert second["alignment"] == "REF: a b\nHYP: a b"


def test_wer_alignments_of_empty_hypothesis_are_all_deletions():
    (alignment,) = wer_alignments(["one two"], [""])
    assert (alignment["deletions"], alignment["hits"]) == (2, 0)
    assert alignment["alignment"] == "REF: one two\nHYP: *** ***\n       D   D"


@pytest.mark.parametrize("metric", [word_error_rate, char_error_rate, wer_alignments])
def test_asr_metrics_reject_mismatched_or_empty_lists(metric):
    with pytest.raises(InputError, match="2 references but 1 hypotheses"):
        metric(["a", "b"], ["a"])
    with pytest.raises(InputError, match="no references"):
        metric([], [])


def test_bleu4_of_identical_captions_is_one():
    assert bleu4([["a man rides a red horse"]], ["a man rides a red horse"]) == pytest.approx(
        1.0, abs=1e-6
    )


def test_bleu4_hand_computed_precisions():
    # n-gram precisions 4/5, 3/4, 2/3, 1/2; equal lengths, so no brevity penalty
    expected = (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert bleu4([["a b c d f"]], ["a b c d e"]) == pytest.approx(expected, rel=1e-6)


def test_bleu4_brevity_penalty_uses_closest_reference_length():
    # all precisions 1; hypothesis 4 words, closest reference 5 words: exp(1 - 5/4)
    refs = [["a b c d e f g h", "a b c d e"]]
    assert bleu4(refs, ["a b c d"]) == pytest.approx(math.exp(-0.25), rel=1e-6)


def test_bleu4_pools_ngram_counts_over_the_corpus():
    expected = (9 / 10 * 7 / 8 * 5 / 6 * 3 / 4) ** 0.25
    score = bleu4([["a b c d f"], ["p q r s t"]], ["a b c d e", "p q r s t"])
    assert score == pytest.approx(expected, rel=1e-6)


def test_bleu4_without_matching_four_grams_is_near_zero():
    assert bleu4([["a b c d e"]], ["e d c b a"]) < 1e-6


def test_captions_are_lowercased_and_stripped_of_punctuation():
    assert tokenize_caption('A Dog\'s T-shirt, -- is RED!  "Big".') == "a dog's t-shirt is red big"
    assert bleu4([["A red circle."]], ["a red circle"]) == pytest.approx(
        bleu4([["a red circle"]], ["a red circle"]), abs=1e-12
    )


def test_cider_d_identical_captions_score_ten():
    refs = [["a b c d"], ["e f g h"]]
    assert cider_d(refs, ["a b c d", "e f g h"]) == pytest.approx(10.0, rel=1e-9)


def test_cider_d_averages_over_references():
    # item 1 matches one of its two references: (1 + 0) / 2 * 10 = 5; item 2 scores 10
    refs = [["a b c d", "w x y z"], ["e f g h"]]
    assert cider_d(refs, ["a b c d", "e f g h"]) == pytest.approx(7.5, rel=1e-9)


def test_cider_d_gaussian_length_penalty():
    # every n-gram has document frequency <= 1, so all tf-idf weights are equal and each
    # n-gram similarity is a count cosine; the hypothesis has 2 more words (sigma = 6)
    cosines = [4 / math.sqrt(6 * 4), 3 / math.sqrt(5 * 3), 2 / math.sqrt(4 * 2), 1 / math.sqrt(3)]
    first = 10 * sum(cosines) / 4 * math.exp(-(2**2) / (2 * 6**2))
    score = cider_d([["a b c d"], ["w x y z"]], ["a b c d e f", "w x y z"])
    assert score == pytest.approx((first + 10) / 2, rel=1e-9)


def test_cider_d_clips_repeated_ngrams():
    # unigram: min(4, 1) * 1 / (4 * 2) = 1/8 (plain CIDEr would give 4/8); no shared n>1-grams
    score = cider_d([["a b c d"], ["w x y z"]], ["a a a a", "w x y z"])
    assert score == pytest.approx((10 * (1 / 8) / 4 + 10) / 2, rel=1e-9)


def test_cider_d_of_a_single_item_is_zero():
    assert cider_d([["a b c d"]], ["a b c d"]) == 0.0


@pytest.mark.parametrize("metric", [bleu4, cider_d])
def test_caption_metrics_reject_bad_references(metric):
    with pytest.raises(InputError, match="1 references but 2 hypotheses"):
        metric([["a b"]], ["a b", "c"])
    with pytest.raises(InputError, match="item 1 needs a list"):
        metric([["a b"], []], ["a b", "c"])
    with pytest.raises(InputError, match="item 0 needs a list"):
        metric(["a b"], ["a b"])
    with pytest.raises(InputError, match="item 0 has a reference caption with no words"):
        metric([["?!"]], ["a b"])
