import pytest

from multimodal_s2s.text import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Tokenizer,
    teacher_forcing_pair,
)


def test_char_tokenizer_round_trip_and_unknowns():
    tokenizer = Tokenizer.build(["ab c", "ca"], "char")
    assert tokenizer.tokens[4:] == [" ", "a", "b", "c"]
    ids = tokenizer.encode("cab z")
    assert ids == [7, 5, 6, 4, UNK_ID]
    assert tokenizer.decode([BOS_ID, *ids[:3], EOS_ID, 5]) == "cab"


def test_word_tokenizer_min_count_and_state_dict():
    tokenizer = Tokenizer.build(["a red dog", "a blue dog", "a cat"], "word", min_count=2)
    assert tokenizer.tokens[4:] == ["a", "dog"]
    assert tokenizer.encode("a cat dog") == [4, UNK_ID, 5]
    restored = Tokenizer.from_state_dict(tokenizer.state_dict())
    assert restored.tokens == tokenizer.tokens and restored.kind == "word"
    assert restored.decode([4, 5]) == "a dog"


def test_teacher_forcing_pair_never_feeds_eos():
    inputs, targets = teacher_forcing_pair([[5, 6, 7], [8]])
    assert inputs.tolist() == [[BOS_ID, 5, 6, 7], [BOS_ID, 8, PAD_ID, PAD_ID]]
    assert targets.tolist() == [[5, 6, 7, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID]]
    assert not (inputs == EOS_ID).any()


def test_bad_vocabulary_is_rejected():
    with pytest.raises(ValueError, match="must start with"):
        Tokenizer("char", ["a", "b"])
