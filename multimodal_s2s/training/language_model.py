"""``ms2s train-lm``: an LSTM language model trained on text, for shallow fusion.

The run folder holds ``lm.pt`` (written atomically after every epoch: config, tokenizer,
weights, optimizer state and epoch; ``--resume`` continues from it), ``best.pt`` (the epoch
of lowest dev perplexity, when there is dev text) and ``metrics.jsonl``. Checkpoints hold
plain data and tensors only and are read with ``torch.load(weights_only=True)``. Each epoch
draws its batch order and dropout from ``train.seed + epoch``, so a resumed run reaches the
weights of an uninterrupted one.
"""

import json
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from multimodal_s2s.atomic_file import atomic_write, check_writable
from multimodal_s2s.checkpoint import load_checkpoint
from multimodal_s2s.config import TokenizerConfig, config_from_dict, config_to_dict
from multimodal_s2s.data.manifest import read_manifest
from multimodal_s2s.devices import resolve_device
from multimodal_s2s.errors import InputError
from multimodal_s2s.models.language_model import LanguageModelConfig, LSTMLanguageModel
from multimodal_s2s.models.loss import token_loss
from multimodal_s2s.search.fusion import (
    LM_FORMAT,
    language_model_from_payload,
    read_language_model_file,
)
from multimodal_s2s.text import PAD_ID, Tokenizer, teacher_forcing_pair
from multimodal_s2s.training.resume import check_same_config


@dataclass
class LanguageModelTextConfig:
    """``train`` and ``dev`` (optional): a text file of one sentence a line, or a JSON Lines
    manifest (``.jsonl``) whose ``text_key`` fields are the sentences. ``vocabulary_from``: a
    checkpoint (a speech or caption model's, or another LM's) whose tokenizer the LM takes
    instead of building one from ``train``, so that it fuses with that model."""

    train: str = ""
    dev: str = ""
    text_key: str = "text"
    vocabulary_from: str = ""


@dataclass
class LanguageModelTrainConfig:
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    seed: int = 0
    device: str = "auto"


