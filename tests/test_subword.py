"""Subword units (``tokenizer.kind: unigram | bpe``): sentencepiece models trained on the
training text, stored inside the checkpoint."""

import json

import pytest
import soundfile
import torch
from conftest import SEQUENCES, SMALL

from multimodal_s2s.checkpoint import load_model, resume_points, save_checkpoint
from multimodal_s2s.cli import main
from multimodal_s2s.config import ConfigError, config_from_dict, load_config
from multimodal_s2s.data.sources import build_source
from multimodal_s2s.data.toy import ToySequences
from multimodal_s2s.errors import InputError
from multimodal_s2s.text import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID, Tokenizer
from multimodal_s2s.training.evaluate import evaluate_model
from multimodal_s2s.training.train import Trainer, train

TEXTS = [
    "press one for billing",
    "press two for technical support",
    "to hear these options again press nine",
    "say yes or no",
    "for billing say billing",
    "thank you for calling",
] * 3
KINDS = ["unigram", "bpe"]


@pytest.mark.parametrize("kind", KINDS)
def test_subwords_round_trip_text(kind):
    tokenizer = Tokenizer.build(TEXTS, kind, vocab_size=40)
    assert len(tokenizer) == 40 and tokenizer.tokens[:4] == list(SPECIAL_TOKENS)
    for text in TEXTS[:6] + ["press one  for billing ", " say nine", "options"]:
        ids = tokenizer.encode(text)
        assert all(len(SPECIAL_TOKENS) <= i < len(tokenizer) for i in ids)
        assert tokenizer.decode(ids) == text
    fewer = tokenizer.encode("press two for technical support")
    assert len(fewer) < len("press two for technical support")  # pieces, not characters


@pytest.mark.parametrize("kind", KINDS)
def test_special_ids_stay_fixed_and_unknown_characters_are_unk(kind):
    tokenizer = Tokenizer.build(TEXTS, kind, vocab_size=40)
    ids = tokenizer.encode("press q")
    assert ids[-1] == UNK_ID and tokenizer.decode(ids) == "press <unk>"
    body = tokenizer.encode("say yes")
    assert tokenizer.decode([BOS_ID, *body, EOS_ID, *body]) == "say yes"
    assert tokenizer.decode([*body, PAD_ID, PAD_ID]) == "say yes"
    assert tokenizer.unknown_units(["press q", "zz top"]) == ["q", "z"]
    assert tokenizer.unknown_units(TEXTS) == []


@pytest.mark.parametrize("kind", KINDS)
def test_training_twice_gives_the_same_model(kind):
    first = Tokenizer.build(TEXTS, kind, vocab_size=40)
    second = Tokenizer.build(list(TEXTS), kind, vocab_size=40)
    assert first.tokens == second.tokens
    assert first.state_dict() == second.state_dict()  # the serialized model too
    other = Tokenizer.build(TEXTS + ["a wholly new sentence"], kind, vocab_size=40)
    assert other.tokens != first.tokens


@pytest.mark.parametrize("kind", KINDS)
def test_the_model_survives_a_safe_checkpoint_load(tmp_path, kind):
    tokenizer = Tokenizer.build(TEXTS, kind, vocab_size=40)
    save_checkpoint({"tokenizer": tokenizer.state_dict()}, tmp_path / "t.pt")
    state = torch.load(tmp_path / "t.pt", weights_only=True)["tokenizer"]
    assert isinstance(state["model"], bytes) and state["kind"] == kind
    restored = Tokenizer.from_state_dict(state)
    assert restored.tokens == tokenizer.tokens
    for text in TEXTS[:6]:
        assert restored.encode(text) == tokenizer.encode(text)
        assert restored.decode(tokenizer.encode(text)) == text


def test_char_and_word_state_dicts_are_unchanged():
    assert Tokenizer.build(["ab"], "char").state_dict() == {
        "kind": "char",
        "tokens": [*SPECIAL_TOKENS, "a", "b"],
    }


