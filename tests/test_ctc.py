import dataclasses
import itertools
import math

import pytest
import torch
from conftest import (
    DECODER,
    SEQUENCES,
    SMALL,
    SOURCE_SHAPES,
    VOCAB,
    one_training_batch,
    tiny_model,
)

from multimodal_s2s.checkpoint import load_model, resume_points
from multimodal_s2s.config import ConfigError, load_config
from multimodal_s2s.data.sources import build_source
from multimodal_s2s.errors import InputError
from multimodal_s2s.models.ctc import BLANK_ID, CTCPrefixScorer, ctc_loss
from multimodal_s2s.models.loss import token_loss
from multimodal_s2s.search.beam import beam_search
from multimodal_s2s.search.decode import decode_batch
from multimodal_s2s.text import EOS_ID, PAD_ID, Tokenizer, teacher_forcing_pair
from multimodal_s2s.training.evaluate import evaluate_model
from multimodal_s2s.training.train import train

PBLSTM = SOURCE_SHAPES["pblstm"] + DECODER  # input_dim 6, hidden 8, two pyramid layers
CTC = ["loss.ctc_weight=0.3"]


@pytest.mark.parametrize(
    ("ctc_layer", "output_dim", "frames", "dim"),
    [(0, None, 37, 16), (1, None, 18, 16), (2, 12, 9, 16), (None, None, 9, 16), (None, 12, 9, 12)],
)
def test_ctc_log_probs_follow_the_config(ctc_layer, output_dim, frames, dim):
    overrides = PBLSTM + CTC + [f"encoder.output_dim={'null' if output_dim is None else 12}"]
    if ctc_layer is not None:
        overrides.append(f"encoder.ctc_layer={ctc_layer}")
    model, _ = tiny_model(overrides)
    lengths = torch.tensor([37, 29, 16])
    encoded = model.encode(torch.randn(3, 37, 6), lengths)
    log_probs, ctc_lengths = model.ctc_log_probs(encoded)
    step = 2 ** (2 if ctc_layer is None else ctc_layer)
    assert model.ctc.projection.in_features == dim
    assert log_probs.shape == (3, frames, VOCAB) and log_probs.dtype == torch.float32
    assert ctc_lengths.tolist() == [37 // step, 29 // step, 16 // step]
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, frames))
    assert encoded.memory.shape == (3, 9, output_dim or 16)


def test_ctc_reads_the_memory_of_encoders_without_auxiliary_frames():
    model, _ = tiny_model(SOURCE_SHAPES["cnn"] + DECODER + CTC)
    encoded = model.encode(torch.randn(2, 3, 32, 32))
    assert encoded.auxiliary is None
    log_probs, lengths = model.ctc_log_probs(encoded)
    assert log_probs.shape == (2, 64, VOCAB) and lengths.tolist() == [64, 64]


def test_no_ctc_head_without_a_ctc_weight():
    model, _ = tiny_model(PBLSTM + ["encoder.ctc_layer=1"])
    assert model.ctc is None and not any("ctc" in key for key in model.state_dict())
    with pytest.raises(ValueError, match="no CTC head"):
        model.ctc_log_probs(model.encode(torch.randn(1, 8, 6), torch.tensor([8])))
    with_ctc, _ = tiny_model(PBLSTM + ["encoder.ctc_layer=1"] + CTC)
    for key, value in model.state_dict().items():  # the head is built last: same init
        torch.testing.assert_close(with_ctc.state_dict()[key], value, rtol=0, atol=0)


def _paths_probability(log_probs: torch.Tensor, labels: list[int]) -> float:
    """Brute force: sum over every frame labelling that collapses to ``labels``."""
    frames, vocab = log_probs.shape
    total = 0.0
    for path in itertools.product(range(vocab), repeat=frames):
        collapsed = [k for k, _ in itertools.groupby(path) if k != BLANK_ID]
        if collapsed == labels:
            total += math.exp(sum(float(log_probs[t, k]) for t, k in enumerate(path)))
    return total


