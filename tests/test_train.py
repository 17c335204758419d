import importlib.metadata
import importlib.util
import io
import json
import math
import sys

import pytest
import torch
from conftest import IMAGES, SEQUENCES, SMALL, end_epochs

from multimodal_s2s.checkpoint import load_checkpoint, load_model, resume_points, save_checkpoint
from multimodal_s2s.cli import main
from multimodal_s2s.config import ConfigError, load_config
from multimodal_s2s.data.sources import build_source
from multimodal_s2s.data.toy import ToySequences
from multimodal_s2s.errors import InputError
from multimodal_s2s.models.loss import doubly_stochastic_penalty, token_loss
from multimodal_s2s.text import EOS_ID, PAD_ID
from multimodal_s2s.training.evaluate import evaluate_model
from multimodal_s2s.training.train import Trainer, train


@pytest.mark.slow
@pytest.mark.parametrize(("task", "epochs"), [(SEQUENCES, 120), (IMAGES, 60)])
def test_tiny_model_overfits_eight_pairs(tmp_path, task, epochs):
    overrides = task + SMALL + ["data.num_train=8", "data.num_dev=2", f"train.epochs={epochs}"]
    config = load_config(None, overrides)
    result = train(config, tmp_path, progress=False)
    model, tokenizer, saved = load_model(resume_points(tmp_path)[0])
    scores = evaluate_model(model, tokenizer, build_source(saved.data), "train", saved, "cpu")
    assert scores.metrics["wer"] == 0.0 and scores.metrics["items"] == 8
    assert all(r["ref"] == r["hyp"] for r in scores.records)
    assert result.best_checkpoint.exists()


def test_resume_gives_the_same_next_step_loss(tmp_path):
    overrides = (
        SEQUENCES
        + SMALL
        + [
            "data.num_train=32",
            "data.num_dev=4",
            "train.epochs=2",
            "decoder.dropout=0.3",
            "decoder.scheduled_sampling=0.3",
        ]
    )
    config = load_config(None, overrides)

    def run_in(folder, stop_after, resume=False):
        run = Trainer(config, folder, progress=False, resume=resume)
        batches = run._train_batches(run.epoch, start=run.batch_index)
        losses = []
        for batch in list(batches)[:stop_after]:
            losses.append(run._train_step(run.model, batch)[0])
            run.batch_index += 1
            run.step += 1
        return run, losses

    straight, losses = run_in(tmp_path / "a", 3)
    interrupted, _ = run_in(tmp_path / "b", 2)
    interrupted._save_resume_point()
    resumed, resumed_losses = run_in(tmp_path / "b", 1, resume=True)
    assert resumed.batch_index == 3 and resumed.step == 3
    assert resumed_losses[0] == pytest.approx(losses[2], abs=1e-6)


NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("task", [SEQUENCES, IMAGES])
@pytest.mark.parametrize(
    ("precision", "dtype"),
    [
        pytest.param(["train.device=cpu", "train.cpu_bfloat16=false"], torch.float32, id="cpu"),
        pytest.param(
            ["train.device=cpu", "train.cpu_bfloat16=true"], torch.bfloat16, id="cpu-bf16"
        ),
        pytest.param(
            ["train.device=cuda", "train.amp=false"], torch.float32, marks=NEEDS_CUDA, id="cuda"
        ),
        pytest.param(
            ["train.device=cuda", "train.amp=true"], torch.float16, marks=NEEDS_CUDA, id="cuda-amp"
        ),
    ],
)
def test_training_step_autocasts_as_configured(tmp_path, task, precision, dtype):
    overrides = ["data.num_train=8", "data.num_dev=2", *precision]
    run = Trainer(
        load_config(None, task + SMALL + overrides), tmp_path, progress=False, resume=False
    )
    memory_dtypes = []
    run.model.encoder.register_forward_hook(
        lambda module, args, output: memory_dtypes.append(output.memory.dtype)
    )
    before = [p.detach().clone() for p in run.model.parameters()]
    loss, items = run._train_step(run.model, next(iter(run._train_batches(0))))
    assert memory_dtypes == [dtype] and math.isfinite(loss) and items == 8
    assert all(p.dtype == torch.float32 for p in run.model.parameters())
    assert any(not torch.equal(p, b) for p, b in zip(run.model.parameters(), before, strict=True))


