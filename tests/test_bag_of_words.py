import dataclasses
import math

import pytest
import torch
from conftest import DECODER, IMAGES, SMALL, SOURCE_SHAPES, VOCAB, one_training_batch, tiny_model

from multimodal_s2s.config import load_config
from multimodal_s2s.errors import InputError
from multimodal_s2s.models.bag_of_words import bag_of_words_loss
from multimodal_s2s.models.encoders.base import EncoderOutput
from multimodal_s2s.models.loss import token_loss
from multimodal_s2s.search.beam import Hypothesis, beam_search
from multimodal_s2s.search.decode import decode_batch
from multimodal_s2s.search.rerank import rerank_with_bag_of_words
from multimodal_s2s.text import EOS_ID, PAD_ID, Tokenizer

BAG = ["loss.bag_of_words_weight=0.5"]


def test_loss_counts_each_present_token_once_and_skips_special_tokens():
    logits = torch.randn(2, VOCAB, dtype=torch.float64)
    targets = torch.tensor([[5, 7, 5, EOS_ID], [4, EOS_ID, PAD_ID, PAD_ID]])
    expected = 0.0
    for row, present in enumerate([{5, 7}, {4}]):
        for token in range(4, VOCAB):  # 0..3 are PAD, BOS, EOS, UNK
            p = torch.sigmoid(logits[row, token]).item()
            expected -= math.log(p) if token in present else math.log(1 - p)
    assert bag_of_words_loss(logits, targets).item() == pytest.approx(expected, rel=1e-12)


def test_head_takes_the_best_valid_position():
    model, _ = tiny_model(SOURCE_SHAPES["pblstm"] + DECODER + BAG)
    memory = torch.randn(2, 5, model.encoder.output_dim)
    lengths = torch.tensor([5, 3])
    logits = model.bag_of_words(EncoderOutput(memory, lengths))
    per_position = model.bag_of_words.projection(memory)
    torch.testing.assert_close(logits[0], per_position[0].amax(0))
    torch.testing.assert_close(logits[1], per_position[1, :3].amax(0))
    memory[1, 3:] = 1e6  # padding cannot win
    torch.testing.assert_close(model.bag_of_words(EncoderOutput(memory, lengths)), logits)


def test_no_head_without_a_weight_and_the_head_is_built_last():
    model, _ = tiny_model(SOURCE_SHAPES["cnn"] + DECODER)
    assert model.bag_of_words is None
    with_head, _ = tiny_model(SOURCE_SHAPES["cnn"] + DECODER + BAG)
    assert with_head.bag_of_words.projection.out_features == VOCAB
    for key, value in model.state_dict().items():
        torch.testing.assert_close(with_head.state_dict()[key], value, rtol=0, atol=0)


def test_train_step_adds_the_weighted_bag_of_words_loss(tmp_path):
    run, batch, targets, outputs = one_training_batch(IMAGES + SMALL + BAG, tmp_path)
    log_probs, weights, encoded = outputs
    with torch.no_grad():
        attention = token_loss(log_probs, targets)
        penalty = ((1 - weights.masked_fill((targets == PAD_ID).unsqueeze(2), 0).sum(1)) ** 2).sum()
        presence = bag_of_words_loss(run.model.bag_of_words(encoded), targets)
        expected = (attention + 0.1 * penalty + 0.5 * presence) / int((targets != PAD_ID).sum())
    head = run.model.bag_of_words.projection.weight.detach().clone()
    assert run._train_step(run.model, batch)[0] == pytest.approx(float(expected), rel=1e-5)
    assert not torch.equal(head, run.model.bag_of_words.projection.weight)


@pytest.mark.parametrize("section", ["loss", "search"])
def test_negative_weight_is_named(section):
    with pytest.raises(InputError, match=f"{section}.bag_of_words_weight must be >= 0, got -1.0"):
        load_config(None, [f"{section}.bag_of_words_weight=-1"])


def _hypothesis(tokens: list[int], score: float) -> Hypothesis:
    return Hypothesis(tokens, score, score * (len(tokens) + 1), torch.zeros(0), True)


def test_rerank_adds_the_log_odds_of_each_distinct_named_token():
    logits = torch.zeros(1, VOCAB)
    logits[0, 5], logits[0, 6], logits[0, 7], logits[0, EOS_ID] = 4.0, -3.0, 1.0, 9.0
    nbest = [_hypothesis([6, 4], -0.1), _hypothesis([5, 5], -0.5), _hypothesis([5, 7], -0.6)]
    (reranked,) = rerank_with_bag_of_words(logits, [nbest], 0.5)
    assert [h.tokens for h in reranked] == [[5, 7], [5, 5], [6, 4]]
    assert [h.score for h in reranked] == pytest.approx([-0.6 + 2.5, -0.5 + 2.0, -0.1 - 1.5])
    assert [h.log_prob for h in reranked] == [h.log_prob for h in (nbest[2], nbest[1], nbest[0])]
    (unchanged,) = rerank_with_bag_of_words(logits, [nbest], 0.0)
    assert unchanged == nbest


def test_decoding_with_the_bag_of_words_weight_reranks_the_whole_beam():
    model, config = tiny_model(SOURCE_SHAPES["cnn"] + DECODER + BAG + ["search.beam_size=4"])
    model.bag_of_words.projection.bias.data[VOCAB - 1] -= 10.0  # sure the last is absent
    tokenizer = Tokenizer.build(["a b c d e f g h"], "word")
    images = torch.randn(3, 3, 16, 16)
    search = dataclasses.replace(config.search, bag_of_words_weight=0.5)
    decoded = decode_batch(model, tokenizer, images, None, search)
    encoded = model.encode(images)
    whole = beam_search(model, encoded, dataclasses.replace(config.search, nbest=4))
    expected = rerank_with_bag_of_words(model.bag_of_words(encoded), whole, 0.5)
    assert [d.hypothesis.tokens for d in decoded] == [n[0].tokens for n in expected]
    assert [d.score for d in decoded] == [n[0].score for n in expected]
    assert any(n[0].tokens != w[0].tokens for n, w in zip(expected, whole, strict=True))
    with pytest.raises(InputError, match="search.bag_of_words_weight needs a model trained"):
        plain, _ = tiny_model(SOURCE_SHAPES["cnn"] + DECODER)
        decode_batch(plain, tokenizer, images, None, search)
