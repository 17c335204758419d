"""Data-parallel training under ``torchrun`` (gloo on the CPU)."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import SEQUENCES, SMALL

from multimodal_s2s.checkpoint import load_checkpoint
from multimodal_s2s.config import config_to_dict, load_config
from multimodal_s2s.training.train import train

# 32 items: 4 global batches of 8 items per epoch; 6 dev items in eval batches of 4.
CTC = ["loss.ctc_weight=0.3", "encoder.ctc_layer=0"]  # the CTC head runs outside DDP forward
TASK = SEQUENCES + SMALL + CTC + ["data.num_train=32", "data.num_dev=6", "train.device=cpu"]


def _metrics(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    single = tmp_path / "single"
    train(load_config(None, [*TASK, "train.batch_size=8", "train.epochs=1"]), single, False)
    config_file = tmp_path / "config.yaml"
    config = load_config(None, [*TASK, "train.batch_size=4", "train.epochs=1"])
    config_file.write_text(yaml.safe_dump(config_to_dict(config)))
    parallel = tmp_path / "parallel"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command = [*launch, "-m", "multimodal_s2s.cli", "train", str(config_file)]
    finished = subprocess.run(
        [*command, "--out", str(parallel)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.count("2 processes (gloo): batch_size 4 per process") == 1
    assert "at most 8 items per step" in finished.stdout
    assert finished.stdout.count("best checkpoint:") == 1

    expected = load_checkpoint(single / "checkpoint-4.pt")["model"]
    actual = load_checkpoint(parallel / "checkpoint-4.pt")["model"]
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-5, msg=key)

    records = _metrics(parallel)
    starts = [r for r in records if r.get("event") == "start"]
    assert len(starts) == 1 and starts[0]["processes"] == 2
    assert starts[0]["batches_per_epoch"] == [4, 4] and starts[0]["effective_batch_size"] == 8
    epochs = [r for r in records if "dev_wer" in r]
    expected_epochs = [r for r in _metrics(single) if "dev_wer" in r]
    assert [r["dev_items"] for r in epochs] == [6]
    assert [r["dev_wer"] for r in epochs] == [r["dev_wer"] for r in expected_epochs]
    for ours, theirs in zip(epochs, expected_epochs, strict=True):
        assert abs(ours["dev_loss"] - theirs["dev_loss"]) < 1e-5