def test_ctc_loss_is_the_negative_log_of_all_alignments_without_eos():
    log_probs = torch.log_softmax(torch.randn(2, 5, 4, dtype=torch.float64), dim=-1)
    targets = torch.tensor([[3, 3, EOS_ID], [1, EOS_ID, PAD_ID]])  # labels [3, 3] and [1]
    losses = ctc_loss(log_probs, torch.tensor([5, 3]), targets)
    assert losses.dtype == torch.float64
    expected = [
        -math.log(_paths_probability(log_probs[0], [3, 3])),
        -math.log(_paths_probability(log_probs[1, :3], [1])),
    ]
    assert losses.tolist() == pytest.approx(expected, rel=1e-9)


def test_labels_that_cannot_fit_the_frames_count_zero():
    log_probs = torch.log_softmax(torch.randn(2, 4, 5), dim=-1).requires_grad_()
    # 4 frames: [4, 4, 4] needs 5 (blanks between repeats); [1, 2, 3, 4] fits exactly.
    targets = torch.tensor([[4, 4, 4, EOS_ID], [1, 2, 3, 4]])
    losses = ctc_loss(log_probs, torch.tensor([4, 4]), targets)
    assert losses[0].item() == 0.0 and math.isfinite(losses[1].item()) and losses[1] > 0
    losses.sum().backward()
    assert torch.all(log_probs.grad[0] == 0) and torch.all(torch.isfinite(log_probs.grad))


@pytest.mark.parametrize("ctc_layer", [0, 1])
def test_ctc_loss_is_padding_invariant(ctc_layer):
    model, _ = tiny_model(PBLSTM + CTC + [f"encoder.ctc_layer={ctc_layer}"], torch.float64)
    lengths = [30, 13, 22]
    texts = [[4, 5, 6, 5], [7, 8], [9, 4, 10]]
    features = [torch.randn(n, 6, dtype=torch.float64) for n in lengths]
    batch = torch.full((3, 30, 6), 100.0, dtype=torch.float64)  # garbage in the padding
    for row, f in enumerate(features):
        batch[row, : len(f)] = f
    _, targets = teacher_forcing_pair(texts)
    together = ctc_loss(*model.ctc_log_probs(model.encode(batch, torch.tensor(lengths))), targets)
    for row, f in enumerate(features):
        _, alone_targets = teacher_forcing_pair([texts[row]])
        encoded = model.encode(f.unsqueeze(0), torch.tensor([lengths[row]]))
        alone = ctc_loss(*model.ctc_log_probs(encoded), alone_targets)
        torch.testing.assert_close(together[row], alone[0], atol=1e-10, rtol=1e-10)
    assert torch.all(together > 0)


# Toy "speech": every word is 3..6 frames, so word-level CTC fits at the first layer.
CTC_TASK = [*SEQUENCES, "encoder.ctc_layer=0", "tokenizer.kind=word", *SMALL]


@pytest.mark.parametrize("weight", [0.0, 0.3])
def test_train_step_loss_is_the_weighted_sum(tmp_path, weight):
    overrides = CTC_TASK + [f"loss.ctc_weight={weight}"]
    run, batch, targets, (log_probs, _, encoded) = one_training_batch(overrides, tmp_path)
    with torch.no_grad():
        attention = token_loss(log_probs, targets)
        expected = attention
        if weight:
            ctc = ctc_loss(*run.model.ctc_log_probs(encoded), targets).sum()
            expected = weight * ctc + (1 - weight) * attention
        expected = expected / int((targets != PAD_ID).sum())
    assert (run.model.ctc is None) == (weight == 0)
    assert run._train_step(run.model, batch)[0] == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.slow
