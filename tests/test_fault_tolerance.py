"""Crash-safe resume and guards against bad batches (SIGKILL, damaged checkpoints, NaNs)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import SEQUENCES, SMALL

from multimodal_s2s import cli
from multimodal_s2s.checkpoint import load_checkpoint, load_newest_resume_point, resume_points
from multimodal_s2s.config import config_to_dict, load_config
from multimodal_s2s.data.base import Dropped
from multimodal_s2s.data.toy import ToySequences
from multimodal_s2s.errors import InputError, TrainingError
from multimodal_s2s.training.train import Trainer, train

# 64 items in batches of 4: 16 optimiser steps per epoch, a resume point every 3 steps.
RUN = (
    SEQUENCES
    + SMALL
    + [
        "data.num_train=64",
        "data.num_dev=4",
        "train.batch_size=4",
        "train.epochs=2",
        "train.save_every_steps=3",
        "decoder.dropout=0.2",
        "decoder.scheduled_sampling=0.2",
    ]
)


def _weights(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def _assert_same_weights(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def _cli_train(config_file, out, *extra) -> subprocess.Popen:
    command = [sys.executable, "-m", "multimodal_s2s.cli", "train", str(config_file)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*command, "--out", str(out), *extra],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    return stdout + stderr


def _metrics(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config_to_dict(load_config(None, RUN))))
    straight = _cli_train(config_file, tmp_path / "straight")
    killed = _cli_train(config_file, tmp_path / "killed")
    deadline = time.monotonic() + 120
    while not (tmp_path / "killed" / "checkpoint-6.pt").exists():
        assert killed.poll() is None, killed.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    _finish(straight)
    _, newest = load_newest_resume_point(tmp_path / "killed")
    position = load_checkpoint(newest)["position"]
    assert position["epoch"] == 0 and 0 < position["batch"] < 16
    output = _finish(_cli_train(config_file, tmp_path / "killed", "--resume"))
    assert f"resumed from {newest}" in output
    final = "checkpoint-32.pt"
    _assert_same_weights(
        _weights(tmp_path / "straight" / final), _weights(tmp_path / "killed" / final)
    )


@pytest.mark.slow
def test_sigterm_saves_a_resume_point_like_ctrl_c(tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config_to_dict(load_config(None, RUN))))
    process = _cli_train(config_file, tmp_path, "train.save_every_steps=0")
    deadline = time.monotonic() + 120
    while not (tmp_path / "metrics.jsonl").exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 130
    (saved,) = resume_points(tmp_path)
    assert f"interrupted: saved {saved}" in stdout


def test_an_interrupt_before_training_or_outside_it_exits_130_without_a_traceback(
    monkeypatch, capsys
):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_evaluate", interrupted)
    assert cli.main(["evaluate", "--model", "any.pt"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


@pytest.mark.slow
def test_a_truncated_checkpoint_is_detected_and_resume_uses_the_previous_one(tmp_path, capsys):
    config = load_config(None, [*RUN, "train.epochs=1"])
    train(config, tmp_path / "straight", progress=False)
    assert [p.name for p in resume_points(tmp_path / "straight")] == [
        "checkpoint-16.pt",
        "checkpoint-15.pt",
    ]
    partial = load_config(None, [*RUN, "train.epochs=1"])
    run = Trainer(partial, tmp_path / "cut", progress=False, resume=False)
    for batch in list(run._train_batches(0))[:9]:
        run._train_step(run.model, batch)
        run.batch_index += 1
        run.step += 1
        if run.step % 3 == 0:
            run._save_resume_point()
    newest = tmp_path / "cut" / "checkpoint-9.pt"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="checkpoint-9.pt: truncated or not a checkpoint"):
        load_checkpoint(newest)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    corrupt = tmp_path / "cut" / "flipped.pt"
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(InputError, match="flipped.pt: corrupt checkpoint"):
        load_checkpoint(corrupt)
    result = train(config, tmp_path / "cut", progress=True, resume=True)
    output = capsys.readouterr()
    assert "checkpoint-9.pt: truncated" in output.err and "falling back" in output.err
    assert f"resumed from {tmp_path / 'cut' / 'checkpoint-6.pt'}" in output.out
    assert not result.interrupted
    _assert_same_weights(
        _weights(tmp_path / "straight" / "checkpoint-16.pt"),
        _weights(tmp_path / "cut" / "checkpoint-16.pt"),
    )


def test_old_resume_points_are_pruned_to_keep_last(tmp_path):
    config = load_config(None, [*RUN, "train.epochs=1", "train.keep_last=3"])
    train(config, tmp_path, progress=False)
    assert [p.name for p in resume_points(tmp_path)] == [
        "checkpoint-16.pt",
        "checkpoint-15.pt",
        "checkpoint-12.pt",
    ]


def _poison_one_training_example(monkeypatch, index: int = 5) -> None:
    generate = ToySequences._generate

    def with_nan(self, count, seed):
        examples = generate(self, count, seed)
        if count == self.config.num_train:
            frames, text = examples[index]
            examples[index] = (frames.clone().fill_(float("nan")), text)
        return examples

    monkeypatch.setattr(ToySequences, "_generate", with_nan)


@pytest.mark.slow
def test_a_nan_batch_is_skipped_and_logged_and_the_run_finishes(tmp_path, monkeypatch):
    _poison_one_training_example(monkeypatch)
    result = train(load_config(None, RUN), tmp_path, progress=False)
    assert not result.interrupted
    skipped = [r for r in _metrics(tmp_path) if "skipped" in r]
    assert [r["skipped"] for r in skipped] == ["non-finite loss"] * 2  # once per epoch
    weights = _weights(tmp_path / "checkpoint-32.pt")
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


def test_a_non_finite_gradient_is_skipped(tmp_path, monkeypatch):
    original = Trainer._train_step
    calls = []

    def blow_up_second_step(self, network, batch):
        calls.append(1)
        handle = None
        if len(calls) == 2:
            weight = self.model.generator.projection.weight
            handle = weight.register_hook(lambda grad: grad * float("inf"))
        before = {k: v.clone() for k, v in self.model.state_dict().items()}
        result = original(self, network, batch)
        if handle is not None:
            handle.remove()
            _assert_same_weights(before, self.model.state_dict())
        return result

    monkeypatch.setattr(Trainer, "_train_step", blow_up_second_step)
    train(load_config(None, [*RUN, "train.epochs=1"]), tmp_path, progress=False)
    skipped = [r for r in _metrics(tmp_path) if "skipped" in r]
    assert skipped == [{"step": 2, "epoch": 0, "skipped": "non-finite gradient"}]


def test_too_many_bad_batches_in_a_row_stop_the_run_with_a_clear_error(tmp_path, monkeypatch):
    generate = ToySequences._generate

    def all_nan(self, count, seed):
        examples = generate(self, count, seed)
        if count != self.config.num_train:
            return examples
        return [(frames.clone().fill_(float("nan")), text) for frames, text in examples]

    monkeypatch.setattr(ToySequences, "_generate", all_nan)
    config = load_config(None, [*RUN, "train.max_bad_batches=4"])
    with pytest.raises(TrainingError, match="4 batches in a row had a non-finite loss"):
        train(config, tmp_path, progress=False)


def test_dropped_items_and_throughput_are_logged(tmp_path, monkeypatch):
    texts = ToySequences.texts

    def texts_dropping_two(self, split):
        if split == "train" and not self.dropped:
            self.dropped.append(Dropped("train", 2, "over the size limit"))
        return texts(self, split)

    monkeypatch.setattr(ToySequences, "texts", texts_dropping_two)
    train(
        load_config(None, [*RUN, "train.epochs=1", "train.log_every=4"]), tmp_path, progress=False
    )
    records = _metrics(tmp_path)
    assert records[0]["event"] == "start" and records[0]["batches_per_epoch"] == [16]
    assert records[0]["effective_batch_size"] == 4
    assert {"event": "dropped", "step": 0, "split": "train", "count": 2} | {
        "reason": "over the size limit"
    } in records
    steps = [r for r in records if "samples_per_s" in r]
    assert [r["step"] for r in steps] == [4, 8, 12, 16]
    assert all(r["samples_per_s"] > 0 for r in steps)
