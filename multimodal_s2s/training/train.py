"""One modality-agnostic trainer: any data source, any encoder, one process or many.

A run lives in one folder:

* ``checkpoint-<step>.pt``: resume points (model, optimizer, scheduler, AMP scaler, data
  position, every process's random number generator states), written atomically every
  ``train.save_every_steps`` optimiser steps, at the end of every epoch and on Ctrl-C; the
  newest ``train.keep_last`` are kept. ``--resume`` continues from the newest readable one
  (a truncated or corrupt file is reported and the previous one is used) and reaches the
  weights an uninterrupted run reaches. SIGTERM is handled like Ctrl-C.
* ``epoch-N.pt`` for the best ``keep_best`` epochs by the dev metric ``train.select_by``
  (greedy decoding's error rate, the teacher-forced loss, or greedy captions' CIDEr-D),
  ``best.pt``,
  optionally ``averaged.pt`` (mean weights of the kept epochs), and ``metrics.jsonl``.

Under ``torchrun`` every process trains a ``DistributedDataParallel`` replica on its shard
of each global batch (``batch_size`` per process; see ``data/batching.py``, ``shard_batches``). The
loss is normalised by the target tokens of the whole global batch, so a step equals one
single-process step on that global batch and the learning rate needs no rescaling. Rank 0
alone writes checkpoints, logs and progress bars; dev evaluation is split across ranks and
gathered.

Guards: a batch whose loss or gradient is not finite (on any rank) is skipped and logged;
``train.max_bad_batches`` of them in a row stop the run with a ``TrainingError``. Per step the
host reads one small tensor (global loss, gradient norm, items) after the backward pass, for
the guard and the progress bar; DDP overlaps the gradient all-reduce with the backward pass.
"""

import contextlib
import json
import math
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from multimodal_s2s.atomic_file import check_writable
from multimodal_s2s.checkpoint import (
    load_checkpoint,
    load_newest_resume_point,
    load_weights,
    model_from_checkpoint,
    prune_resume_points,
    resume_path,
    resume_points,
    save_checkpoint,
)
from multimodal_s2s.config import Config, config_to_dict
from multimodal_s2s.cpu import slow_bfloat16_warning
from multimodal_s2s.data.base import SourceBatch
from multimodal_s2s.data.sources import build_source
from multimodal_s2s.devices import resolve_device
from multimodal_s2s.errors import InputError, TrainingError
from multimodal_s2s.models.bag_of_words import bag_of_words_loss
from multimodal_s2s.models.ctc import joint_ctc_attention_loss
from multimodal_s2s.models.loss import doubly_stochastic_penalty, token_loss
from multimodal_s2s.models.model import build_model
from multimodal_s2s.text import Tokenizer, teacher_forcing_pair
from multimodal_s2s.training.distributed import (
    SINGLE_PROCESS,
    Distributed,
    init_distributed,
    shutdown_distributed,
)
from multimodal_s2s.training.evaluate import evaluate_model
from multimodal_s2s.training.resume import (
    check_same_config,
    check_same_vocabulary,
    rng_state,
    seed_everything,
    set_rng_state,
)


@dataclass
class TrainResult:
    """Where the run ended; ``is_main`` is False on every data-parallel rank but 0."""

    best_checkpoint: Path
    best_dev_metric: float  # the best epoch's dev ``train.select_by`` metric
    interrupted: bool
    is_main: bool = True


