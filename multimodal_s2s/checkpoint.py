"""Checkpoints: atomic writes, integrity checks, the resume points of a run folder, and
rebuilding a model from a checkpoint alone.

A checkpoint is a dict with the resolved ``config`` (plain data), the ``tokenizer``, the
``model`` weights and, for resuming, optimizer/scheduler/scaler states, the training position
and the random number generator states. ``torch.save`` writes a zip archive whose entries
carry CRC-32 checksums; :func:`load_checkpoint` verifies them, so a truncated or corrupted
file is refused by name instead of loading garbage weights.

A checkpoint holds plain data only (dicts, lists, tuples, str, bytes, int, float, bool,
None, tensors), so it is read with ``torch.load(weights_only=True)`` and no allow-listed
globals: a file whose pickle would import anything else (and so could run code) is refused
before any of it runs. :func:`convert_checkpoint` rewrites a trusted file that holds numpy
arrays or scalars, the one kind of non-plain value it reads, in the plain format.
"""

import pickle
import re
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multimodal_s2s.atomic_file import atomic_write
from multimodal_s2s.config import MOVED_KEYS, Config, ConfigError, config_from_dict
from multimodal_s2s.errors import InputError
from multimodal_s2s.models.model import Seq2Seq, build_model
from multimodal_s2s.text import Tokenizer