def test_a_model_whose_pieces_differ_from_the_tokens_is_refused():
    state = Tokenizer.build(TEXTS, "bpe", vocab_size=40).state_dict()
    with pytest.raises(ValueError, match="pieces are not the tokens"):
        Tokenizer.from_state_dict({**state, "tokens": state["tokens"][:-1]})
    with pytest.raises(ValueError, match="needs model"):
        Tokenizer("bpe", state["tokens"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tokenizer.kind=sentencepiece", r"^tokenizer\.kind: expected one of .*'bpe'"),
        ("tokenizer.vocab_size=4", r"^tokenizer\.vocab_size must be > 4"),
        ("tokenizer.vocab_size=many", r"^tokenizer\.vocab_size: expected int"),
        ("tokenizer.min_count=0", r"^tokenizer\.min_count must be >= 1"),
    ],
)
def test_bad_tokenizer_settings_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(None, [override])
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("vocab_size", "message"),
    [
        (5000, r"^tokenizer\.vocab_size=5000 is too large for the training text: it gives at "),
        (8, r"^tokenizer\.vocab_size=8 is too small for the training text: .* at least \d+$"),
    ],
)
def test_a_vocab_size_the_text_cannot_give_is_a_one_line_error(kind, vocab_size, message):
    with pytest.raises(InputError, match=message) as caught:
        Tokenizer.build(TEXTS, kind, vocab_size=vocab_size)
    assert "\n" not in str(caught.value) and "src/" not in str(caught.value)


def test_no_training_text_is_a_one_line_error():
    with pytest.raises(InputError, match="tokenizer.kind=bpe: the training split has no text"):
        Tokenizer.build(["", " "], "bpe", vocab_size=20)


# Digit words: 4 specials, 15 letters and the word mark need 20 pieces; 28 learns the words.
BPE = SEQUENCES + SMALL + ["tokenizer.kind=bpe", "tokenizer.vocab_size=28"]


def test_a_bpe_run_trains_saves_its_model_and_resumes_with_it(tmp_path, monkeypatch):
    overrides = BPE + ["data.num_train=16", "data.num_dev=2", "train.epochs=1"]
    result = train(load_config(None, overrides), tmp_path / "a", progress=False)
    model, tokenizer, saved = load_model(result.best_checkpoint)
    texts = build_source(saved.data).texts("train")
    assert tokenizer.kind == "bpe" and len(tokenizer) == 28
    assert tokenizer.state_dict() == Tokenizer.build(texts, "bpe", vocab_size=28).state_dict()
    assert model.generator.projection.out_features == 28
    resumed = Trainer(load_config(None, overrides), tmp_path / "a", progress=False, resume=True)
    assert resumed.tokenizer.state_dict() == tokenizer.state_dict()

    original_texts = ToySequences.texts
    monkeypatch.setattr(
        ToySequences, "texts", lambda self, split: original_texts(self, split) + ["q"]
    )
    with pytest.raises(InputError, match="vocabulary differs .*new in the data"):
        Trainer(load_config(None, overrides), tmp_path / "a", progress=False, resume=True)


def test_init_from_a_bpe_run_keeps_its_model_and_trains_none(tmp_path, monkeypatch):
    overrides = BPE + ["data.num_train=16", "data.num_dev=2", "train.epochs=1"]
    first = train(load_config(None, overrides), tmp_path / "a", progress=False)
    _, start_tokenizer, _ = load_model(first.best_checkpoint)
    # Two training sentences could not give 28 pieces: the run must not try.
    init = [f"train.init_from={first.best_checkpoint}", "data.num_train=2", "data.seed=3"]
    run = Trainer(load_config(None, overrides + init), tmp_path / "b", False, resume=False)
    assert run.tokenizer.state_dict() == start_tokenizer.state_dict()
    run._save_resume_point()
    resumed = Trainer(load_config(None, overrides + init), tmp_path / "b", False, resume=True)
    assert resumed.tokenizer.state_dict() == start_tokenizer.state_dict()

    original_texts = ToySequences.texts
    monkeypatch.setattr(
        ToySequences, "texts", lambda self, split: original_texts(self, split) + ["q"]
    )
    with pytest.raises(InputError, match=r"holds 1 units its vocabulary lacks \('q'\)"):
        Trainer(load_config(None, overrides + init), tmp_path / "c", False, resume=False)


