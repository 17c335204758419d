import math
from dataclasses import replace

import pytest
import torch
from conftest import DECODER, SOURCE_SHAPES, tiny_model

from multimodal_s2s.config import load_config
from multimodal_s2s.devices import full_float32_on_cuda
from multimodal_s2s.errors import InputError
from multimodal_s2s.frontends import decoding_views
from multimodal_s2s.frontends.features import SpeechViews
from multimodal_s2s.frontends.image import Crop, ImageViews
from multimodal_s2s.search.beam import (
    SearchConfig,
    beam_search,
    greedy_search,
    max_output_lengths,
    rank_score,
)
from multimodal_s2s.search.decode import decode_batch
from multimodal_s2s.text import BOS_ID, EOS_ID, PAD_ID, Tokenizer, teacher_forcing_pair

ATTENTION_KINDS = ["dot", "general", "additive", "location", "{name: additive, gate: true}"]
SEARCH = SearchConfig(beam_size=3, nbest=3, max_length_ratio=3.0, max_length=12)


def _model(encoder: str, attention: str, eos_bias: float = 1.5, layers: int = 1):
    overrides = SOURCE_SHAPES[encoder] + DECODER
    overrides += [f"decoder.attention={attention}", f"decoder.num_layers={layers}"]
    if encoder == "cnn":
        overrides.append("encoder.output_dim=16")
    model, _ = tiny_model(overrides)
    with torch.no_grad():
        model.generator.projection.weight.mul_(4.0)
        model.generator.projection.bias[EOS_ID] += eos_bias
    return model


def _sources(encoder: str, frames: int = 17):
    """A short source (of ``frames`` frames) alone, and the same source inside a batch with
    longer ones."""
    if encoder in ("pblstm", "conv_pblstm"):
        batch = torch.randn(3, 40, 6)
        batch[1, frames:] = 50.0  # padding garbage
        lengths = torch.tensor([40, frames, 33])
        return (batch[1:2, :frames], torch.tensor([frames])), (batch, lengths)
    images = torch.randn(3, 3, 32, 32)
    return (images[1:2], None), (images, None)


