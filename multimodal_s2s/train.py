"""One modality-agnostic trainer: any data source, any encoder.

A run lives in one folder: ``last.pt`` (resume point, written atomically after every epoch
and on Ctrl-C), ``epoch-N.pt`` for the best ``keep_best`` epochs by the dev error rate,
``best.pt``, optionally ``averaged.pt`` (mean weights of the kept epochs), and
``metrics.jsonl``. Re-running the same command resumes exactly where it stopped.
"""

import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tqdm import tqdm

from multimodal_s2s.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from multimodal_s2s.config import Config, config_to_dict
from multimodal_s2s.ctc import joint_ctc_attention_loss
from multimodal_s2s.data.base import DataSource, SourceBatch
from multimodal_s2s.data.text import Tokenizer, teacher_forcing_pair
from multimodal_s2s.decode import decode_batch
from multimodal_s2s.errors import InputError
from multimodal_s2s.loss import doubly_stochastic_penalty, token_loss
from multimodal_s2s.model import Seq2Seq, build_model
from multimodal_s2s.sources import SOURCES


@dataclass
class TrainResult:
    best_checkpoint: Path
    best_error_rate: float
    interrupted: bool


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as given.

    Raises:
        InputError: ``name`` is not a device name, or names CUDA where there is none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InputError(f"device {name!r}: not a device name (cpu, cuda, auto)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r}: CUDA is not available")
    return device


def build_source(config: Config) -> DataSource:
    source_class, _ = SOURCES[config.data.name]
    return source_class(config.data)