def test_tiny_model_with_ctc_overfits_eight_pairs(tmp_path):
    overrides = CTC_TASK + [
        "data.num_train=8",
        "data.num_dev=2",
        "train.epochs=60",
        "train.learning_rate=0.03",
        "loss.ctc_weight=0.5",
    ]
    train(load_config(None, overrides), tmp_path, progress=False)
    model, tokenizer, saved = load_model(resume_points(tmp_path)[0])
    scores = evaluate_model(model, tokenizer, build_source(saved.data), "train", saved, "cpu")
    assert scores.metrics["wer"] == 0.0 and scores.metrics["items"] == 8
    (batch,) = build_source(saved.data).batches("train", train=False, batch_size=8)
    with torch.no_grad():
        log_probs, lengths = model.ctc_log_probs(model.encode(batch.sources, batch.lengths))
    for row, text in enumerate(batch.texts):  # greedy CTC: best frame labels, collapsed
        best = log_probs[row, : lengths[row]].argmax(dim=-1).tolist()
        collapsed = [k for k, _ in itertools.groupby(best) if k != BLANK_ID]
        assert collapsed == tokenizer.encode(text)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (["loss.ctc_weight=1.0"], InputError, r"loss.ctc_weight must be in \[0, 1\), got 1.0"),
        (["loss.ctc_weight=-0.1"], InputError, "loss.ctc_weight must be in"),
        (["loss.ctc_weight=high"], ConfigError, "loss.ctc_weight: expected float"),
        (["encoder.num_layers=2", "encoder.ctc_layer=3"], InputError, "encoder.ctc_layer must"),
        (["encoder.ctc_layer=-1"], InputError, r"between 0 and encoder.num_layers \(3\), got -1"),
        (["encoder.ctc_layer=1.5"], ConfigError, "encoder.ctc_layer: expected"),
        (["encoder.name=cnn", "encoder.ctc_layer=1"], ConfigError, "'encoder.ctc_layer'"),
    ],
)
def test_bad_ctc_settings_name_the_key(overrides, error, message):
    with pytest.raises(error, match=message):
        load_config(None, overrides)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ctc_under_autocast_on_cuda_matches_float32_on_cpu():
    model, _ = tiny_model(PBLSTM + CTC + ["encoder.ctc_layer=1"])
    features, lengths = torch.randn(2, 24, 6), torch.tensor([24, 17])
    _, targets = teacher_forcing_pair([[4, 5, 6], [7, 8]])
    expected = ctc_loss(*model.ctc_log_probs(model.encode(features, lengths)), targets)
    model.cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        encoded = model.encode(features.cuda(), lengths.cuda())
        log_probs, ctc_lengths = model.ctc_log_probs(encoded)
        losses = ctc_loss(log_probs, ctc_lengths, targets.cuda())
    assert log_probs.dtype == torch.float32 and losses.dtype == torch.float32
    torch.testing.assert_close(losses.cpu(), expected, atol=1e-2, rtol=1e-2)


def _follow(scorer: CTCPrefixScorer, sequences: list[list[int]], vocab: int) -> torch.Tensor:
    """Feed each row its sequence then EOS (beam 1); return the summed CTC increments."""
    rows = len(sequences)
    totals = torch.zeros(rows, dtype=torch.float64)
    for step in range(max(map(len, sequences)) + 1):
        increments = scorer.joint(torch.zeros(rows, vocab, dtype=torch.float64))
        tokens = torch.tensor([s[step] if step < len(s) else EOS_ID for s in sequences])
        for row, sequence in enumerate(sequences):
            if step <= len(sequence):
                totals[row] += increments[row, tokens[row]]
        scorer.select(torch.arange(rows), tokens)
    return totals


@pytest.mark.parametrize("scan", [False, True])
def test_ctc_prefix_scores_telescope_to_the_ctc_log_probability(scan):
    log_probs = torch.log_softmax(torch.randn(3, 12, 7, dtype=torch.float64), dim=-1)
    lengths = torch.tensor([12, 9, 6])
    sequences = [[4, 5, 5, 6], [6, 4], [5, 4, 4]]  # repeats need a blank between them
    totals = _follow(CTCPrefixScorer(log_probs, lengths, 1, 1.0, scan), sequences, 7)
    _, targets = teacher_forcing_pair(sequences)
    expected = -ctc_loss(log_probs, lengths, targets, zero_infinity=False)
    torch.testing.assert_close(totals, expected, rtol=1e-12, atol=1e-12)
    impossible = _follow(CTCPrefixScorer(log_probs[2:], lengths[2:], 1, 1.0, scan), [[4] * 4], 7)
    assert impossible.item() == float("-inf")  # 4 repeats need 7 frames, there are 6


