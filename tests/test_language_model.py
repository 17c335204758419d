"""The LSTM language model (``ms2s train-lm``) and its shallow fusion in beam search."""

import dataclasses
import json
import math

import pytest
import torch
from conftest import DECODER, SOURCE_SHAPES, VOCAB, tiny_model

from multimodal_s2s.cli import main
from multimodal_s2s.config import load_config
from multimodal_s2s.errors import InputError
from multimodal_s2s.models.ctc import BLANK_ID, CTCPrefixScorer, ctc_loss
from multimodal_s2s.models.language_model import LanguageModelConfig, LSTMLanguageModel
from multimodal_s2s.models.loss import token_loss
from multimodal_s2s.search import fusion
from multimodal_s2s.search.beam import SearchConfig, beam_search
from multimodal_s2s.search.decode import decode_batch
from multimodal_s2s.search.fusion import (
    LanguageModelScorer,
    ScorerChain,
    language_model_from_payload,
    read_language_model_file,
)
from multimodal_s2s.text import EOS_ID, Tokenizer, teacher_forcing_pair
from multimodal_s2s.training.language_model import (
    LanguageModelRunConfig,
    save_language_model,
    train_language_model,
)

TOKENIZER = Tokenizer.build(["abcdefgh"], "char")  # 12 tokens: the tiny models' VOCAB
TINY_LM = ["model.embedding_dim=8", "model.hidden_dim=16", "model.num_layers=2"]
SENTENCES = ["press one for sales", "press two for support", "please hold the line"]


def _random_lm(path, tokenizer=TOKENIZER, seed=1):
    """A random LM saved at ``path``, sharpened so that its scores change the search."""
    torch.manual_seed(seed)
    config = load_config(None, TINY_LM, LanguageModelRunConfig)
    model = LSTMLanguageModel(config.model, len(tokenizer))
    with torch.no_grad():
        model.output.weight.mul_(8.0)
    save_language_model(path, config, tokenizer, model.eval())
    return model.eval()


def _joint_model():
    """A tiny speech model with a CTC head (mostly blank: hypotheses end early)."""
    overrides = SOURCE_SHAPES["pblstm"] + DECODER + ["loss.ctc_weight=0.3", "encoder.ctc_layer=0"]
    model, _ = tiny_model(overrides)
    with torch.no_grad():
        model.ctc.projection.bias[BLANK_ID] += 4.0
        model.generator.projection.weight.mul_(4.0)
        model.generator.projection.bias[EOS_ID] -= 0.5
    assert len(TOKENIZER) == VOCAB
    return model


@torch.no_grad()
def _lm_log_prob(lm: LSTMLanguageModel, tokens: list[int]) -> float:
    inputs, targets = teacher_forcing_pair([tokens])
    return -float(token_loss(lm(inputs), targets))


def _rescored(model, lm, features, length, tokens, finished, ctc_weight, lm_weight, bonus):
    """attention (+ CTC) + lm_weight x LM + bonus x emitted tokens, each model re-scoring the
    hypothesis by teacher forcing (EOS scored and counted when ``finished``)."""
    inputs, targets = teacher_forcing_pair([tokens])
    if not finished:
        inputs, targets = inputs[:, :-1], targets[:, :-1]
    log_probs, _, encoded = model(features, length, inputs)
    attention = -float(token_loss(log_probs, targets))
    fused = attention
    if ctc_weight:
        ctc = -float(ctc_loss(*model.ctc_log_probs(encoded), targets, False)[0])
        fused = (1 - ctc_weight) * attention + ctc_weight * ctc
    lm_inputs, lm_targets = teacher_forcing_pair([tokens])
    if not finished:
        lm_inputs, lm_targets = lm_inputs[:, :-1], lm_targets[:, :-1]
    lm_score = -float(token_loss(lm(lm_inputs), lm_targets))
    return fused + lm_weight * lm_score + bonus * targets.size(1)