FORMAT = "multimodal_s2s/1"
# Config keys that older versions wrote and that no longer exist (they never had an effect):
# dropped when a checkpoint's config is read, so older checkpoints still load.
REMOVED_CONFIG_KEYS = (("train", "max_frames"), ("train", "num_workers"))
# The data sources that have each moved key's new section (``config.MOVED_KEYS``).
_MOVED_KEY_SOURCES = {
    "search.speed_factors": "speech",
    "search.warp_factors": "speech",
    "search.corner_crops": "images",
}
RESUME_NAME = re.compile(r"checkpoint-(\d+)\.pt")
# The values a checkpoint holds: what ``torch.load(weights_only=True)`` reads without any
# allow-listed global (``OrderedDict`` is what ``state_dict()`` returns).
_PLAIN_VALUES = (str, bytes, int, float, bool, type(None), torch.Tensor, torch.nn.Parameter)
_PLAIN_NAMES = "dicts, lists, tuples, str, bytes, int, float, bool, None, tensors"


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` to ``path`` atomically (temp file in the same folder, then rename),
    in plain data that ``torch.load(weights_only=True)`` reads: numpy scalars are written as
    Python numbers and numpy arrays as tensors.

    Raises:
        TypeError: a value of another type, named by its key path.
    """
    plain = _plain_data({"format": FORMAT, **payload})
    with atomic_write(path, binary=True) as file:
        torch.save(plain, file)


def _plain_data(value: Any, where: str = "checkpoint") -> Any:
    """``value`` with numpy scalars as Python numbers and numpy arrays as tensors; a
    container none of whose items changed is returned as it is (a ``state_dict`` keeps its
    ``_metadata``).

    Raises:
        TypeError: ``value`` holds something other than ``_PLAIN_NAMES`` or numeric numpy
            values, named by its key path (``where``).
    """
    if type(value) in _PLAIN_VALUES:
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biufc":
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        return torch.from_numpy(value.astype(value.dtype.newbyteorder("=")))
    if type(value) in (dict, OrderedDict):
        keys = [_plain_data(key, f"{where} key") for key in value]
        items = [_plain_data(item, f"{where}.{key}") for key, item in value.items()]
        if _same_objects(keys, value.keys()) and _same_objects(items, value.values()):
            return value
        return type(value)(zip(keys, items, strict=True))
    if type(value) in (list, tuple):
        items = [_plain_data(item, f"{where}[{index}]") for index, item in enumerate(value)]
        return value if _same_objects(items, value) else type(value)(items)
    name = f"{type(value).__module__}.{type(value).__qualname__}"
    raise TypeError(f"{where} is a {name}; a checkpoint holds only {_PLAIN_NAMES}")


def _same_objects(new: Iterable[Any], old: Iterable[Any]) -> bool:
    return all(a is b for a, b in zip(new, old, strict=True))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint on the CPU with ``torch.load(weights_only=True)``; ``InputError``
    naming the file when it is unusable or not a safe checkpoint (its pickle would import
    a global other than the tensor rebuilders, so loading it could run code)."""
    path = _intact_file(path)
    return _read(
        path,
        "not a safe checkpoint: loading it would import {unsafe}, which could run code, so it "
        "was refused; if it is an older checkpoint from a source you trust, convert it: "
        f"ms2s convert-checkpoint {path} NEW.pt",
    )


def convert_checkpoint(old: str | Path, new: str | Path) -> None:
    """Rewrite a trusted checkpoint that holds numpy arrays or scalars (say a numpy random
    state) at ``new`` (atomically; ``new`` may be ``old``) in the plain format that
    :func:`load_checkpoint` reads. ``old`` is read with ``weights_only=True`` allowing the
    numpy globals of ``_numpy_globals()`` and nothing else, so no other code can run.

    Raises:
        InputError: ``old`` is missing or damaged, imports another global, holds another
            non-plain value, or is not a multimodal_s2s checkpoint.
    """
    old = _intact_file(old)
    with torch.serialization.safe_globals(_numpy_globals()):
        payload = _read(
            old,
            "cannot be converted: loading it would import {unsafe}, which no multimodal_s2s "
            "checkpoint holds and which could run code; refused",
        )
    try:
        save_checkpoint(payload, Path(new))
    except TypeError as error:
        raise InputError(f"{old}: cannot be converted: {error}") from None
    load_checkpoint(new)


def _numpy_globals() -> list[Any]:
    """What pickled numeric numpy arrays and scalars import (``numpy.core`` is numpy 1's
    name of ``numpy._core``) and the dtype classes their ``dtype`` states set: the only
    globals :func:`convert_checkpoint` allows."""
    reconstruct = np.zeros(1).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    numeric = "?" + np.typecodes["AllInteger"] + "efdFD"  # no long doubles: torch has none
    return [
        np.ndarray,
        np.dtype,
        *sorted({type(np.dtype(code)) for code in numeric}, key=str),
        reconstruct,
        scalar,
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        (scalar, "numpy.core.multiarray.scalar"),
    ]


def _intact_file(path: str | Path) -> Path:
    """``path`` as a ``Path`` when it is an intact zip archive; ``InputError`` otherwise."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    damage = _damage(path)
    if damage is not None:
        raise InputError(f"{path}: {damage}")
    return path


def _read(path: Path, refusal: str) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on the CPU, checked to be a multimodal_s2s
    checkpoint. A pickle that imports a global that is not allowed is refused with
    ``InputError(f"{path}: {refusal}")``, ``{unsafe}`` in it naming those globals."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = _unsafe_globals(path)
        if not unsafe:
            raise InputError(f"{path}: not a readable checkpoint (UnpicklingError)") from error
        raise InputError(f"{path}: {refusal.replace('{unsafe}', unsafe)}") from None
    except Exception as error:
        raise InputError(f"{path}: not a readable checkpoint ({type(error).__name__})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"{path}: not a multimodal_s2s checkpoint")
    return payload


def _unsafe_globals(path: Path) -> str:
    """The globals ``path``'s pickle imports that ``weights_only`` loading does not allow,
    read from its opcodes without running them; ``""`` when they cannot be read."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        return ""
    return ", ".join(sorted(names))


def _damage(path: Path) -> str | None:
    """Why ``path`` is not an intact zip archive (truncated, bad checksum), else ``None``."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad_entry = archive.testzip()
    except (zipfile.BadZipFile, EOFError):
        return "truncated or not a checkpoint (no intact zip archive)"
    if bad_entry is not None:
        return f"corrupt checkpoint (checksum mismatch in {bad_entry})"
    return None


def resume_path(folder: Path, step: int) -> Path:
    """Where the resume point after optimiser step ``step`` is written."""
    return folder / f"checkpoint-{step}.pt"


def resume_points(folder: Path) -> list[Path]:
    """The resume points (``checkpoint-<step>.pt``) in ``folder``, newest first."""
    found = [
        (int(m[1]), p)
        for p in folder.glob("checkpoint-*.pt")
        if (m := RESUME_NAME.fullmatch(p.name))
    ]
    return [path for _, path in sorted(found, reverse=True)]


def load_newest_resume_point(folder: Path) -> tuple[dict[str, Any], Path] | None:
    """The newest readable resume point of a run folder and its path; ``None`` if it has
    none. A damaged one is reported on stderr and the previous one is tried.

    Raises:
        InputError: there are resume points but none of them is readable.
    """
    points = resume_points(folder)
    for path in points:
        try:
            return load_checkpoint(path), path
        except InputError as error:
            print(f"warning: {error}; falling back to the previous checkpoint", file=sys.stderr)
    if points:
        raise InputError(f"{folder}: none of the {len(points)} checkpoints can be read")
    return None


def prune_resume_points(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` resume points of ``folder``."""
    for path in resume_points(folder)[keep:]:
        path.unlink(missing_ok=True)


def model_from_checkpoint(
    payload: dict[str, Any], path: str | Path = "checkpoint"
) -> tuple[Seq2Seq, Tokenizer, Config]:
    """Rebuild the model, tokenizer and config a checkpoint describes, with its weights."""
    missing = [key for key in ("config", "tokenizer", "model") if key not in payload]
    if missing:
        raise InputError(f"{path}: not a model checkpoint (it has no {missing[0]!r})")
    config = saved_config(payload)
    tokenizer = Tokenizer.from_state_dict(payload["tokenizer"])
    model = build_model(config, len(tokenizer))
    load_weights(model, payload["model"], f"{path}: weights do not match the saved config")
    return model, tokenizer, config


def load_weights(model: torch.nn.Module, weights: dict[str, Any], failure: str) -> None:
    """``model.load_state_dict(weights)``; weights that do not fit are one line,
    ``InputError(f"{failure} ({detail})")``, ``detail`` the first mismatch torch names."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        detail = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise InputError(f"{failure} ({detail})") from error