@pytest.fixture
def full_float32(monkeypatch):
    """``full_float32_on_cuda`` for one test (PyTorch's setting is restored after it)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", torch.backends.cudnn.allow_tf32)
    full_float32_on_cuda()


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
@pytest.mark.parametrize("attention", ATTENTION_KINDS)
@pytest.mark.parametrize("encoder", ["pblstm", "conv_pblstm", "cnn", "resnet"])
def test_padding_never_changes_decoding(encoder, attention, device, full_float32):
    model = _model(encoder, attention).to(device)
    (alone, alone_lengths), (batch, batch_lengths) = _sources(encoder)
    alone, batch = alone.to(device), batch.to(device)
    if alone_lengths is not None:
        alone_lengths, batch_lengths = alone_lengths.to(device), batch_lengths.to(device)
    encoded_alone = model.encode(alone, alone_lengths)
    encoded_batch = model.encode(batch, batch_lengths)
    length = int(encoded_alone.lengths[0])
    torch.testing.assert_close(
        encoded_batch.memory[1, :length], encoded_alone.memory[0], atol=1e-5, rtol=0
    )
    greedy_alone = greedy_search(model, encoded_alone, SEARCH)[0]
    greedy_batch = greedy_search(model, encoded_batch, SEARCH)[1]
    assert greedy_batch.tokens == greedy_alone.tokens
    assert greedy_batch.log_prob == pytest.approx(greedy_alone.log_prob, abs=1e-5)
    beam_alone = beam_search(model, encoded_alone, SEARCH)[0]
    beam_batch = beam_search(model, encoded_batch, SEARCH)[1]
    assert [h.tokens for h in beam_batch] == [h.tokens for h in beam_alone]
    assert [h.score for h in beam_batch] == pytest.approx([h.score for h in beam_alone], abs=1e-5)
    for a, b in zip(beam_alone, beam_batch):
        torch.testing.assert_close(b.attention, a.attention, atol=1e-5, rtol=0)


@pytest.mark.parametrize("encoder", ["pblstm", "conv_pblstm"])
def test_sources_shorter_than_the_encoder_needs_decode_the_same_alone_and_in_a_batch(encoder):
    model = _model(encoder, "location")
    assert model.encoder.min_frames == {"pblstm": 4, "conv_pblstm": 5}[encoder]
    (alone, alone_lengths), (batch, batch_lengths) = _sources(encoder, frames=2)
    with pytest.raises(ValueError, match="needs at least"):
        model.encoder(alone, alone_lengths)
    encoded_alone = model.encode(alone, alone_lengths)
    encoded_batch = model.encode(batch, batch_lengths)
    assert encoded_alone.lengths.tolist() == [1] and int(encoded_batch.lengths[1]) == 1
    beam_alone = beam_search(model, encoded_alone, SEARCH)[0]
    beam_batch = beam_search(model, encoded_batch, SEARCH)[1]
    assert [h.tokens for h in beam_batch] == [h.tokens for h in beam_alone]
    assert [h.score for h in beam_batch] == pytest.approx([h.score for h in beam_alone], abs=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("encoder", ["pblstm", "conv_pblstm"])
def test_full_float32_on_cuda_makes_encoding_batch_independent(encoder, full_float32):
    """32 sources at the beam search benchmark's size, encoded together and one at a time.
    With cuDNN's TF32 (PyTorch's default) some values of a source differ by more than 1e-5
    between the two, depending on the kernel picked for each batch shape."""
    overrides = [
        "encoder.input_dim=80",
        "data.feature_dim=80",
        "encoder.hidden_dim=256",
        "encoder.num_layers=3",
    ]
    model, _ = tiny_model(SOURCE_SHAPES[encoder] + overrides)
    model = model.cuda()
    lengths = torch.randint(200, 801, (32,), device="cuda")
    features = torch.randn(32, int(lengths.max()), 80, device="cuda")
    with torch.no_grad():
        together = model.encode(features, lengths)
        for i, length in enumerate(lengths.tolist()):
            alone = model.encode(features[i : i + 1, :length], lengths[i : i + 1])
            memory = together.memory[i, : int(alone.lengths[0])]
            torch.testing.assert_close(memory, alone.memory[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("attention", ATTENTION_KINDS)
def test_beam_of_one_equals_greedy(attention):
    model = _model("pblstm", attention)
    _, (batch, lengths) = _sources("pblstm")
    encoded = model.encode(batch, lengths)
    config = SearchConfig(beam_size=1, max_length_ratio=3.0, max_length=12)
    greedy = greedy_search(model, encoded, config)
    beam = beam_search(model, encoded, config)
    assert [h.tokens for h in greedy] == [n[0].tokens for n in beam]
    assert [h.log_prob for h in greedy] == pytest.approx([n[0].log_prob for n in beam], abs=1e-5)
    assert [h.score for h in greedy] == pytest.approx([n[0].score for n in beam], abs=1e-5)


@pytest.mark.parametrize(
    ("length_norm", "no_repeat_ngram_size"),
    [("none", 0), ("length", 0), ("gnmt", 0), ("length", 2)],
)
def test_batched_beam_search_equals_one_source_at_a_time(length_norm, no_repeat_ngram_size):
    model = _model("pblstm", "location", eos_bias=2.5)
    lengths = torch.tensor([40, 17, 33, 9, 26])
    sources = torch.randn(5, 40, 6)
    config = SearchConfig(
        beam_size=4,
        nbest=2,
        length_norm=length_norm,
        max_length_ratio=3.0,
        max_length=15,
        no_repeat_ngram_size=no_repeat_ngram_size,
    )
    batched = beam_search(model, model.encode(sources, lengths), config)
    assert any(len(n[0].tokens) < 9 for n in batched)  # some sources stop early
    for index in range(5):
        alone = model.encode(
            sources[index : index + 1, : lengths[index]], lengths[index : index + 1]
        )
        single = beam_search(model, alone, config)[0]
        assert [h.tokens for h in batched[index]] == [h.tokens for h in single]
        assert [h.score for h in batched[index]] == pytest.approx(
            [h.score for h in single], abs=1e-5
        )


@pytest.mark.parametrize("encoder", ["pblstm", "cnn"])
def test_cpu_bfloat16_decodes_in_bfloat16_and_each_source_as_alone(encoder):
    """``search.cpu_bfloat16``: the decoder's products run in bfloat16 (with its weights cast
    once a batch), scores and attention come back in float32, and no source's result depends
    on the batch it is decoded in."""
    model = _model(encoder, "location" if encoder == "pblstm" else "{name: additive, gate: true}")
    tokenizer = Tokenizer.build(["abcdefgh"], "char")
    _, (batch, lengths) = _sources(encoder)
    generator_dtypes = []
    model.generator.projection.register_forward_hook(
        lambda module, inputs, output: generator_dtypes.append(output.dtype)
    )
    search = replace(SEARCH, nbest=1, cpu_bfloat16=True)
    for beam in (True, False):
        together = decode_batch(model, tokenizer, batch, lengths, search, beam)
        for index, decoded in enumerate(together):
            alone_lengths = None if lengths is None else lengths[index : index + 1]
            source = batch[index : index + 1]
            if lengths is not None:
                source = source[:, : lengths[index]]
            alone = decode_batch(model, tokenizer, source, alone_lengths, search, beam)[0]
            assert (alone.text, alone.score) == (decoded.text, decoded.score)
            assert decoded.hypothesis.attention.dtype == torch.float32
    assert set(generator_dtypes) == {torch.bfloat16}
    generator_dtypes.clear()
    float32_search = replace(search, cpu_bfloat16=False)
    float32 = decode_batch(model, tokenizer, batch, lengths, float32_search, beam=False)
    assert set(generator_dtypes) == {torch.float32}
    assert [d.score for d in float32] != [d.score for d in together]
    assert [d.score for d in float32] == pytest.approx([d.score for d in together], abs=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        memory, _ = model.decoder.start(model.encode(batch, lengths), decoding=True)
    weights = memory.decoding
    assert {
        w.dtype for w in (weights.context_weight, weights.hidden_weight, weights.top_weight)
    } == {torch.bfloat16}


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("attention", ATTENTION_KINDS)
def test_scores_are_the_models_log_probabilities(attention, layers):
    """A finished hypothesis keeps exactly the log-probability the model gives its tokens
    (and the search's precomputed decoding path computes what the training path does)."""
    model = _model("pblstm", attention, eos_bias=2.5, layers=layers)
    _, (batch, lengths) = _sources("pblstm")
    encoded = model.encode(batch, lengths)
    nbest = beam_search(model, encoded, SEARCH)
    assert sum(h.finished for n in nbest for h in n) >= 3
    for index, hypotheses in enumerate(nbest):
        for hypothesis in hypotheses:
            if not hypothesis.finished:
                continue
            inputs, targets = teacher_forcing_pair([hypothesis.tokens])
            log_probs, _, _ = model(batch[index : index + 1], lengths[index : index + 1], inputs)
            expected = log_probs.gather(2, targets.unsqueeze(2)).sum().detach()
            assert hypothesis.log_prob == pytest.approx(float(expected), abs=1e-4)
            assert hypothesis.score == pytest.approx(
                hypothesis.log_prob / (len(hypothesis.tokens) + 1), abs=1e-5
            )
            assert hypothesis.attention.shape == (len(hypothesis.tokens) + 1, lengths[index] // 4)


def test_source_without_eos_returns_its_best_partial_hypothesis():
    model = _model("pblstm", "location", eos_bias=-1e4)
    _, (batch, lengths) = _sources("pblstm")
    encoded = model.encode(batch, lengths)
    caps = max_output_lengths(encoded.lengths, SEARCH).tolist()
    assert caps == [min(12, math.ceil(3.0 * n)) for n in (10, 4, 8)]
    for hypotheses, cap in zip(beam_search(model, encoded, SEARCH), caps):
        assert len(hypotheses) == 3
        assert all(not h.finished and len(h.tokens) == cap for h in hypotheses)
        assert all(math.isfinite(h.score) for h in hypotheses)
    for hypothesis, cap in zip(greedy_search(model, encoded, SEARCH), caps):
        assert not hypothesis.finished and len(hypothesis.tokens) == cap


def test_eos_is_never_fed_to_the_decoder():
    model = _model("pblstm", "location", eos_bias=2.5)
    model.decoder.config.scheduled_sampling = 0.5
    fed = []
    model.decoder.embedding.register_forward_hook(lambda m, args, out: fed.append(args[0]))
    step = model.decoder.step
    model.decoder.step = lambda tokens, *state: fed.append(tokens) or step(tokens, *state)
    _, (batch, lengths) = _sources("pblstm")
    encoded = model.encode(batch, lengths)
    results = beam_search(model, encoded, SEARCH)
    greedy_search(model, encoded, SEARCH)
    assert any(h.finished for n in results for h in n)  # EOS was produced ...
    model.train()
    inputs, _ = teacher_forcing_pair([[4, 5, 6], [7], [8, 9]])
    model(batch, lengths, inputs)
    fed = torch.cat([tokens.flatten() for tokens in fed])
    assert (fed == BOS_ID).any()
    assert not (fed == EOS_ID).any()  # ... and never fed back


def test_pad_and_bos_are_never_emitted():
    model = _model("pblstm", "location")
    with torch.no_grad():
        model.generator.projection.bias[[PAD_ID, BOS_ID]] += 1e3  # the model "prefers" them
    _, (batch, lengths) = _sources("pblstm")
    encoded = model.encode(batch, lengths)
    greedy = greedy_search(model, encoded, SEARCH)
    beams = [h for nbest in beam_search(model, encoded, SEARCH) for h in nbest]
    assert len(beams) == 9
    for hypothesis in greedy + beams:
        assert not {PAD_ID, BOS_ID} & set(hypothesis.tokens)
        assert math.isfinite(hypothesis.score)


def test_rank_score_formulas():
    log_prob = torch.tensor([-6.0])
    length = torch.tensor([3])
    assert rank_score(log_prob, length, None, SearchConfig(length_norm="none")).item() == -6.0
    assert rank_score(log_prob, length, None, SearchConfig(length_norm="length")).item() == -2.0
    gnmt = SearchConfig(length_norm="gnmt", length_alpha=0.6)
    assert rank_score(log_prob, length, None, gnmt).item() == pytest.approx(
        -6.0 / ((5 + 3) / 6) ** 0.6
    )
    coverage = torch.tensor([[0.5, 2.0, 1.0]])
    covered = SearchConfig(length_norm="none", coverage_penalty=0.2)
    assert rank_score(log_prob, length, coverage, covered).item() == pytest.approx(
        -6.0 + 0.2 * math.log(0.5)
    )


def test_coverage_penalty_changes_nothing_but_the_ranking_score():
    model = _model("pblstm", "location", eos_bias=2.5)
    _, (batch, lengths) = _sources("pblstm")
    encoded = model.encode(batch, lengths)
    plain = beam_search(model, encoded, SEARCH)
    penalised = beam_search(
        model, encoded, SearchConfig(**{**vars(SEARCH), "coverage_penalty": 1.0})
    )
    for hypothesis in (h for n in penalised for h in n):
        coverage = hypothesis.attention.sum(0)
        expected = rank_score(
            torch.tensor(hypothesis.log_prob, dtype=torch.float64),
            torch.tensor(len(hypothesis.tokens) + hypothesis.finished),
            coverage.double(),
            SearchConfig(coverage_penalty=1.0),
        )
        assert hypothesis.score == pytest.approx(float(expected), abs=1e-4)
    assert [h.score for n in plain for h in n] != [h.score for n in penalised for h in n]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_search_matches_cpu():
    model = _model("pblstm", "location", eos_bias=2.5)
    _, (batch, lengths) = _sources("pblstm")
    on_cpu = beam_search(model, model.encode(batch, lengths), SEARCH)
    model = model.cuda()
    on_cuda = beam_search(model, model.encode(batch.cuda(), lengths.cuda()), SEARCH)
    assert [[h.tokens for h in n] for n in on_cuda] == [[h.tokens for h in n] for n in on_cpu]
    for cpu_nbest, cuda_nbest in zip(on_cpu, on_cuda):
        assert [h.score for h in cuda_nbest] == pytest.approx(
            [h.score for h in cpu_nbest], abs=1e-4
        )
    greedy = greedy_search(model, model.encode(batch.cuda(), lengths.cuda()), SEARCH)
    assert all(h.attention.is_cuda for h in greedy)


def _repeats_an_ngram(tokens: list[int], size: int) -> bool:
    ngrams = [tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1)]
    return len(set(ngrams)) < len(ngrams)


@pytest.mark.parametrize("size", [1, 2, 3])
def test_no_repeat_ngram_size_blocks_every_repeated_ngram(size):
    model = _model("pblstm", "location", eos_bias=-1e4)
    _, (batch, lengths) = _sources("pblstm")
    encoded = model.encode(batch, lengths)
    free = [h.tokens for n in beam_search(model, encoded, SEARCH) for h in n]
    assert any(_repeats_an_ngram(tokens, size) for tokens in free)
    config = SearchConfig(
        beam_size=3, nbest=3, max_length_ratio=3.0, max_length=12, no_repeat_ngram_size=size
    )
    beams = beam_search(model, encoded, config)
    greedy = greedy_search(model, encoded, config)
    for hypothesis in greedy + [h for n in beams for h in n]:
        assert not _repeats_an_ngram(hypothesis.tokens, size)
    one = beam_search(model, encoded, replace(config, beam_size=1, nbest=1))
    assert [n[0].tokens for n in one] == [h.tokens for h in greedy]
    assert [n[0].log_prob for n in one] == pytest.approx([h.log_prob for h in greedy], abs=1e-5)


def test_negative_no_repeat_ngram_size_is_named():
    with pytest.raises(InputError, match="search.no_repeat_ngram_size must be >= 0, got -1"):
        SearchConfig(no_repeat_ngram_size=-1)


SPEECH = [
    "data.name=speech",
    "data.features.num_mel_bins=8",
    "encoder.input_dim=8",
    "encoder.hidden_dim=8",
    "encoder.num_layers=1",
    "search.beam_size=3",
    "search.max_length=8",
]


def _speech_decoder():
    """A tiny speech model with a sharpened generator, a tokenizer, a padded batch of six
    waveforms and ``decode(beam=True, **speech_views)``."""
    model, config = tiny_model(SPEECH + DECODER)
    with torch.no_grad():
        model.generator.projection.weight.mul_(4.0)
    tokenizer = Tokenizer.build(["abcdefgh"], "char")
    waves = torch.randn(6, 4000, generator=torch.Generator().manual_seed(0)) * 0.1
    lengths = torch.tensor([4000, 2500, 3000, 1800, 3500, 2000])

    def decode(beam: bool = True, **views):
        variants = SpeechViews(**views).variants()
        decoded = decode_batch(model, tokenizer, waves, lengths, config.search, beam, variants)
        return [(d.text, d.score) for d in decoded]

    return decode


@pytest.mark.parametrize("name", ["warp_factors", "speed_factors"])
def test_warp_and_speed_factors_keep_each_sources_best_scoring_variant(name):
    decode = _speech_decoder()
    runs = {factor: decode(**{name: [factor]}) for factor in (0.9, 1.1)}
    chosen = []
    for index, decoded in enumerate(decode(**{name: [0.9, 1.1]})):
        candidates = {factor: run[index] for factor, run in runs.items()}
        best = max(candidates, key=lambda factor: candidates[factor][1])
        assert decoded == candidates[best]
        chosen.append(best)
    assert set(chosen) == {0.9, 1.1}  # each factor wins somewhere: the choice is per source
    assert decode(**{name: [1.0]}) == decode()
    assert decode(False, **{name: [0.9, 1.1]}) == decode(False)


def test_speed_and_warp_factors_decode_every_pair_of_them():
    decode = _speech_decoder()
    pairs = [(speed, warp) for speed in (0.9, 1.1) for warp in (0.9, 1.0)]
    runs = [decode(speed_factors=[speed], warp_factors=[warp]) for speed, warp in pairs]
    expected = [max(candidates, key=lambda c: c[1]) for candidates in zip(*runs)]
    assert decode(speed_factors=[0.9, 1.1], warp_factors=[0.9, 1.0]) == expected
    assert len({run[i] for run in runs for i in range(6)}) > 6  # the pairs decode differently


@pytest.mark.parametrize("name", ["warp_factors", "speed_factors"])
def test_warp_and_speed_factors_need_a_speech_model_and_positive_factors(name):
    model = _model("cnn", "additive")
    tokenizer = Tokenizer.build(["abcdefgh"], "char")
    views = SpeechViews(**{name: [0.9, 1.1]}).variants()
    with pytest.raises(InputError, match="view 'speed'|view 'warp'"):
        decode_batch(model, tokenizer, torch.randn(2, 3, 32, 32), None, SEARCH, views=views)
    speech = ["data.name=speech", "encoder.input_dim=80"]
    with pytest.raises(InputError, match=f"data.test_views.{name} must be > 0"):
        load_config(None, [*speech, f"data.test_views.{name}=[1.0, 0.0]"])
    with pytest.raises(InputError, match=f"unknown config key 'data.test_views.{name}'"):
        load_config(None, ["data.name=images", f"data.test_views.{name}=[1.0]"])


def test_corner_crops_need_an_image_model_and_sides_below_one():
    model = _model("pblstm", "additive")
    tokenizer = Tokenizer.build(["abcdefgh"], "char")
    views = ImageViews(corner_crops=[0.9]).variants()
    with pytest.raises(InputError, match="view 'crop' needs a frontend that takes it"):
        decode_batch(
            model, tokenizer, torch.randn(2, 40, 6), torch.tensor([40, 30]), SEARCH, views=views
        )
    for side in ("1.0", "0.0"):
        with pytest.raises(InputError, match=r"data.test_views.corner_crops must be in \(0, 1\)"):
            load_config(None, ["data.name=images", f"data.test_views.corner_crops=[0.9, {side}]"])
    with pytest.raises(InputError, match="unknown config key 'data.test_views'"):
        load_config(None, ["data.test_views.corner_crops=[0.9]"])  # toy data has no views


def test_old_search_keys_of_views_name_their_new_place():
    for name in ("speed_factors", "warp_factors", "corner_crops"):
        with pytest.raises(InputError, match=f"'search.{name}' is now 'data.test_views.{name}'"):
            load_config(None, [f"search.{name}=[]"])


def test_views_are_every_combination_of_speed_and_warp_or_every_crop():
    assert decoding_views(load_config(None, []).data) == [{}]
    assert SpeechViews().variants() == [{}] and ImageViews().variants() == [{}]
    speech = SpeechViews(speed_factors=[0.9, 1.1], warp_factors=[1.0, 1.2]).variants()
    assert speech == [
        {"speed": 0.9, "warp": 1.0},
        {"speed": 0.9, "warp": 1.2},
        {"speed": 1.1, "warp": 1.0},
        {"speed": 1.1, "warp": 1.2},
    ]
    crops = ImageViews(corner_crops=[0.8, 0.9]).variants()
    assert crops[0] == {} and len(crops) == 9
    assert [v["crop"] for v in crops[1:5]] == [
        Crop(0.8, 0.0, 0.0),
        Crop(0.8, 1.0, 0.0),
        Crop(0.8, 0.0, 1.0),
        Crop(0.8, 1.0, 1.0),
    ]
    assert {v["crop"].side for v in crops[5:]} == {0.9}


def test_corner_crops_keep_each_images_best_scoring_view_and_name_it():
    model, config = tiny_model(SOURCE_SHAPES["cnn"] + DECODER + ["data.name=images"])
    with torch.no_grad():
        model.generator.projection.weight.mul_(4.0)
    model.eval()
    tokenizer = Tokenizer.build(["abcdefgh"], "char")
    smooth = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))  # crops alike
    smooth = torch.nn.functional.interpolate(smooth, size=(32, 32), mode="bilinear")
    images = (smooth * 255).round().to(torch.uint8)
    search = replace(config.search, beam_size=3, max_length=8)
    views = ImageViews(corner_crops=[0.75]).variants()
    decoded = decode_batch(model, tokenizer, images, None, search, views=views)
    with torch.no_grad():
        runs = [beam_search(model, model.encode(images, None, **view), search) for view in views]
    chosen = []
    for index, result in enumerate(decoded):
        best = max(range(len(views)), key=lambda v: runs[v][index][0].score)
        hypothesis = runs[best][index][0]
        assert result.score == hypothesis.score and result.hypothesis.tokens == hypothesis.tokens
        assert result.variant == views[best]
        chosen.append(best)
    assert len(set(chosen)) > 1  # the choice is per image
