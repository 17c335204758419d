"""Checkpoints: atomic writes, and rebuilding a model from a checkpoint alone.

A checkpoint is a dict with the resolved ``config`` (plain data), the ``tokenizer``, the
``model`` weights and, for resuming, optimizer/scheduler states and the training position.
"""

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from multimodal_s2s.config import Config, config_from_dict
from multimodal_s2s.data.text import Tokenizer
from multimodal_s2s.errors import InputError
from multimodal_s2s.model import Seq2Seq, build_model

FORMAT = "multimodal_s2s/1"


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save({"format": FORMAT, **payload}, file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint on the CPU; ``InputError`` naming the file when it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise InputError(f"{path}: not a readable checkpoint ({type(error).__name__})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"{path}: not a multimodal_s2s checkpoint")
    return payload


def model_from_checkpoint(
    payload: dict[str, Any], path: str | Path = "checkpoint"
) -> tuple[Seq2Seq, Tokenizer, Config]:
    """Rebuild the model, tokenizer and config a checkpoint describes, with its weights."""
    config = config_from_dict(payload["config"])
    tokenizer = Tokenizer.from_state_dict(payload["tokenizer"])
    model = build_model(config, len(tokenizer))
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:
        detail = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise InputError(f"{path}: weights do not match the saved config ({detail})") from error
    return model, tokenizer, config


def load_model(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[Seq2Seq, Tokenizer, Config]:
    """A ready-to-decode model (eval mode, on ``device``) from a checkpoint file alone."""
    model, tokenizer, config = model_from_checkpoint(load_checkpoint(path), path)
    return model.to(device).eval(), tokenizer, config