def train(
    config: Config, out_dir: Path, progress: bool = True, resume: bool = False
) -> TrainResult:
    """Train the model ``config`` describes in ``out_dir``; returns the best checkpoint.

    Args:
        resume: continue the run in ``out_dir`` from its newest readable checkpoint. Without
            it a folder that already holds a run is refused, so nothing is overwritten.
    """
    dist, device = init_distributed(resolve_device(config.train.device))
    try:
        with _sigterm_interrupts():
            return Trainer(config, out_dir, progress, resume, dist, device).fit()
    finally:
        shutdown_distributed()


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Treat SIGTERM (a scheduler preempting the job, ``kill``) like Ctrl-C, so the run
    saves a resume point before it exits. Only the main thread can install handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Trainer:
    """One training run in ``out_dir``: its model, optimiser, data and checkpoints
    (``fit`` runs it; the module docstring describes the run folder)."""

    def __init__(
        self,
        config: Config,
        out_dir: Path,
        progress: bool,
        resume: bool,
        dist: Distributed = SINGLE_PROCESS,
        device: torch.device | None = None,
    ) -> None:
        self.config = config
        self.out_dir = out_dir
        check_writable(out_dir, folder=True)
        self.dist = dist
        self.progress = progress and dist.is_main
        self.device = device or resolve_device(config.train.device)
        self.data = build_source(config.data)
        found = self._resume_point(resume)
        texts = self.data.texts("train")
        # A run started from another run's vocabulary (train.init_from) builds none of its own
        # (a subword model of that size may not fit this run's text), on resume too.
        tokenizer = None if config.train.init_from else _build_tokenizer(texts, config)
        out_dir.mkdir(parents=True, exist_ok=True)  # once the training data could be read
        if found is not None:
            payload, path = found
            self.model, self.tokenizer, saved = model_from_checkpoint(payload, path)
            check_same_config(config_to_dict(saved), config_to_dict(config), path)
            if tokenizer is None:
                self._check_units(texts)
            else:
                check_same_vocabulary(self.tokenizer, tokenizer, path)
        else:
            seed_everything(config.train.seed)
            if tokenizer is None:
                self._start_from(Path(config.train.init_from), texts)
            else:
                self.tokenizer = tokenizer
                self.model = build_model(config, len(tokenizer))
                self.data.fit_frontend(self.model.frontend)
            if dist.rank > 0:
                torch.manual_seed(config.train.seed + dist.rank)
        self.model.to(self.device)
        # fused: one kernel over every parameter instead of a loop over them
        # (recipes/phone_menu_asr/experiments.md)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=config.train.learning_rate,
            weight_decay=config.train.weight_decay,
            fused=True,
        )
        self.steps_per_epoch = len(self._train_batches(epoch=0))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self._autocast_dtype is torch.float16)
        self.epoch, self.batch_index, self.step, self.kept = 0, 0, 0, []
        self.bad_in_row = 0
        if found is not None:
            self._restore(found[0], found[1])
        self.tensorboard = _tensorboard_writer(out_dir / "tensorboard") if dist.is_main else None

    def _start_from(self, path: Path, texts: list[str]) -> None:
        """Start from another run's weights, vocabulary and frontend statistics (fine-tuning a
        pretrained model): the model this config builds must match them, and every unit of
        this run's training ``texts`` must be in that vocabulary."""
        start, self.tokenizer, _ = model_from_checkpoint(load_checkpoint(path), path)
        self._check_units(texts)
        self.model = build_model(self.config, len(self.tokenizer))
        failure = f"train.init_from {path}: its weights do not fit this config"
        load_weights(self.model, start.state_dict(), failure)

    def _check_units(self, texts: list[str]) -> None:
        """Every unit of the training ``texts`` must be in the vocabulary that the
        ``train.init_from`` checkpoint brought (when the run starts and when it resumes)."""
        source = f"train.init_from {self.config.train.init_from}"
        _require_units(self.tokenizer, texts, self.config.tokenizer.min_count, source)

    @property
    def _autocast_dtype(self) -> torch.dtype | None:
        """float16 on CUDA with ``train.amp``, bfloat16 on CPU with ``train.cpu_bfloat16``."""
        if self.device.type == "cuda" and self.config.train.amp:
            return torch.float16
        if self.device.type == "cpu" and self.config.train.cpu_bfloat16:
            return torch.bfloat16
        return None

    def _resume_point(self, resume: bool) -> tuple[dict[str, Any], Path] | None:
        if resume:
            return load_newest_resume_point(self.out_dir)
        existing = resume_points(self.out_dir)
        if existing:
            raise InputError(
                f"{self.out_dir}: already holds a training run ({existing[0].name}); "
                "pass --resume to continue it, or choose another output folder"
            )
        return None

    def _announce(self) -> None:
        """Print (rank 0) and log the batch and learning-rate rule, and dropped items."""
        train, world = self.config.train, self.dist.world
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        processes = f"{world} processes ({backend})" if world > 1 else "1 process"
        record = {
            "event": "start",
            "device": str(self.device),
            "processes": world,
            "batch_size_per_process": train.batch_size,
            "effective_batch_size": train.batch_size * world,
            "batches_per_epoch": self.dist.gather(self.steps_per_epoch),
            "learning_rate": train.learning_rate,
            "step": self.step,
        }
        self._log(record)
        for dropped in self.data.dropped:
            self._log({"event": "dropped", "step": self.step, **dropped._asdict()})
            self._print(f"dropped {dropped.count} {dropped.split} item(s): {dropped.reason}")
        self._print(
            f"training on {self.device}, {processes}: batch_size {train.batch_size} per process "
            f"-> at most {train.batch_size * world} items per step; learning rate "
            f"{train.learning_rate:g} as configured (not scaled with the number of processes: "
            "the loss is averaged over the target tokens of the whole global batch)"
        )
        if self._autocast_dtype is torch.bfloat16:
            warning = slow_bfloat16_warning("train.cpu_bfloat16")
            if warning is not None:
                self._print(f"warning: {warning}")

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
            shard=self.dist.shard,
        )

    def fit(self) -> TrainResult:
        try:
            self._announce()  # inside: once the run is announced, an interrupt saves it
            while self.epoch < self.config.train.epochs:
                self._train_epoch()
                self._end_epoch(self._evaluate("dev"))
        except KeyboardInterrupt:
            if self.dist.enabled:
                self._print(
                    "interrupted: run again with --resume to continue from the last checkpoint"
                )
                return TrainResult(self.out_dir, float("nan"), True, self.dist.is_main)
            path = self._save_resume_point()
            self._print(f"interrupted: saved {path}; run again with --resume to continue")
            return TrainResult(path, float("nan"), True, self.dist.is_main)
        if self.config.train.average_best and self.kept and self.dist.is_main:
            self._save_average()
        self.dist.barrier()
        best_metric = self.config.train.rank_sign * min(self.kept)[0] if self.kept else math.nan
        return TrainResult(self.out_dir / "best.pt", best_metric, False, self.dist.is_main)

    def _network(self) -> torch.nn.Module:
        """What a training step runs: the model, or a DDP replica of it under ``torchrun``
        (built per epoch, because freezing the encoder changes the trained parameters)."""
        if not self.dist.enabled:
            return self.model
        device_ids = [self.device] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=device_ids)

    def _train_epoch(self) -> None:
        config = self.config.train
        encoder = self.model.encoder
        if hasattr(encoder, "set_frozen") and config.freeze_encoder_epochs > 0:
            encoder.set_frozen(self.epoch < config.freeze_encoder_epochs)
        self.model.train()
        network = self._network()
        batches = self._train_batches(self.epoch, start=self.batch_index)
        bar = tqdm(
            batches,
            desc=f"epoch {self.epoch + 1}/{config.epochs}",
            initial=self.batch_index,
            total=self.batch_index + len(batches),
            disable=None if self.progress else True,
            dynamic_ncols=True,
        )
        started, samples = time.perf_counter(), 0
        for batch in bar:
            loss, items = self._train_step(network, batch)
            self.batch_index += 1
            self.step += 1
            samples += items
            rate = samples / max(1e-9, time.perf_counter() - started)
            bar.set_postfix(loss=f"{loss:.3f}", samples_s=f"{rate:.1f}")
            if config.save_every_steps and self.step % config.save_every_steps == 0:
                self._save_resume_point()
            if self.step % config.log_every == 0:
                record = {
                    "step": self.step,
                    "epoch": self.epoch,
                    "loss": loss,
                    "samples_per_s": rate,
                }
                record["lr"] = self.scheduler.get_last_lr()[0]
                if self.device.type == "cuda":
                    record["peak_gpu_memory_mb"] = (
                        torch.cuda.max_memory_allocated(self.device) / 2**20
                    )
                self._log(record)
        bar.close()

    def _train_step(self, network: torch.nn.Module, batch: SourceBatch) -> tuple[float, int]:
        """One optimiser step on this process's share of a global batch.

        Returns the loss per target token of the global batch and its number of items. A
        non-finite loss or gradient norm skips the update (see ``_skip``).
        """
        inputs, targets = teacher_forcing_pair([self.tokenizer.encode(t) for t in batch.texts])
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        sources, lengths = batch.tensors_on(self.device)
        dtype = self._autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            log_probs, weights, encoded = network(sources, lengths, inputs)
            loss = token_loss(log_probs.float(), targets, self.config.loss.label_smoothing)
            if self.config.loss.ctc_weight:
                weight = self.config.loss.ctc_weight
                loss = joint_ctc_attention_loss(self.model, encoded, targets, loss, weight)
            if self.config.loss.attention_penalty:
                penalty = doubly_stochastic_penalty(weights.float(), targets, encoded.lengths)
                loss = loss + self.config.loss.attention_penalty * penalty
            if self.config.loss.bag_of_words_weight:
                presence = bag_of_words_loss(self.model.bag_of_words(encoded), targets)
                loss = loss + self.config.loss.bag_of_words_weight * presence
        items = torch.tensor(float(len(batch.texts)), device=self.device)
        totals = torch.stack([loss.detach(), (targets != 0).sum().float(), items])
        self.dist.all_sum(totals)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * self.dist.world / totals[1]).backward()
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip)
        loss_sum, tokens, items, norm = torch.cat([totals, norm.reshape(1)]).tolist()
        if not math.isfinite(loss_sum) or not math.isfinite(norm):
            self._skip("loss" if not math.isfinite(loss_sum) else "gradient")
        else:
            self.bad_in_row = 0
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
        return loss_sum / max(1.0, tokens), int(items)

    def _skip(self, what: str) -> None:
        """Drop the gradients of a non-finite batch; stop after too many in a row."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.update()
        self.bad_in_row += 1
        limit = self.config.train.max_bad_batches
        self._log({"step": self.step + 1, "epoch": self.epoch, "skipped": f"non-finite {what}"})
        self._print(f"warning: step {self.step + 1}: non-finite {what}; batch skipped")
        if self.bad_in_row >= limit:
            raise TrainingError(
                f"{limit} batches in a row had a non-finite loss or gradient (last at step "
                f"{self.step + 1}); lower train.learning_rate or check the data, then resume "
                "with --resume"
            )

    def _evaluate(self, split: str) -> dict[str, float]:
        """Dev loss (per token, no smoothing) and greedy-decoding word error rate."""
        return evaluate_model(
            self.model,
            self.tokenizer,
            self.data,
            split,
            self.config,
            self.device,
            beam=False,
            dist=self.dist,
            progress=self.progress,
        ).metrics

    def _end_epoch(self, metrics: dict[str, float]) -> None:
        self.epoch += 1
        self.batch_index = 0
        self._log(
            {"epoch": self.epoch, "step": self.step, **{f"dev_{k}": v for k, v in metrics.items()}}
        )
        cider = f"  dev CIDEr-D {metrics['cider_d']:.4f}" if "cider_d" in metrics else ""
        self._print(
            f"epoch {self.epoch}: dev loss {metrics['loss']:.4f}  dev WER {metrics['wer']:.4f}"
            + cider
        )
        path = self.out_dir / f"epoch-{self.epoch}.pt"
        ranked = (self.config.train.rank_value(metrics), self.epoch)
        self.kept.append(ranked)
        self.kept.sort()
        dropped = self.kept[self.config.train.keep_best :]
        self.kept = self.kept[: self.config.train.keep_best]
        rng = self.dist.gather(rng_state())
        if self.dist.is_main:
            if ranked in self.kept:
                self._save(path, rng)
            if self.kept[0][1] == self.epoch:
                shutil.copyfile(path, self.out_dir / ".best.pt.tmp")
                (self.out_dir / ".best.pt.tmp").replace(self.out_dir / "best.pt")
            for _, epoch in dropped:
                (self.out_dir / f"epoch-{epoch}.pt").unlink(missing_ok=True)
        self._save_resume_point(rng)

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

    def _save_resume_point(self, rng: list[dict[str, Any]] | None = None) -> Path:
        """Write ``checkpoint-<step>.pt`` (rank 0) and prune old ones; every rank must call
        it at the same step, since every rank's random state is gathered into it."""
        rng = rng if rng is not None else self.dist.gather(rng_state())
        path = resume_path(self.out_dir, self.step)
        if self.dist.is_main:
            self._save(path, rng)
            prune_resume_points(self.out_dir, self.config.train.keep_last)
        return path

    def _save(self, path: Path, rng: list[dict[str, Any]]) -> None:
        save_checkpoint(
            {
                **self._payload(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "position": {"epoch": self.epoch, "batch": self.batch_index, "step": self.step},
                "kept": self.kept,
                "processes": self.dist.world,
                "rng": rng,
            },
            path,
        )

    def _restore(self, payload: dict[str, Any], path: Path) -> None:
        position = payload["position"]
        if position["batch"] > 0 and payload["processes"] != self.dist.world:
            raise InputError(
                f"{path}: saved mid-epoch by {payload['processes']} process(es), resumed with "
                f"{self.dist.world}; resume with the same number of processes"
            )
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.epoch, self.batch_index, self.step = (
            position["epoch"],
            position["batch"],
            position["step"],
        )
        self.kept = [tuple(k) for k in payload["kept"]]
        if len(payload["rng"]) == self.dist.world:
            set_rng_state(payload["rng"][self.dist.rank])
        else:
            seed_everything(self.config.train.seed + self.step + self.dist.rank)
        self._print(f"resumed from {path} (epoch {self.epoch + 1}, step {self.step})")

    def _print(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr if message.startswith("warning") else sys.stdout)

    def _log(self, record: dict[str, Any]) -> None:
        """Append to ``metrics.jsonl`` (rank 0), and to TensorBoard when it is installed."""
        if not self.dist.is_main:
            return
        with open(self.out_dir / "metrics.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key, value in record.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, record["step"])
            self.tensorboard.flush()


def _build_tokenizer(texts: list[str], config: Config) -> Tokenizer:
    """The vocabulary (or subword model) ``config.tokenizer`` asks for, from the training
    ``texts`` or from the file ``tokenizer.text`` names, which must then give every unit of
    ``texts``.

    Raises:
        InputError: the file cannot be read, or lacks units of the training text.
    """
    settings = config.tokenizer
    if not settings.text:
        return Tokenizer.build(texts, settings.kind, settings.min_count, settings.vocab_size)
    try:
        lines = Path(settings.text).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"tokenizer.text {settings.text}: cannot read it ({error})") from None
    sentences = [line.strip() for line in lines if line.strip()]
    tokenizer = Tokenizer.build(sentences, settings.kind, settings.min_count, settings.vocab_size)
    _require_units(tokenizer, texts, settings.min_count, f"tokenizer.text {settings.text}")
    return tokenizer


def _require_units(tokenizer: Tokenizer, texts: list[str], min_count: int, source: str) -> None:
    """Raise an ``InputError`` naming ``source`` (where ``tokenizer`` came from) when the
    training ``texts`` hold units seen ``min_count`` times that it cannot write."""
    unknown = tokenizer.unknown_units(texts, min_count)
    if unknown:
        shown = " ".join(repr(unit) for unit in unknown[:10])
        raise InputError(
            f"{source}: the training text holds {len(unknown)} units its vocabulary lacks ({shown})"
        )


def _tensorboard_writer(folder: Path):
    """A TensorBoard ``SummaryWriter`` when the ``tensorboard`` package is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))