def test_training_writes_checkpoints_that_rebuild_the_model(tmp_path):
    overrides = (
        SEQUENCES
        + SMALL
        + [
            "data.num_train=16",
            "data.num_dev=4",
            "train.epochs=2",
            "train.average_best=true",
            "train.keep_best=2",
        ]
    )
    train(load_config(None, overrides), tmp_path, progress=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    with_tensorboard = ["tensorboard"] if importlib.util.find_spec("tensorboard") else []
    assert names == [
        "averaged.pt",
        "best.pt",
        "checkpoint-2.pt",
        "checkpoint-4.pt",
        "epoch-1.pt",
        "epoch-2.pt",
        "metrics.jsonl",
        *with_tensorboard,
    ]
    payload = load_checkpoint(tmp_path / "checkpoint-4.pt")
    assert payload["position"] == {"epoch": 2, "batch": 0, "step": 4}
    model, tokenizer, config = load_model(tmp_path / "best.pt")
    assert (
        config.encoder.hidden_dim == 32
        and len(tokenizer) == model.generator.projection.out_features
    )
    averaged = load_checkpoint(tmp_path / "averaged.pt")["model"]
    epochs = [load_checkpoint(tmp_path / f"epoch-{e}.pt")["model"] for e in (1, 2)]
    key = "decoder.output_projection.weight"
    torch.testing.assert_close(averaged[key], (epochs[0][key] + epochs[1][key]) / 2)


def test_resuming_with_another_config_or_vocabulary_is_refused(tmp_path, monkeypatch):
    overrides = SEQUENCES + SMALL + ["data.num_train=8", "data.num_dev=2", "train.epochs=1"]
    train(load_config(None, overrides), tmp_path, progress=False)
    changed = load_config(None, overrides + ["decoder.hidden_dim=32"])
    with pytest.raises(InputError, match="decoder.hidden_dim is 64 in the checkpoint and 32 now"):
        train(changed, tmp_path, progress=False, resume=True)
    longer = load_config(
        None, overrides + ["train.epochs=2", "train.log_every=5", "search.ctc_weight=0.5"]
    )
    assert not train(longer, tmp_path, progress=False, resume=True).interrupted
    original_texts = ToySequences.texts
    monkeypatch.setattr(
        ToySequences, "texts", lambda self, split: original_texts(self, split) + ["q"]
    )
    with pytest.raises(InputError, match="vocabulary differs .*new in the data: 'q'"):
        train(longer, tmp_path, progress=False, resume=True)


def test_init_from_starts_a_new_run_from_another_runs_weights_and_vocabulary(tmp_path, monkeypatch):
    overrides = SEQUENCES + SMALL + ["data.num_train=8", "data.num_dev=2", "train.epochs=1"]
    first = train(load_config(None, overrides), tmp_path / "a", progress=False)
    start, start_tokenizer, _ = load_model(first.best_checkpoint)
    init = [f"train.init_from={first.best_checkpoint}", "data.seed=7"]
    run = Trainer(load_config(None, overrides + init), tmp_path / "b", progress=False, resume=False)
    assert run.tokenizer.tokens == start_tokenizer.tokens
    started = run.model.state_dict()
    assert all(torch.equal(started[k], v) for k, v in start.state_dict().items())
    fresh = Trainer(load_config(None, overrides), tmp_path / "c", progress=False, resume=False)
    assert not all(torch.equal(fresh.model.state_dict()[k], v) for k, v in started.items())

    wider = load_config(None, overrides + init + ["decoder.hidden_dim=32"])
    with pytest.raises(InputError, match="its weights do not fit this config"):
        Trainer(wider, tmp_path / "d", progress=False, resume=False)
    original_texts = ToySequences.texts
    monkeypatch.setattr(
        ToySequences, "texts", lambda self, split: original_texts(self, split) + ["q"]
    )
    with pytest.raises(InputError, match=r"holds 1 units its vocabulary lacks \('q'\)"):
        Trainer(load_config(None, overrides + init), tmp_path / "e", progress=False, resume=False)


def test_a_folder_holding_a_run_needs_resume(tmp_path):
    overrides = SEQUENCES + SMALL + ["data.num_train=8", "data.num_dev=2", "train.epochs=1"]
    train(load_config(None, overrides), tmp_path, progress=False)
    with pytest.raises(InputError, match="already holds a training run .*pass --resume"):
        train(load_config(None, overrides), tmp_path, progress=False)


def test_a_missing_training_manifest_is_named_before_the_run_folder_is_made(tmp_path):
    config = load_config(None, ["data.name=speech", f"data.train={tmp_path / 'missing.jsonl'}"])
    with pytest.raises(InputError, match="missing.jsonl: manifest not found"):
        train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(InputError, match="nope.pt: checkpoint not found"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(InputError, match=f"{tmp_path}: is a folder, not a checkpoint file"):
        load_model(tmp_path)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"garbage")
    with pytest.raises(InputError, match="corrupt.pt: truncated or not a checkpoint"):
        load_model(corrupt)
    overrides = SEQUENCES + SMALL + ["data.num_train=8", "data.num_dev=2", "train.epochs=1"]
    train(load_config(None, overrides), tmp_path / "run", progress=False)
    payload = load_checkpoint(tmp_path / "run" / "best.pt")
    hidden_dim = payload["config"]["decoder"]["hidden_dim"]
    payload["config"]["decoder"]["hidden_dim"] = 48
    save_checkpoint(payload, tmp_path / "mismatch.pt")
    with pytest.raises(InputError, match="mismatch.pt: weights do not match the saved config"):
        load_model(tmp_path / "mismatch.pt")
    payload["config"]["decoder"]["hidden_dim"] = hidden_dim
    payload["config"]["train"].update(num_workers=2, max_frames=None)  # keys of older versions
    save_checkpoint(payload, tmp_path / "older.pt")
    load_model(tmp_path / "older.pt")
    with pytest.raises(ConfigError, match="unknown config key 'train.num_workers'"):
        load_config(None, ["train.num_workers=2"])


def test_cli_reports_bad_config_keys_in_one_line(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("encoder: {name: pblstm, hidden: 3}\n")
    assert main(["train", str(config), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "unknown config key 'encoder.hidden'" in error


def test_cli_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == "ms2s " + importlib.metadata.version("multimodal_s2s")


def test_token_loss_ignores_padding_and_smooths():
    log_probs = torch.log_softmax(torch.randn(2, 3, 5), dim=-1)
    targets = torch.tensor([[4, EOS_ID, PAD_ID], [1, 3, EOS_ID]])
    nll = -sum(log_probs[b, t, targets[b, t]] for b, t in [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)])
    assert token_loss(log_probs, targets).item() == pytest.approx(float(nll), rel=1e-6)
    uniform = -sum(log_probs[b, t].mean() for b, t in [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)])
    assert token_loss(log_probs, targets, 0.1).item() == pytest.approx(
        float(0.9 * nll + 0.1 * uniform), rel=1e-6
    )


def test_doubly_stochastic_penalty_counts_valid_steps_and_positions():
    weights = torch.tensor([[[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    targets = torch.tensor([[5, EOS_ID, PAD_ID]])
    penalty = doubly_stochastic_penalty(weights, targets, torch.tensor([2]))
    assert penalty.item() == pytest.approx((1 - 1.5) ** 2 + (1 - 0.5) ** 2)


def test_tied_generator_shares_the_embedding_matrix():
    config = load_config(None, ["generator.tie_weights=true", "decoder.embedding_dim=24"])
    from multimodal_s2s.models.model import build_model

    model = build_model(config, 17)
    assert model.decoder.output_dim == 24
    assert model.generator.projection.weight is model.decoder.embedding.weight
    untied = build_model(load_config(None, ["decoder.embedding_dim=24"]), 17)
    assert untied.generator.projection.weight.shape == (17, untied.decoder.output_dim)
    assert untied.generator.projection.weight is not untied.decoder.embedding.weight


def test_ctrl_c_saves_the_position_and_a_rerun_resumes(tmp_path, monkeypatch):
    overrides = SEQUENCES + SMALL + ["data.num_train=32", "data.num_dev=4", "train.epochs=1"]
    config = load_config(None, overrides)
    original = Trainer._train_step
    calls = []

    def interrupt_third_step(self, network, batch):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, network, batch)

    monkeypatch.setattr(Trainer, "_train_step", interrupt_third_step)
    result = train(config, tmp_path, progress=False)
    assert result.interrupted and result.best_checkpoint == tmp_path / "checkpoint-2.pt"
    assert load_checkpoint(result.best_checkpoint)["position"] == {
        "epoch": 0,
        "batch": 2,
        "step": 2,
    }
    monkeypatch.setattr(Trainer, "_train_step", original)
    resumed = train(config, tmp_path, progress=False, resume=True)
    assert not resumed.interrupted
    final = load_checkpoint(tmp_path / "checkpoint-4.pt")
    assert final["position"] == {"epoch": 1, "batch": 0, "step": 4}


def test_bad_device_names_are_one_line_errors():
    from multimodal_s2s.devices import resolve_device

    with pytest.raises(InputError, match="device 'gpu0': not a device name"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="device 'cuda': CUDA is not available"):
            resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_evaluate_cli_takes_overrides_before_or_after_splits(tmp_path, capsys):
    overrides = SEQUENCES + SMALL + ["data.num_train=8", "data.num_dev=2", "train.epochs=1"]
    train(load_config(None, overrides), tmp_path, progress=False)
    model = str(tmp_path / "best.pt")

    def hypotheses(*args: str) -> list[str]:
        report = tmp_path / f"report{len(list(tmp_path.glob('report*')))}"
        assert main(["evaluate", "--model", model, *args, "--report", str(report)]) == 0
        return [json.loads(line)["hyp"] for line in (report / "dev.jsonl").open()]

    capped = "search.max_length=1"
    assert all(len(h) <= 1 for h in hypotheses("--splits", "dev", capped))
    assert all(len(h) <= 1 for h in hypotheses(capped, "--splits", "dev"))
    assert any(len(h) > 1 for h in hypotheses("--splits", "dev"))
    capsys.readouterr()
    late = tmp_path / "late"
    assert (
        main(["evaluate", "--model", model, "--splits", "dev", "nope", "--report", str(late)]) == 2
    )
    assert "has no split 'nope'" in capsys.readouterr().err
    assert not late.exists()  # refused before dev was decoded and its report written
    assert main(["evaluate", "--model", model, "decoder.hidden_dim=8"]) == 2
    assert "can only override data.* and search.*" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("progress", [True, False])
def test_evaluation_shows_a_progress_bar_in_a_terminal_when_asked(tmp_path, monkeypatch, progress):
    config = load_config(None, SEQUENCES + SMALL + ["data.num_train=8", "data.num_dev=4"])
    run = Trainer(config, tmp_path, progress=False, resume=False)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    evaluate_model(run.model, run.tokenizer, run.data, "dev", config, run.device, progress=progress)
    assert ("evaluating dev" in terminal.getvalue()) == progress


@pytest.mark.parametrize(("select_by", "kept", "best"), [("error", [1, 3], 1), ("loss", [2, 3], 3)])
def test_epochs_are_ranked_by_the_chosen_dev_metric(tmp_path, select_by, kept, best):
    config = load_config(
        None, SEQUENCES + SMALL + ["train.keep_best=2", f"train.select_by={select_by}"]
    )
    run = Trainer(config, tmp_path, progress=False, resume=False)
    dev = [{"loss": 0.9, "wer": 0.2}, {"loss": 0.5, "wer": 0.6}, {"loss": 0.4, "wer": 0.3}]
    weights = end_epochs(run, dev)
    assert sorted(p.name for p in tmp_path.glob("epoch-*.pt")) == [f"epoch-{e}.pt" for e in kept]
    saved = load_checkpoint(tmp_path / "best.pt")["model"]["generator.projection.bias"]
    assert torch.equal(saved, weights[best - 1])


@pytest.mark.parametrize(("select_by", "named"), [("error", "dev wer"), ("loss", "dev loss")])
def test_train_cli_names_the_dev_metric_the_best_checkpoint_was_chosen_by(
    tmp_path, capsys, select_by, named
):
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    overrides = SEQUENCES + SMALL + ["data.num_train=8", "data.num_dev=2", "train.epochs=1"]
    command = ["train", str(config), *overrides, f"train.select_by={select_by}"]
    assert main([*command, "--out", str(tmp_path / "run")]) == 0
    best = [line for line in capsys.readouterr().out.splitlines() if "best checkpoint" in line]
    assert len(best) == 1 and f"({named} " in best[0]