def _fused_search(tmp_path, ctc_weight: float, **settings) -> SearchConfig:
    """Beam 4 ranked by the total fused score, fusing ``tmp_path / "lm.pt"``."""
    lm = str(tmp_path / "lm.pt")
    return SearchConfig(
        beam_size=4,
        length_norm="none",
        max_length_ratio=1.0,
        ctc_weight=ctc_weight,
        lm=lm,
        **settings,
    )


@pytest.mark.parametrize("ctc_weight", [0.0, 0.3])
def test_fused_scores_are_attention_ctc_weighted_lm_and_length_bonus(tmp_path, ctc_weight):
    model = _joint_model()
    lm = _random_lm(tmp_path / "lm.pt")
    features, lengths = torch.randn(3, 30, 6), torch.tensor([30, 22, 14])
    search = _fused_search(tmp_path, ctc_weight, nbest=4, lm_weight=0.7, length_bonus=0.4)
    with torch.no_grad():
        encoded = model.encode(features, lengths)
        scorers = [LanguageModelScorer(lm, 3 * search.beam_size, search.lm_weight)]
        if ctc_weight:
            ctc = CTCPrefixScorer(*model.ctc_log_probs(encoded), search.beam_size, ctc_weight)
            scorers.insert(0, ctc)
        nbests = beam_search(model, encoded, search, ScorerChain(scorers))
        best = decode_batch(model, TOKENIZER, features, lengths, search)
    assert sum(h.finished for nbest in nbests for h in nbest) >= 3
    assert ctc_weight or not all(h.finished for nbest in nbests for h in nbest)
    assert [d.hypothesis.tokens for d in best] == [nbest[0].tokens for nbest in nbests]
    for source, nbest in enumerate(nbests):
        one = features[source : source + 1, : lengths[source]]
        for hypothesis in nbest:
            if ctc_weight and not hypothesis.finished:
                continue  # CTC scores an unfinished prefix by its prefix probability
            with torch.no_grad():
                expected = _rescored(
                    model,
                    lm,
                    one,
                    lengths[[source]],
                    hypothesis.tokens,
                    hypothesis.finished,
                    ctc_weight,
                    0.7,
                    0.4,
                )
            assert hypothesis.log_prob == pytest.approx(expected, abs=1e-4)
            assert hypothesis.score == pytest.approx(expected, abs=1e-4)
        assert best[source].score == pytest.approx(nbest[0].score, abs=1e-5)


@pytest.mark.parametrize("ctc_weight", [0.0, 0.3])
def test_fused_decoding_of_a_batch_equals_one_source_at_a_time(tmp_path, ctc_weight):
    model = _joint_model()
    _random_lm(tmp_path / "lm.pt")
    lengths = torch.tensor([30, 17, 26, 9, 22])
    features = torch.randn(5, 30, 6)
    search = _fused_search(tmp_path, ctc_weight, lm_weight=0.5, length_bonus=0.3)
    with torch.no_grad():
        together = decode_batch(model, TOKENIZER, features, lengths, search)
        for source, decoded in enumerate(together):
            one = features[source : source + 1, : lengths[source]]
            alone = decode_batch(model, TOKENIZER, one, lengths[[source]], search)[0]
            assert alone.hypothesis.tokens == decoded.hypothesis.tokens
            assert alone.score == pytest.approx(decoded.score, abs=1e-5)
    assert len({d.text for d in together}) > 1


