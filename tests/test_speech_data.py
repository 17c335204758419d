import json
import math

import pytest
import soundfile
import torch

from multimodal_s2s.config import ConfigError, config_from_dict
from multimodal_s2s.data import speech
from multimodal_s2s.data.audio import load_audio
from multimodal_s2s.data.base import Dropped
from multimodal_s2s.data.batching import Shard
from multimodal_s2s.data.speech import SpeechData, SpeechDataConfig
from multimodal_s2s.errors import InputError
from multimodal_s2s.frontends import build_frontend
from multimodal_s2s.frontends.features import FeatureConfig, FeaturePipeline, LogMelFrontend
from multimodal_s2s.models.model import build_model

RATE = 16000
HOP = 160
DURATIONS = [0.25, 0.4, 0.55, 0.7, 0.3, 0.9, 0.45, 0.6, 0.35, 0.8]


def _tone(seconds: float, frequency: float) -> torch.Tensor:
    t = torch.arange(round(seconds * RATE)) / RATE
    return 0.3 * torch.sin(2 * math.pi * frequency * t)


def _write_corpus(folder, durations=DURATIONS, with_duration=True):
    """Tone wav files and a manifest (relative paths); every other record has a duration."""
    records = []
    for index, seconds in enumerate(durations):
        path = folder / f"utt{index}.wav"
        soundfile.write(path, _tone(seconds, 200 + 50 * index).numpy(), RATE, subtype="FLOAT")
        record = {"audio": path.name, "text": f"word {index}"}
        if with_duration and index % 2 == 0:
            record["duration"] = seconds
        records.append(record)
    manifest = folder / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    return manifest


def _data(manifest, **overrides) -> SpeechData:
    features = overrides.pop("features", {})
    config = SpeechDataConfig(
        train=str(manifest),
        dev=str(manifest),
        num_workers=0,
        features=FeatureConfig(**features),
        **overrides,
    )
    return SpeechData(config)