@dataclass
class LanguageModelRunConfig:
    """The config of ``ms2s train-lm`` (YAML sections ``model``, ``tokenizer``, ``data``,
    ``train``; the tokenizer section is the seq2seq models')."""

    model: LanguageModelConfig = field(default_factory=LanguageModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: LanguageModelTextConfig = field(default_factory=LanguageModelTextConfig)
    train: LanguageModelTrainConfig = field(default_factory=LanguageModelTrainConfig)


@dataclass
class LanguageModelResult:
    checkpoint: Path
    dev_perplexity: float  # of the last epoch; nan without dev text


def read_texts(path: str | Path, text_key: str = "text") -> list[str]:
    """The non-blank sentences of a text file, or the ``text_key`` fields of a ``.jsonl``
    manifest. Raises ``InputError`` naming a missing file."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return [r[text_key] for r in read_manifest(path, None, text_key) if r[text_key].strip()]
    if not path.is_file():
        raise InputError(f"{path}: text file not found")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def train_language_model(
    config: LanguageModelRunConfig, out_dir: Path, resume: bool = False, progress: bool = True
) -> LanguageModelResult:
    """Train (or with ``resume`` continue) the LM ``config`` describes in ``out_dir``."""
    check_writable(out_dir, folder=True)
    if not config.data.train:
        raise InputError("data.train: give the training text (a text file or a .jsonl manifest)")
    path = out_dir / "lm.pt"
    if path.exists() and not resume:
        raise InputError(
            f"{out_dir}: already holds a language model run (lm.pt); pass --resume to "
            "continue it, or choose another output folder"
        )
    device = resolve_device(config.train.device)
    texts = read_texts(config.data.train, config.data.text_key)
    if not texts:
        raise InputError(f"data.train: {config.data.train} holds no sentence")
    dev_texts = read_texts(config.data.dev, config.data.text_key) if config.data.dev else []
    model, tokenizer, saved = _start(config, path if resume else None, texts)
    model.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.train.learning_rate, weight_decay=config.train.weight_decay
    )
    start, best = 0, math.inf
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        start, best = saved["epoch"], saved["best_dev_perplexity"]
        _print(progress, f"resumed from {path} (epoch {start + 1})")
    train_ids = [tokenizer.encode(text) for text in texts]
    dev_ids = [tokenizer.encode(text) for text in dev_texts]
    out_dir.mkdir(parents=True, exist_ok=True)
    perplexity = math.nan
    for epoch in range(start, config.train.epochs):
        _train_epoch(model, optimizer, train_ids, config.train, epoch, device, progress)
        perplexity = evaluate_perplexity(model, dev_ids, config.train.batch_size, device)
        record = {"epoch": epoch + 1, **({"dev_perplexity": perplexity} if dev_ids else {})}
        with open(out_dir / "metrics.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")
        if dev_ids:
            _print(progress, f"epoch {epoch + 1}: dev perplexity {perplexity:.3f}")
        improved = dev_ids and perplexity < best
        best = min(best, perplexity) if dev_ids else best
        state = {"optimizer": optimizer.state_dict(), "epoch": epoch + 1}
        save_language_model(path, config, tokenizer, model, **state, best_dev_perplexity=best)
        if improved:
            shutil.copyfile(path, out_dir / ".best.pt.tmp")
            (out_dir / ".best.pt.tmp").replace(out_dir / "best.pt")
    return LanguageModelResult(path, perplexity)


def _start(
    config: LanguageModelRunConfig, resume_from: Path | None, texts: list[str]
) -> tuple[LSTMLanguageModel, Tokenizer, dict[str, Any] | None]:
    """The model and tokenizer to train: those of ``resume_from`` when it exists (with its
    payload, whose config must match), else new ones."""
    if resume_from is not None and resume_from.exists():
        payload = read_language_model_file(resume_from)
        saved = config_to_dict(config_from_dict(payload["config"], LanguageModelRunConfig))
        check_same_config(saved, config_to_dict(config), resume_from)
        model, tokenizer, _ = language_model_from_payload(payload)
        return model, tokenizer, payload
    tokenizer = _tokenizer(config, texts)
    torch.manual_seed(config.train.seed)
    return LSTMLanguageModel(config.model, len(tokenizer)), tokenizer, None


def save_language_model(
    path: Path,
    config: LanguageModelRunConfig,
    tokenizer: Tokenizer,
    model: LSTMLanguageModel,
    **state: Any,
) -> None:
    """Write an LM checkpoint atomically: ``config``, tokenizer and weights (all that
    ``search.lm`` needs) and the training ``state`` (optimizer, epoch, ...), plain data and
    tensors only."""
    payload = {
        "format": LM_FORMAT,
        "config": config_to_dict(config),
        "tokenizer": tokenizer.state_dict(),
        "model": model.state_dict(),
        **state,
    }
    with atomic_write(path, binary=True) as file:
        torch.save(payload, file)


def _tokenizer(config: LanguageModelRunConfig, texts: list[str]) -> Tokenizer:
    """The tokenizer of ``data.vocabulary_from``'s checkpoint, or one built from ``texts``."""
    source = config.data.vocabulary_from
    if source:
        try:
            payload = read_language_model_file(source)
        except InputError:
            payload = load_checkpoint(source)  # a speech or caption model's
        return Tokenizer.from_state_dict(payload["tokenizer"])
    settings = config.tokenizer
    return Tokenizer.build(texts, settings.kind, settings.min_count, settings.vocab_size)


def _train_epoch(
    model: LSTMLanguageModel,
    optimizer: torch.optim.Optimizer,
    ids: list[list[int]],
    train: LanguageModelTrainConfig,
    epoch: int,
    device: torch.device,
    progress: bool,
) -> None:
    """One pass over ``ids`` in the order (and with the dropout) of ``seed + epoch``."""
    torch.manual_seed(train.seed + epoch)
    model.train()
    order = torch.randperm(len(ids)).tolist()
    starts = range(0, len(order), train.batch_size)
    bar = tqdm(
        starts,
        desc=f"epoch {epoch + 1}/{train.epochs}",
        disable=None if progress else True,
        dynamic_ncols=True,
    )
    for first in bar:
        inputs, targets = teacher_forcing_pair(
            [ids[i] for i in order[first : first + train.batch_size]]
        )
        inputs, targets = inputs.to(device), targets.to(device)
        loss = token_loss(model(inputs), targets) / (targets != PAD_ID).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        optimizer.step()
        bar.set_postfix(perplexity=f"{math.exp(min(loss.item(), 50.0)):.2f}")
    bar.close()


@torch.no_grad()
def evaluate_perplexity(
    model: LSTMLanguageModel, ids: list[list[int]], batch_size: int, device: torch.device
) -> float:
    """``exp`` of the mean negative log-likelihood per token (EOS counted) of ``ids``; nan
    when there are none."""
    if not ids:
        return math.nan
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    for first in range(0, len(ids), batch_size):
        inputs, targets = teacher_forcing_pair(ids[first : first + batch_size])
        inputs, targets = inputs.to(device), targets.to(device)
        total += float(token_loss(model(inputs), targets))
        tokens += int((targets != PAD_ID).sum())
    model.train(was_training)
    return math.exp(total / tokens)


def _print(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stdout)