@pytest.mark.parametrize("ctc_weight", [0.0, 0.3])
def test_lm_weight_and_length_bonus_zero_give_exactly_the_search_without_them(tmp_path, ctc_weight):
    model = _joint_model()
    lm = _random_lm(tmp_path / "lm.pt")
    features, lengths = torch.randn(3, 30, 6), torch.tensor([30, 22, 14])
    plain = SearchConfig(beam_size=4, nbest=4, max_length_ratio=1.0, ctc_weight=ctc_weight)
    fused = dataclasses.replace(plain, lm=str(tmp_path / "lm.pt"), lm_weight=0.0)
    with torch.no_grad():
        encoded = model.encode(features, lengths)

        def nbests(extra):
            scorers = list(extra)
            if ctc_weight:
                ctc = CTCPrefixScorer(*model.ctc_log_probs(encoded), 4, ctc_weight)
                scorers.insert(0, ctc)
            scorer = ScorerChain(scorers) if scorers else None
            return [
                [(h.tokens, h.score, h.log_prob) for h in n]
                for n in beam_search(model, encoded, plain, scorer)
            ]

        assert nbests([LanguageModelScorer(lm, 12, 0.0)]) == nbests([])
        old = decode_batch(model, TOKENIZER, features, lengths, plain)
        new = decode_batch(model, TOKENIZER, features, lengths, fused)
        weighted = decode_batch(model, TOKENIZER, features, lengths, replace_weight(fused))
    assert [(d.text, d.score) for d in new] == [(d.text, d.score) for d in old]
    assert [d.score for d in weighted] != [d.score for d in old]  # the LM is read and used


def replace_weight(search: SearchConfig) -> SearchConfig:
    return dataclasses.replace(search, lm_weight=0.5)


def test_a_tiny_lm_overfits_a_tiny_text(tmp_path):
    (tmp_path / "text.txt").write_text("\n".join(SENTENCES) + "\n\n")
    overrides = TINY_LM + [
        "model.hidden_dim=64",
        "model.dropout=0.0",
        f"data.train={tmp_path / 'text.txt'}",
        f"data.dev={tmp_path / 'text.txt'}",
        "train.epochs=60",
        "train.learning_rate=0.02",
        "train.device=cpu",
    ]
    config = load_config(None, overrides, LanguageModelRunConfig)
    result = train_language_model(config, tmp_path / "run", progress=False)
    assert result.checkpoint == tmp_path / "run" / "lm.pt"
    assert result.dev_perplexity < 1.15
    payload = torch.load(result.checkpoint, weights_only=True)
    lm, tokenizer, lm_config = language_model_from_payload(payload)
    assert lm_config == LanguageModelConfig(8, 64, 2, 0.0)
    assert tokenizer.tokens[4:] == sorted(set("".join(SENTENCES)))
    lm.eval()
    for sentence in SENTENCES:  # each sentence: about log(3) nats to pick it, then certainty
        assert _lm_log_prob(lm, tokenizer.encode(sentence)) > -math.log(3) - 0.5
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["epoch"] for r in records] == list(range(1, 61))
    assert (tmp_path / "run" / "best.pt").is_file()


def test_train_lm_reads_manifests_and_resume_continues_to_the_same_weights(tmp_path, capsys):
    manifest = tmp_path / "train.jsonl"
    manifest.write_text(
        "".join(json.dumps({"audio": "x.wav", "text": s}) + "\n" for s in SENTENCES)
    )
    config = tmp_path / "lm.yaml"
    config.write_text("model: {embedding_dim: 8, hidden_dim: 16, num_layers: 1}\n")
    common = [str(config), f"data.train={manifest}", "train.batch_size=2", "train.device=cpu"]
    assert main(["train-lm", *common, "--out", str(tmp_path / "a"), "train.epochs=3"]) == 0
    assert main(["train-lm", *common, "--out", str(tmp_path / "b"), "train.epochs=2"]) == 0
    assert main(["train-lm", *common, "--out", str(tmp_path / "b"), "train.epochs=3"]) == 2
    assert "pass --resume" in capsys.readouterr().err
    resumed = ["train-lm", *common, "--out", str(tmp_path / "b"), "train.epochs=3", "--resume"]
    assert main(resumed) == 0
    assert "resumed from" in capsys.readouterr().out
    straight = read_language_model_file(tmp_path / "a" / "lm.pt")
    continued = read_language_model_file(tmp_path / "b" / "lm.pt")
    assert straight["epoch"] == continued["epoch"] == 3
    for key, value in straight["model"].items():
        assert torch.equal(value, continued["model"][key]), key
    changed = ["train-lm", *common, "--out", str(tmp_path / "b"), "model.hidden_dim=32"]
    assert main([*changed, "--resume"]) == 2
    assert "model.hidden_dim is 16 in the checkpoint and 32 now" in capsys.readouterr().err