def train(config: Config, out_dir: Path, progress: bool = True) -> TrainResult:
    """Train (or resume) the model ``config`` describes; returns the best checkpoint."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(config, out_dir, progress)
    return run.fit()


class _Run:
    def __init__(self, config: Config, out_dir: Path, progress: bool) -> None:
        self.config = config
        self.out_dir = out_dir
        self.progress = progress
        self.device = resolve_device(config.train.device)
        self.data = build_source(config)
        last = out_dir / "last.pt"
        resume = load_checkpoint(last) if last.exists() else None
        if resume is not None:
            _check_same_config(resume["config"], config_to_dict(config), last)
            self.model, self.tokenizer, _ = model_from_checkpoint(resume, last)
        else:
            _seed_everything(config.train.seed)
            self.tokenizer = Tokenizer.build(
                self.data.texts("train"), config.tokenizer.kind, config.tokenizer.min_count
            )
            self.model = build_model(config, len(self.tokenizer))
            self.data.fit_frontend(self.model.frontend)
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=config.train.learning_rate,
            weight_decay=config.train.weight_decay,
        )
        self.steps_per_epoch = len(self._train_batches(epoch=0))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self._amp)
        self.epoch, self.batch_index, self.step, self.kept = 0, 0, 0, []
        if resume is not None:
            self._restore(resume)
        self.tensorboard = _tensorboard_writer(out_dir / "tensorboard")

    @property
    def _amp(self) -> bool:
        return self.config.train.amp and self.device.type == "cuda"

    def _lr_factor(self, step: int) -> float:
        """Linear warmup to 1, then cosine decay to ``final_lr_ratio`` at the last step."""
        train = self.config.train
        if step < train.warmup_steps:
            return (step + 1) / train.warmup_steps
        total = max(1, train.epochs * self.steps_per_epoch - train.warmup_steps)
        progress = min(1.0, (step - train.warmup_steps) / total)
        return train.final_lr_ratio + (1 - train.final_lr_ratio) * 0.5 * (
            1 + math.cos(math.pi * progress)
        )

    def _train_batches(self, epoch: int, start: int = 0):
        train = self.config.train
        return self.data.batches(
            "train",
            train=True,
            batch_size=train.batch_size,
            epoch=epoch,
            seed=train.seed,
            start=start,
        )

    def fit(self) -> TrainResult:
        try:
            while self.epoch < self.config.train.epochs:
                self._train_epoch()
                self._end_epoch(self._evaluate("dev"))
        except KeyboardInterrupt:
            self._save(self.out_dir / "last.pt")
            print(f"interrupted: saved {self.out_dir / 'last.pt'}; run again to resume")
            return TrainResult(self.out_dir / "last.pt", float("nan"), True)
        if self.config.train.average_best and self.kept:
            self._save_average()
        best_metric = min(self.kept)[0] if self.kept else float("nan")
        return TrainResult(self.out_dir / "best.pt", best_metric, False)

    def _train_epoch(self) -> None:
        config = self.config.train
        encoder = self.model.encoder
        if hasattr(encoder, "set_frozen") and config.freeze_encoder_epochs > 0:
            encoder.set_frozen(self.epoch < config.freeze_encoder_epochs)
        self.model.train()
        batches = self._train_batches(self.epoch, start=self.batch_index)
        bar = tqdm(
            batches,
            desc=f"epoch {self.epoch + 1}/{config.epochs}",
            initial=self.batch_index,
            total=self.batch_index + len(batches),
            disable=None if self.progress else True,
            dynamic_ncols=True,
        )
        started, utterances = time.perf_counter(), 0
        for batch in bar:
            loss = self._train_step(batch)
            self.batch_index += 1
            self.step += 1
            utterances += len(batch.texts)
            rate = utterances / max(1e-9, time.perf_counter() - started)
            bar.set_postfix(loss=f"{loss:.3f}", utt_s=f"{rate:.1f}")
            if self.step % config.log_every == 0:
                self._log(
                    {
                        "step": self.step,
                        "epoch": self.epoch,
                        "loss": loss,
                        "lr": self.scheduler.get_last_lr()[0],
                        "utterances_per_s": rate,
                    }
                )
        bar.close()

    def _train_step(self, batch: SourceBatch) -> float:
        """One optimiser step; returns the loss per target token."""
        inputs, targets = teacher_forcing_pair([self.tokenizer.encode(t) for t in batch.texts])
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        sources, lengths = _to_device(batch, self.device)
        with torch.autocast(self.device.type, enabled=self._amp):
            log_probs, weights, encoded = self.model(sources, lengths, inputs)
            tokens = int((targets != 0).sum())
            loss = token_loss(log_probs.float(), targets, self.config.loss.label_smoothing)
            if self.config.loss.ctc_weight:
                weight = self.config.loss.ctc_weight
                loss = joint_ctc_attention_loss(self.model, encoded, targets, loss, weight)
            if self.config.loss.attention_penalty:
                penalty = doubly_stochastic_penalty(weights.float(), targets, encoded.lengths)
                loss = loss + self.config.loss.attention_penalty * penalty
            loss = loss / tokens
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.detach())

    def _evaluate(self, split: str) -> dict[str, float]:
        """Dev loss (per token, no smoothing) and greedy-decoding word error rate."""
        return evaluate_model(
            self.model, self.tokenizer, self.data, split, self.config, self.device, beam=False
        ).metrics

    def _end_epoch(self, metrics: dict[str, float]) -> None:
        self.epoch += 1
        self.batch_index = 0
        self._log(
            {"epoch": self.epoch, "step": self.step, **{f"dev_{k}": v for k, v in metrics.items()}}
        )
        if self.progress:
            print(
                f"epoch {self.epoch}: dev loss {metrics['loss']:.4f}  dev WER {metrics['wer']:.4f}"
            )
        path = self.out_dir / f"epoch-{self.epoch}.pt"
        self.kept.append((metrics["wer"], self.epoch))
        self.kept.sort()
        dropped = self.kept[self.config.train.keep_best :]
        self.kept = self.kept[: self.config.train.keep_best]
        if (metrics["wer"], self.epoch) in self.kept:
            self._save(path)
        if self.kept[0][1] == self.epoch:
            shutil.copyfile(path, self.out_dir / ".best.pt.tmp")
            (self.out_dir / ".best.pt.tmp").replace(self.out_dir / "best.pt")
        self._save(self.out_dir / "last.pt")
        for _, epoch in dropped:
            (self.out_dir / f"epoch-{epoch}.pt").unlink(missing_ok=True)

    def _save_average(self) -> None:
        """``averaged.pt``: the element-wise mean of the kept epochs' weights."""
        states = [load_checkpoint(self.out_dir / f"epoch-{e}.pt")["model"] for _, e in self.kept]
        averaged = {
            key: (sum(s[key].double() for s in states) / len(states)).to(value.dtype)
            if value.is_floating_point()
            else value
            for key, value in states[0].items()
        }
        save_checkpoint({**self._payload(), "model": averaged}, self.out_dir / "averaged.pt")

    def _payload(self) -> dict[str, Any]:
        return {
            "config": config_to_dict(self.config),
            "tokenizer": self.tokenizer.state_dict(),
            "model": self.model.state_dict(),
        }

    def _save(self, path: Path) -> None:
        save_checkpoint(
            {
                **self._payload(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "position": {"epoch": self.epoch, "batch": self.batch_index, "step": self.step},
                "kept": self.kept,
                "rng": _rng_state(),
            },
            path,
        )

    def _restore(self, payload: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        position = payload["position"]
        self.epoch, self.batch_index, self.step = (
            position["epoch"],
            position["batch"],
            position["step"],
        )
        self.kept = [tuple(k) for k in payload["kept"]]
        _set_rng_state(payload["rng"])

    def _log(self, record: dict[str, Any]) -> None:
        """Append to ``metrics.jsonl``, and to TensorBoard when it is installed."""
        with open(self.out_dir / "metrics.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key, value in record.items():
                if key not in ("step", "epoch"):
                    self.tensorboard.add_scalar(key, value, record["step"])
            self.tensorboard.flush()


class Evaluation(NamedTuple):
    """Corpus metrics of one split and one record per item (key, ref, hyp, score, ...)."""

    metrics: dict[str, float]
    records: list[dict[str, Any]]


@torch.no_grad()
def evaluate_model(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    data: DataSource,
    split: str,
    config: Config,
    device: torch.device,
    beam: bool = True,
) -> Evaluation:
    """Decode one split and score it.

    Metrics: ``loss`` per token (teacher forcing, no smoothing), ``decode_seconds`` (time in
    search, including encoding), ``items``, and the data source's ``score`` (``wer`` first).
    """
    was_training = model.training
    model.eval()
    total_loss, total_tokens, decode_seconds, records = 0.0, 0, 0.0, []
    for batch in data.batches(split, train=False, batch_size=config.train.batch_size):
        sources, lengths = _to_device(batch, device)
        inputs, targets = teacher_forcing_pair([tokenizer.encode(t) for t in batch.texts])
        log_probs, _, _ = model(sources, lengths, inputs.to(device))
        total_loss += float(token_loss(log_probs, targets.to(device)))
        total_tokens += int((targets != 0).sum())
        started = time.perf_counter()
        decoded = decode_batch(model, tokenizer, sources, lengths, config.search, beam=beam)
        decode_seconds += time.perf_counter() - started
        records += [
            {"key": key, "ref": ref, "hyp": d.text, "score": d.score}
            for key, ref, d in zip(batch.keys, batch.texts, decoded)
        ]
    model.train(was_training)
    refs, hyps = [r["ref"] for r in records], [r["hyp"] for r in records]
    metrics = {
        **data.score(refs, hyps),
        "loss": total_loss / max(1, total_tokens),
        "decode_seconds": decode_seconds,
        "items": len(records),
    }
    return Evaluation(metrics, data.details(records))


def _to_device(batch: SourceBatch, device: torch.device):
    lengths = batch.lengths.to(device) if batch.lengths is not None else None
    return batch.sources.to(device), lengths


def _check_same_config(saved: dict, current: dict, path: Path) -> None:
    """Refuse to resume a run whose config differs (other than a longer ``train.epochs``)."""
    saved = {**saved, "train": {**saved["train"], "epochs": current["train"]["epochs"]}}
    if saved != current:
        key = _first_difference(saved, current)
        raise InputError(
            f"{path}: this run was started with a different config ({key}); "
            "use another output folder or the same config"
        )


def _first_difference(saved: Any, current: Any, prefix: str = "") -> str:
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current)):
            if saved.get(key) != current.get(key):
                return _first_difference(saved.get(key), current.get(key), f"{prefix}{key}.")
    return prefix.rstrip(".")


def _tensorboard_writer(folder: Path):
    """A TensorBoard ``SummaryWriter`` when the ``tensorboard`` package is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
