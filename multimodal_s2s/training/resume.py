"""What a resumed run must match and restore: its config, its vocabulary, its random state.

A resume point (see ``train.py``) holds every data-parallel rank's random number generator
states; restoring them, with the data order fixed by ``(seed, epoch)``, is what makes a
resumed run reach the weights of an uninterrupted one.
"""

import random
from pathlib import Path
from typing import Any

import torch

from multimodal_s2s.errors import InputError
from multimodal_s2s.text import Tokenizer

# Keys a resumed run may change: they do not change what is computed (``train.epochs``
# stretches the learning-rate schedule); ``search.*`` keys (decoding only) may change too.
RESUMABLE_CHANGES = (
    "train.epochs",
    "train.device",
    "train.log_every",
    "train.save_every_steps",
    "train.keep_last",
    "train.max_bad_batches",
    "data.num_workers",
    "data.preload",
)


def check_same_config(saved: dict, current: dict, path: Path) -> None:
    """Refuse to resume a run whose config differs, naming the first differing key and both
    values (keys in ``RESUMABLE_CHANGES`` may differ). ``saved`` is the checkpoint's config
    as this version reads it, so a key added since then compares as its default."""
    differences = [
        (key, old, new)
        for key, old, new in _differences(saved, current)
        if key not in RESUMABLE_CHANGES and not key.startswith(("search.", "data.test_views."))
    ]
    if differences:
        key, old, new = differences[0]
        raise InputError(
            f"{path}: the run was started with a different config: {key} is {old!r} in the "
            f"checkpoint and {new!r} now; use the same config or another output folder"
        )


def _differences(saved: Any, current: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, saved value, current value)`` for every leaf that differs."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return [
            difference
            for key in sorted(set(saved) | set(current))
            for difference in _differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        ]
    return [] if saved == current else [(prefix.rstrip("."), saved, current)]


def check_same_vocabulary(saved: Tokenizer, current: Tokenizer, path: Path) -> None:
    """Refuse to resume when the training text now yields another vocabulary, naming it.
    Subword vocabularies compare by their pieces (the resumed run goes on with the saved
    model, whose scores may differ in the last bits between sentencepiece versions)."""
    if saved.kind == current.kind and saved.tokens == current.tokens:
        return
    if saved.kind != current.kind:
        detail = f"{saved.kind} tokens in the checkpoint, {current.kind} tokens now"
    else:
        new = [t for t in current.tokens if t not in set(saved.tokens)]
        gone = [t for t in saved.tokens if t not in set(current.tokens)]
        parts = [
            f"{label}: {_listing(tokens)}"
            for label, tokens in (("new in the data", new), ("missing from the data", gone))
            if tokens
        ]
        detail = ", ".join(parts) or "same tokens in another order"
    raise InputError(
        f"{path}: the training data's vocabulary differs from the checkpoint's ({detail}); "
        "resume with the data the run started with"
    )


def _listing(tokens: list[str], shown: int = 5) -> str:
    more = " ..." if len(tokens) > shown else ""
    return " ".join(repr(token) for token in tokens[:shown]) + more


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