def test_vocabulary_from_a_checkpoint_gives_the_lm_that_vocabulary(tmp_path):
    _random_lm(tmp_path / "other.pt", Tokenizer.build(SENTENCES, "word"))
    (tmp_path / "text.txt").write_text("press one\n")
    overrides = TINY_LM + [
        f"data.train={tmp_path / 'text.txt'}",
        f"data.vocabulary_from={tmp_path / 'other.pt'}",
        "train.epochs=1",
        "train.device=cpu",
    ]
    config = load_config(None, overrides, LanguageModelRunConfig)
    result = train_language_model(config, tmp_path / "run", progress=False)
    _, tokenizer, _ = language_model_from_payload(read_language_model_file(result.checkpoint))
    assert tokenizer.state_dict() == Tokenizer.build(SENTENCES, "word").state_dict()


def _one_line_error(run) -> str:
    with pytest.raises(InputError) as caught:
        run()
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_a_mismatched_vocabulary_or_a_missing_lm_is_a_one_line_error(tmp_path, capsys):
    model = _joint_model()
    _random_lm(tmp_path / "words.pt", Tokenizer.build(SENTENCES, "word"))
    features, lengths = torch.randn(1, 14, 6), torch.tensor([14])
    search = SearchConfig(beam_size=2, lm=str(tmp_path / "words.pt"), lm_weight=0.5)
    message = _one_line_error(lambda: decode_batch(model, TOKENIZER, features, lengths, search))
    assert str(tmp_path / "words.pt") in message
    assert "vocabulary of 14 word tokens, the model's has 12 char tokens" in message
    missing = dataclasses.replace(search, lm=str(tmp_path / "none.pt"))
    message = _one_line_error(lambda: decode_batch(model, TOKENIZER, features, lengths, missing))
    assert message == f"search.lm: {tmp_path / 'none.pt'}: language model checkpoint not found"
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    garbage = dataclasses.replace(search, lm=str(tmp_path / "garbage.pt"))
    message = _one_line_error(lambda: decode_batch(model, TOKENIZER, features, lengths, garbage))
    assert "garbage.pt: not a readable checkpoint" in message
    assert "needs search.lm" in _one_line_error(lambda: SearchConfig(lm_weight=0.5))
    assert main(["train-lm", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    (tmp_path / "empty.txt").write_text("\n \n")
    (tmp_path / "lm.yaml").write_text(f"data: {{train: {tmp_path / 'empty.txt'}}}\n")
    assert main(["train-lm", str(tmp_path / "lm.yaml"), "--out", str(tmp_path / "x")]) == 2
    assert (
        capsys.readouterr().err
        == f"error: data.train: {tmp_path / 'empty.txt'} holds no sentence\n"
    )


def test_the_lm_is_read_once_per_decoding_run(tmp_path, monkeypatch):
    model = _joint_model()
    _random_lm(tmp_path / "lm.pt")
    reads = []
    read = fusion.read_language_model_file
    monkeypatch.setattr(fusion, "read_language_model_file", lambda p: reads.append(p) or read(p))
    search = SearchConfig(beam_size=2, lm=str(tmp_path / "lm.pt"), lm_weight=0.5)
    for _ in range(3):
        decode_batch(model, TOKENIZER, torch.randn(2, 14, 6), torch.tensor([14, 9]), search)
    assert len(reads) == 1