def _frames(batch) -> int:
    return len(batch.texts) * (1 + batch.sources.shape[1] // HOP)


@pytest.mark.parametrize("train", [True, False])
def test_batches_respect_max_frames_and_batch_size(tmp_path, train):
    manifest = _write_corpus(tmp_path)
    data = _data(manifest, max_frames=200, features={"speed_factors": [0.9, 1.0, 1.1]})
    batches = data.batches("train", train=train, batch_size=3, epoch=1, seed=5)
    seen = []
    assert len(batches) == len(list(batches))
    for batch in batches:
        assert len(batch.texts) <= 3
        assert _frames(batch) <= 200
        assert batch.sources.shape == (len(batch.texts), int(batch.lengths.max()))
        seen += batch.keys
    assert sorted(seen) == sorted(str(tmp_path / f"utt{i}.wav") for i in range(len(DURATIONS)))


def test_training_batches_are_packed_by_the_lengths_speed_perturbation_gives(tmp_path, monkeypatch):
    manifest = _write_corpus(tmp_path)
    data = _data(manifest, max_frames=300, features={"speed_factors": [0.8, 1.0, 1.25]})
    planned = []
    sampler = speech.BucketBatchSampler

    def planning(lengths, *args, **kwargs):
        planned.append(list(lengths))
        return sampler(lengths, *args, **kwargs)

    monkeypatch.setattr(speech, "BucketBatchSampler", planning)
    batches = data.batches("train", train=True, batch_size=4, epoch=1, seed=2)
    samples = {
        key: int(length)
        for batch in batches
        for key, length in zip(batch.keys, batch.lengths, strict=True)
    }
    keys = [str(tmp_path / f"utt{i}.wav") for i in range(len(DURATIONS))]
    assert planned == [[1 + samples[key] // HOP for key in keys]]
    speeds = {round(RATE * d / samples[key], 2) for d, key in zip(DURATIONS, keys, strict=True)}
    assert len(speeds) > 1 and speeds <= {0.8, 1.0, 1.25}


def test_batch_holds_padded_waveforms_texts_and_paths(tmp_path):
    manifest = _write_corpus(tmp_path)
    data = _data(manifest, max_frames=10000)
    batches = data.batches("dev", train=False, batch_size=len(DURATIONS))
    rows = [(batch, row, key) for batch in batches for row, key in enumerate(batch.keys)]
    assert len(rows) == len(DURATIONS)
    for batch, row, key in rows:
        index = int(key.removesuffix(".wav").rsplit("utt", 1)[1])
        wave = load_audio(key, RATE)
        assert batch.texts[row] == f"word {index}"
        assert int(batch.lengths[row]) == wave.shape[0] == round(DURATIONS[index] * RATE)
        assert torch.equal(batch.sources[row, : wave.shape[0]], wave)
        assert not batch.sources[row, wave.shape[0] :].any()


def test_start_skips_batches_without_loading_them(tmp_path, monkeypatch):
    manifest = _write_corpus(tmp_path)
    data = _data(manifest, max_frames=150)
    full = list(data.batches("train", train=True, batch_size=4, epoch=2, seed=1))
    loads = []
    monkeypatch.setattr(
        speech, "load_audio", lambda path, rate: loads.append(path) or load_audio(path, rate)
    )
    tail = data.batches("train", train=True, batch_size=4, epoch=2, seed=1, start=2)
    assert len(full) > 3
    assert len(tail) == len(full) - 2
    for resumed, original in zip(tail, full[2:], strict=True):
        assert resumed.keys == original.keys
        assert torch.equal(resumed.sources, original.sources)
    assert sorted(loads) == sorted(key for batch in full[2:] for key in batch.keys)


def test_training_augmentation_is_a_function_of_seed_and_epoch(tmp_path):
    manifest = _write_corpus(tmp_path)
    noise_path = tmp_path / "noise.wav"
    soundfile.write(noise_path, torch.randn(4000).numpy() * 0.1, RATE, subtype="FLOAT")
    features = {"speed_factors": [0.8, 1.0, 1.25], "noise_prob": 1.0}
    data = _data(manifest, max_frames=10000, features=features, noise_files=[str(noise_path)])

    def waves(epoch: int) -> dict[str, torch.Tensor]:
        return {
            key: batch.sources[row, : batch.lengths[row]]
            for batch in data.batches("train", train=True, batch_size=16, epoch=epoch, seed=3)
            for row, key in enumerate(batch.keys)
        }

    first, again, other = waves(0), waves(0), waves(1)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert any(
        first[key].shape != other[key].shape or not torch.equal(first[key], other[key])
        for key in first
    )
    clean = load_audio(next(iter(first)), RATE)
    assert not torch.equal(first[next(iter(first))][: clean.shape[0]], clean)


@pytest.mark.parametrize("max_freq_warp", [0.0, 0.2])
def test_fit_frontend_sets_mean_and_std_of_unaugmented_training_features(tmp_path, max_freq_warp):
    manifest = _write_corpus(tmp_path)
    features = {"num_mel_bins": 40, "max_freq_warp": max_freq_warp}
    data = _data(manifest, max_frames=300, features=features)
    frontend = build_frontend(data.config).train()
    assert isinstance(frontend, FeaturePipeline)
    data.fit_frontend(frontend)
    assert frontend.training
    logmel = LogMelFrontend(data.config.features).eval()
    frames = []
    for index in range(len(DURATIONS)):
        wave = load_audio(tmp_path / f"utt{index}.wav", RATE)
        features, _ = logmel(wave.unsqueeze(0), torch.tensor([wave.shape[0]]))
        frames.append(features[0])
    frames = torch.cat(frames).double()
    torch.testing.assert_close(
        frontend.normalizer.mean, frames.mean(0).float(), rtol=1e-4, atol=1e-4
    )
    torch.testing.assert_close(
        frontend.normalizer.std, frames.std(0, unbiased=False).float(), rtol=1e-4, atol=1e-4
    )


def test_long_training_utterances_are_dropped_and_counted(tmp_path):
    manifest = _write_corpus(tmp_path)
    data = _data(manifest, max_duration=0.5)
    texts = data.texts("train")
    assert texts == [f"word {i}" for i, s in enumerate(DURATIONS) if s <= 0.5]
    assert data.dropped == [Dropped("train", 5, "longer than data.max_duration=0.5 s")]
    assert len(data.texts("dev")) == len(DURATIONS)


def test_splits_are_read_lazily_and_named_in_errors(tmp_path):
    manifest = _write_corpus(tmp_path)
    config = SpeechDataConfig(dev=str(manifest), test={"clean": str(tmp_path / "missing.jsonl")})
    data = SpeechData(config)
    assert data.eval_splits == ["dev", "clean"]
    assert len(data.texts("dev")) == len(DURATIONS)
    with pytest.raises(InputError, match="missing.jsonl: manifest not found"):
        data.texts("clean")
    with pytest.raises(InputError, match=r"set data.train"):
        data.texts("train")
    with pytest.raises(InputError, match="no split 'other'"):
        data.texts("other")


def test_read_source_resamples_and_collate_pads(tmp_path):
    path = tmp_path / "a.wav"
    soundfile.write(path, _tone(0.25, 300).numpy(), 8000, subtype="FLOAT")
    config = SpeechDataConfig()
    wave = SpeechData.read_source(config, path)
    assert wave.shape == (8000,)
    sources, lengths = SpeechData.collate_sources([wave, wave[:100]])
    assert sources.shape == (2, 8000)
    assert lengths.tolist() == [8000, 100]
    assert not sources[1, 100:].any()
    with pytest.raises(InputError, match="b.wav"):
        SpeechData.read_source(config, tmp_path / "b.wav")


def test_config_builds_speech_data_with_nested_features():
    config = config_from_dict(
        {
            "data": {
                "name": "speech",
                "test": {"clean": "c.jsonl"},
                "features": {"num_mel_bins": 40, "speed_factors": [0.9, 1.1]},
            }
        }
    )
    assert isinstance(config.data, SpeechDataConfig)
    assert config.data.features.num_mel_bins == 40
    assert config.data.features.speed_factors == [0.9, 1.1]
    with pytest.raises(ConfigError, match="data.features.bogus"):
        config_from_dict({"data": {"name": "speech", "features": {"bogus": 1}}})
    with pytest.raises(InputError, match="max_frames"):
        SpeechDataConfig(max_frames=0)


def test_build_model_checks_the_encoder_input_against_the_features():
    speech = {"name": "speech", "features": {"num_mel_bins": 20, "stack_frames": 3}}
    model = build_model(config_from_dict({"data": speech, "encoder": {"input_dim": 60}}), 9)
    features, lengths = model.frontend.eval()(torch.randn(2, 3200), torch.tensor([3200, 1600]))
    assert features.shape == (2, 21 // 3, 60) and lengths.tolist() == [7, 3]
    with pytest.raises(InputError, match="encoder.input_dim is 20 .* 60 features a frame"):
        build_model(config_from_dict({"data": speech, "encoder": {"input_dim": 20}}), 9)


def test_score_gives_corpus_wer_then_cer(tmp_path):
    data = _data(_write_corpus(tmp_path))
    metrics = data.score(["a b c d", "e f"], ["a x c d", "e f g"])
    assert list(metrics) == ["wer", "cer"]
    assert metrics["wer"] == pytest.approx(2 / 6)  # one substitution, one insertion
    assert metrics["cer"] == pytest.approx(3 / 10)  # "b"->"x"; " g" inserted


def test_score_counts_an_empty_hypothesis_as_deletions(tmp_path):
    data = _data(_write_corpus(tmp_path))
    assert data.score(["one two three"], [""]) == {"wer": 1.0, "cer": 1.0}


def test_details_add_word_alignments_and_keep_the_record(tmp_path):
    data = _data(_write_corpus(tmp_path))
    records = [
        {"key": "u1.wav", "ref": "call me at nine", "hyp": "call at five", "score": -1.5},
        {"key": "u2.wav", "ref": "yes", "hyp": "yes", "score": -0.1},
    ]
    first, second = data.details(records)
    assert {k: first[k] for k in ("key", "ref", "hyp", "score")} == records[0]
    counts = ("substitutions", "deletions", "insertions", "hits")
    assert tuple(first[k] for k in counts) == (1, 1, 0, 2)
    assert tuple(second[k] for k in counts) == (0, 0, 0, 1)
    ref_line, hyp_line, marks = first["alignment"].split("\n")
    assert ref_line.split() == ["REF:", "call", "me", "at", "nine"]
    assert hyp_line.split() == ["HYP:", "call", "**", "at", "five"]
    assert marks.split() == ["D", "S"]


@pytest.mark.parametrize("with_duration", [True, False])
def test_audio_seconds_sums_the_split_durations(tmp_path, with_duration):
    data = _data(_write_corpus(tmp_path, with_duration=with_duration))
    assert data.audio_seconds("dev") == pytest.approx(sum(DURATIONS), abs=1e-6)


def test_sorted_epochs_go_shortest_first_then_shuffle(tmp_path):
    manifest = _write_corpus(tmp_path)
    data = _data(manifest, max_frames=10_000, sorted_epochs=1)

    def longest_per_batch(epoch):
        batches = data.batches("train", train=True, batch_size=2, epoch=epoch, seed=3)
        return [int(batch.lengths.max()) for batch in batches]

    first = longest_per_batch(0)
    assert first == sorted(first)
    later = [longest_per_batch(epoch) for epoch in (1, 2, 3)]
    assert any(order != sorted(order) for order in later)


def test_two_ranks_split_each_global_training_batch_and_share_out_eval_batches(tmp_path):
    manifest = _write_corpus(tmp_path, DURATIONS * 3)
    data = _data(manifest, max_frames=200)
    shards = [
        [batch.keys for batch in data.batches("train", train=True, batch_size=2, shard=shard)]
        for shard in (Shard(0, 2), Shard(1, 2))
    ]
    single = _data(manifest, max_frames=400).batches("train", train=True, batch_size=4)
    global_batches = [batch.keys for batch in single if len(batch.keys) >= 2]
    assert len(shards[0]) == len(shards[1]) == len(global_batches) > 0
    for first, second, whole in zip(*shards, global_batches, strict=True):
        assert not set(first) & set(second)
        assert sorted(first + second) == sorted(whole)
    dealt = [data.batches("dev", train=False, batch_size=2, shard=Shard(r, 2)) for r in (0, 1)]
    assert sorted(k for batches in dealt for b in batches for k in b.keys) == sorted(
        k for b in data.batches("dev", train=False, batch_size=2) for k in b.keys
    )