def test_scan_over_frames_equals_the_loop_over_frames():
    """Beam 3 over 4 sources of 30 float32 frames: every step's joint scores, from the loop
    and from the scan, while the same parents and tokens are selected in both."""
    torch.manual_seed(1)
    log_probs = torch.log_softmax(3 * torch.randn(4, 30, 9), dim=-1)
    lengths = torch.tensor([30, 4, 17, 25])
    loop, scan = (CTCPrefixScorer(log_probs, lengths, 3, 0.5, scan) for scan in (False, True))
    attention = torch.log_softmax(torch.randn(12, 9), dim=-1)
    for step in range(12):
        expected, actual = loop.joint(attention), scan.joint(attention)
        assert actual.dtype == torch.float32
        assert torch.equal(actual == float("-inf"), expected == float("-inf")), step
        finite = expected > float("-inf")
        torch.testing.assert_close(actual[finite], expected[finite], rtol=0, atol=1e-4)
        parents = torch.randint(0, 3, (12,)) + torch.arange(12) // 3 * 3
        tokens = torch.randint(3, 9, (12,))
        if loop.last is not None:  # some rows repeat their parent's last token
            tokens = torch.where(torch.rand(12) < 0.3, loop.last[parents], tokens)
        for scorer in (loop, scan):
            scorer.select(parents, tokens)


@pytest.mark.parametrize("scan", [False, True])
def test_ctc_prefix_scores_ignore_padding(scan):
    log_probs = torch.log_softmax(torch.randn(2, 10, 6, dtype=torch.float64), dim=-1)
    lengths = torch.tensor([10, 7])
    together = CTCPrefixScorer(log_probs, lengths, 1, 1.0, scan)
    alone = CTCPrefixScorer(log_probs[1:, :7], lengths[1:], 1, 1.0, scan)
    for tokens in ([4, 5], [5, 5], [5, EOS_ID]):
        both = together.joint(torch.zeros(2, 6, dtype=torch.float64))[1]
        one = alone.joint(torch.zeros(1, 6, dtype=torch.float64))[0]
        finite = both > float("-inf")
        assert torch.equal(finite, one > float("-inf"))
        torch.testing.assert_close(both[finite], one[finite], rtol=1e-12, atol=1e-12)
        together.select(torch.arange(2), torch.tensor(tokens))
        alone.select(torch.arange(1), torch.tensor(tokens[1:]))


def _joint_beam_search(model, encoded, search):
    log_probs, lengths = model.ctc_log_probs(encoded)
    scorer = CTCPrefixScorer(log_probs, lengths, search.beam_size, search.ctc_weight)
    return beam_search(model, encoded, search, scorer)


def test_joint_ctc_attention_beam_search_scores_and_batching():
    overrides = ["encoder.ctc_layer=0", "search.beam_size=4", "search.ctc_weight=0.3"]
    model, config = tiny_model(PBLSTM + CTC + overrides)
    model.ctc.projection.bias.data[BLANK_ID] += 4.0  # mostly blank: hypotheses end early
    lengths = torch.tensor([30, 22, 14])
    features = torch.randn(3, 30, 6)
    search = dataclasses.replace(config.search, nbest=4, max_length_ratio=1.0)
    with torch.no_grad():
        encoded = model.encode(features, lengths)
        nbests = _joint_beam_search(model, encoded, search)
    assert any(h.finished for nbest in nbests for h in nbest)
    for source, nbest in enumerate(nbests):
        one = model.encode(features[source : source + 1, : lengths[source]], lengths[[source]])
        with torch.no_grad():
            alone = _joint_beam_search(model, one, search)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in nbest]
        for a, b in zip(alone, nbest, strict=True):
            assert a.score == pytest.approx(b.score, rel=1e-5, abs=1e-5)
        for hypothesis in (h for h in nbest if h.finished):
            inputs, targets = teacher_forcing_pair([hypothesis.tokens])
            with torch.no_grad():
                source_features = features[source : source + 1, : lengths[source]]
                log_probs, _, encoded_one = model(source_features, lengths[[source]], inputs)
                attention = -token_loss(log_probs, targets)
                ctc = -ctc_loss(*model.ctc_log_probs(encoded_one), targets, False)
            expected = 0.7 * float(attention) + 0.3 * float(ctc[0])
            assert hypothesis.log_prob == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_joint_ctc_decoding_needs_a_ctc_head_and_a_weight_in_range():
    model, config = tiny_model(PBLSTM + ["search.beam_size=2", "search.ctc_weight=0.2"])
    tokenizer = Tokenizer.build(["abcdefgh"], "char")
    assert len(tokenizer) == VOCAB
    with pytest.raises(InputError, match="search.ctc_weight needs a model trained with"):
        decode_batch(model, tokenizer, torch.randn(1, 9, 6), torch.tensor([9]), config.search)
    with pytest.raises(InputError, match="search.ctc_weight must be in"):
        load_config(None, ["search.ctc_weight=1.5"])