@pytest.mark.parametrize("ctc", [[], ["loss.ctc_weight=0.3", "search.ctc_weight=0.3"]])
def test_a_tiny_bpe_model_overfits_eight_pairs(tmp_path, ctc):
    overrides = BPE + ctc + ["data.num_train=8", "data.num_dev=2", "train.epochs=80"]
    train(load_config(None, overrides), tmp_path, progress=False)
    model, tokenizer, saved = load_model(resume_points(tmp_path)[0])
    data = build_source(saved.data)
    scores = evaluate_model(model, tokenizer, data, "train", saved, "cpu")
    assert scores.metrics["wer"] == 0.0 and scores.metrics["items"] == 8
    assert all(r["ref"] == r["hyp"] for r in scores.records)


def test_transcribe_decodes_with_the_checkpoints_subword_model(tmp_path):
    """A unigram speech model: ``ms2s transcribe`` (the checkpoint alone) gives the texts that
    ``evaluate`` decodes from the same recordings."""
    texts = ["yes", "no", "yes no", "no yes", "yes yes no"]
    records = []
    for index, text in enumerate(texts):
        samples = torch.arange(4000 + 1000 * index) / 16000
        wave = 0.3 * torch.sin(2 * torch.pi * (200 + 100 * index) * samples)
        soundfile.write(tmp_path / f"utt{index}.wav", wave.numpy(), 16000, subtype="FLOAT")
        records.append({"audio": str(tmp_path / f"utt{index}.wav"), "text": text})
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps(record) + "\n" for record in records))
    config = config_from_dict(
        {
            "encoder": {"name": "pblstm", "hidden_dim": 16, "num_layers": 1},
            "decoder": {"hidden_dim": 32, "embedding_dim": 16},
            "tokenizer": {"kind": "unigram", "vocab_size": 12},
            "search": {"max_length": 12, "beam_size": 2},
            "train": {"epochs": 1, "batch_size": 2, "device": "cpu", "warmup_steps": 1},
            "data": {"name": "speech", "train": str(manifest), "dev": str(manifest)},
        }
    )
    result = train(config, tmp_path / "run", progress=False)
    model, tokenizer, saved = load_model(result.best_checkpoint)
    assert tokenizer.kind == "unigram" and len(tokenizer) == 12
    evaluation = evaluate_model(model, tokenizer, build_source(saved.data), "dev", saved, "cpu")
    output = tmp_path / "hyps.jsonl"
    argv = ["transcribe", "--model", str(result.best_checkpoint), *(r["audio"] for r in records)]
    assert main([*argv, "--output", str(output), "--device", "cpu"]) == 0
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["text"] for line in lines] == [r["hyp"] for r in evaluation.records]


def test_tokenizer_text_builds_the_subword_model_from_that_file(tmp_path):
    # The toy corpus' sentences plus text the training data never holds: the pieces come
    # from the file, so they differ from a model trained on the training text alone.
    overrides = BPE + ["data.num_train=16", "data.num_dev=2", "train.epochs=1"]
    own = Trainer(load_config(None, overrides), tmp_path / "a", False, resume=False)
    toy_texts = own.data.texts("train")
    text = tmp_path / "sentences.txt"
    text.write_text("\n".join(toy_texts + TEXTS) + "\n", encoding="utf-8")
    run = Trainer(
        load_config(None, overrides + [f"tokenizer.text={text}"]), tmp_path / "b", False, False
    )
    assert run.tokenizer.model == Tokenizer.build(toy_texts + TEXTS, "bpe", 1, 28).model
    assert run.tokenizer.model != own.tokenizer.model


def test_tokenizer_text_missing_or_lacking_units_is_a_one_line_error(tmp_path):
    overrides = BPE + ["data.num_train=16", "data.num_dev=2"]
    missing = tmp_path / "missing.txt"
    with pytest.raises(InputError, match=f"tokenizer.text {missing}: cannot read it"):
        Trainer(
            load_config(None, overrides + [f"tokenizer.text={missing}"]), tmp_path, False, False
        )
    narrow = tmp_path / "narrow.txt"
    narrow.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    char = ["tokenizer.kind=char", f"tokenizer.text={narrow}", "data.num_train=16"]
    with pytest.raises(InputError, match=r"tokenizer.text .*narrow.txt: the training text holds"):
        Trainer(load_config(None, char), tmp_path / "c", False, False)