def saved_config(payload: dict[str, Any]) -> Config:
    """The config a checkpoint was saved with, as this version reads it
    (``upgrade_saved_config``)."""
    return config_from_dict(upgrade_saved_config(payload["config"]))


def upgrade_saved_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A copy of a saved config dict in this version's layout: without the
    ``REMOVED_CONFIG_KEYS``, and with each of ``config.MOVED_KEYS`` moved to its new place
    (the test-time views that ``search`` once held go to ``data.test_views`` of the speech
    or image source that has them; an empty one of another source is dropped).

    Raises:
        ConfigError: a moved key holds views for a source that has none.
    """
    raw = {
        section: dict(values) if isinstance(values, dict) else values
        for section, values in raw.items()
    }
    for section, key in REMOVED_CONFIG_KEYS:
        if isinstance(raw.get(section), dict):
            raw[section].pop(key, None)
    for old, new in MOVED_KEYS.items():
        section, key = old.split(".")
        if not isinstance(raw.get(section), dict) or key not in raw[section]:
            continue
        value = raw[section].pop(key)
        data = raw.get("data")
        if isinstance(data, dict) and data.get("name") == _MOVED_KEY_SOURCES[old]:
            raw["data"] = {**data, "test_views": {**data.get("test_views", {}), key: value}}
        elif value:
            name = data.get("name") if isinstance(data, dict) else None
            raise ConfigError(
                f"saved config: {old}={value} has no place: {new} exists for "
                f"{_MOVED_KEY_SOURCES[old]!r} data only, not {name!r}"
            )
    return raw


def load_model(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[Seq2Seq, Tokenizer, Config]:
    """A ready-to-decode model (eval mode, on ``device``) from a checkpoint file alone."""
    model, tokenizer, config = model_from_checkpoint(load_checkpoint(path), path)
    return model.to(device).eval(), tokenizer, config
