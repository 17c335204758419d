"""Configuration: dataclasses per component, YAML loading, dotted overrides, validation.

A config is plain data. Sections whose dataclass field carries ``metadata={"registry": R}``
(the encoder, the attention, the data source) pick their dataclass by the ``name`` key from
the literal registry dict ``R``; a bare string is shorthand for ``{name: string}``. Unknown
keys, wrong types and unknown names raise ``ConfigError`` naming the dotted key.
"""

import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from multimodal_s2s.data.sources import SOURCES, ToySequenceConfig
from multimodal_s2s.errors import InputError
from multimodal_s2s.models.decoder import DecoderConfig
from multimodal_s2s.models.encoders import ENCODERS
from multimodal_s2s.models.encoders.pblstm import PBLSTMConfig
from multimodal_s2s.models.generator import GeneratorConfig
from multimodal_s2s.models.loss import LossConfig
from multimodal_s2s.search.beam import SearchConfig
from multimodal_s2s.text import SPECIAL_TOKENS, TokenizerKind


class ConfigError(InputError):
    """A config key is unknown, has the wrong type, or names an unknown component."""


# What a decoding command (``transcribe``, ``caption``) may change in a checkpoint's config.
DECODING_SECTIONS = ("search", "data.test_views")
# Keys that moved (old dotted key -> new one). A config or an override that uses an old key
# is refused naming the new one; the configs saved in older checkpoints are converted when
# they are read (``checkpoint.upgrade_saved_config``).
MOVED_KEYS = {
    "search.speed_factors": "data.test_views.speed_factors",
    "search.warp_factors": "data.test_views.warp_factors",
    "search.corner_crops": "data.test_views.corner_crops",
}


@dataclass
class TokenizerConfig:
    """The output units. "char" and "word" keep every unit seen ``min_count`` times in the
    training text; "unigram" and "bpe" train a sentencepiece model of ``vocab_size`` pieces
    (the 4 special tokens included) on it when a run starts, saved inside the checkpoint.
    ``text`` names a text file (one sentence a line) to build them from instead of the
    training transcripts: for a model pretrained on one corpus and fine-tuned on another
    (``train.init_from``), the units of both corpora's sentences."""

    kind: TokenizerKind = "char"
    min_count: int = 1
    vocab_size: int = 256
    text: str = ""

    def __post_init__(self) -> None:
        if self.min_count < 1:
            raise ConfigError(f"tokenizer.min_count must be >= 1, got {self.min_count}")
        if self.vocab_size <= len(SPECIAL_TOKENS):
            raise ConfigError(
                f"tokenizer.vocab_size must be > {len(SPECIAL_TOKENS)} (the special tokens), "
                f"got {self.vocab_size}"
            )


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping. ``device`` "auto" picks CUDA when available.

    ``batch_size`` is per process (see ``training/train.py`` for data parallelism). A resume
    point is written every ``save_every_steps`` optimiser steps (0: only at epoch ends) and the
    newest ``keep_last`` are kept; ``max_bad_batches`` non-finite batches in a row stop the run.
    ``amp`` trains in mixed precision on CUDA (float16 with loss scaling);
    ``cpu_bfloat16`` autocasts training to bfloat16 on CPU, which is fast only on CPUs with
    bfloat16 instructions (``cpu.has_bfloat16_instructions``) and slower than float32
    elsewhere.
    The teacher-forced evaluation loss stays in float32; decoding (the dev error rate
    included) follows ``search.cpu_bfloat16``. ``select_by`` is the dev metric that ranks the
    epochs for ``keep_best``, ``best.pt`` and ``average_best``: "error" (the error rate of
    greedy decoding, e.g. WER), "loss" (the teacher-forced loss per token, which moves far
    less between epochs than a greedy error rate on a small dev set) or "cider" (the CIDEr-D
    of greedy captions over all references, highest first; only for a data source that
    reports it, ``DataSource.selectable_metrics``: images).
    ``init_from`` names a checkpoint whose weights, vocabulary and frontend statistics a new
    run starts from (pretraining, then fine-tuning on other data); resuming ignores it.
    """

    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    final_lr_ratio: float = 0.05
    grad_clip: float = 5.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    cpu_bfloat16: bool = False
    keep_best: int = 3
    select_by: Literal["error", "loss", "cider"] = "error"
    average_best: bool = False
    log_every: int = 20
    freeze_encoder_epochs: int = 0
    init_from: str = ""
    save_every_steps: int = 500
    keep_last: int = 2
    max_bad_batches: int = 10

    def __post_init__(self) -> None:
        for key in (
            "epochs",
            "batch_size",
            "keep_best",
            "keep_last",
            "max_bad_batches",
            "log_every",
        ):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if self.save_every_steps < 0:
            raise ConfigError(f"train.save_every_steps must be >= 0, got {self.save_every_steps}")

    @property
    def dev_metric(self) -> str:
        """The key of the dev metrics (``"wer"``, ``"loss"`` or ``"cider_d"``) that
        ``select_by`` ranks by."""
        return {"error": "wer", "loss": "loss", "cider": "cider_d"}[self.select_by]

    @property
    def rank_sign(self) -> int:
        """``rank_sign * metric`` ranks epochs best first, ascending: -1 where higher is
        better (CIDEr-D), else 1."""
        return -1 if self.select_by == "cider" else 1

    def rank_value(self, metrics: dict[str, float]) -> float:
        """What an epoch with these dev ``metrics`` is ranked by, the best lowest."""
        return self.rank_sign * metrics[self.dev_metric]


@dataclass
class Config:
    encoder: Any = field(default_factory=PBLSTMConfig, metadata={"registry": ENCODERS})
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: Any = field(default_factory=ToySequenceConfig, metadata={"registry": SOURCES})

    def __post_init__(self) -> None:
        source_class, _ = SOURCES[self.data.name]
        metric = self.train.dev_metric
        if metric != "loss" and metric not in source_class.selectable_metrics:
            sources = [name for name, (c, _) in SOURCES.items() if metric in c.selectable_metrics]
            raise ConfigError(
                f"train.select_by: {self.train.select_by!r} needs a data source that reports "
                f"{metric} ({', '.join(sources)}), not data.name {self.data.name!r}"
            )


def load_config(
    path: str | Path | None = None, overrides: list[str] = (), schema: type = Config
) -> Any:
    """Read a YAML file (or start from defaults), apply ``key.sub=value`` overrides, validate
    against ``schema`` (a config dataclass: ``Config``, or another command's, such as the
    language model's of ``ms2s train-lm``)."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({_first_line(error)})") from error
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a config must be a mapping of sections")
    for override in overrides:
        apply_override(raw, override)
    return config_from_dict(raw, schema)


def apply_override(raw: dict, override: str) -> None:
    """Set ``a.b.c=value`` in a nested dict; the value is parsed as YAML (``4``, ``[1, 2]``)."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} is not of the form key.sub=value")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"override {override!r}: value is not valid YAML") from error
    *parents, leaf = key.split(".")
    node = raw
    for depth, part in enumerate(parents):
        child = node.get(part)
        if isinstance(child, str):
            child = {"name": child}
        if child is None:
            child = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parents[: depth + 1])} is not a section")
        node[part] = child
        node = child
    node[leaf] = value


def override_config(config: Config, overrides: Sequence[str], sections: Sequence[str]) -> Config:
    """A copy of ``config`` with dotted ``overrides`` applied, each of which must set a key of
    one of ``sections`` (dotted section names: what a command may change in a trained model's
    config, e.g. ``search`` and ``data.test_views``)."""
    raw = config_to_dict(config)
    for override in overrides:
        if not _in_sections(override, sections):
            allowed = " and ".join(f"{section}.*" for section in sections)
            raise ConfigError(f"can only override {allowed} here, not {override!r}")
        apply_override(raw, override)
    return config_from_dict(raw)


def decoding_config(
    config: Config,
    overrides: Sequence[str],
    sections: Sequence[str],
    beam: int | None = None,
    nbest: int | None = None,
) -> Config:
    """The config a command decodes with: a checkpoint's ``config``, then the dotted
    ``overrides`` (keys of ``sections``, as ``override_config``), then ``beam`` (an explicit
    ``--beam``) as ``search.beam_size`` and ``nbest`` (``--nbest``) as ``search.nbest``
    (``with_nbest``). A setting that none of them gives keeps the checkpoint's value."""
    config = override_config(config, overrides, sections)
    if beam is not None:
        if beam < 1:
            raise ConfigError(f"--beam must be >= 1, got {beam}")
        config = dataclasses.replace(
            config, search=dataclasses.replace(config.search, beam_size=beam)
        )
    return dataclasses.replace(config, search=with_nbest(config.search, nbest))


def with_nbest(search: SearchConfig, nbest: int | None) -> SearchConfig:
    """``search`` returning ``nbest`` hypotheses per source (``None``: as it is).

    Raises:
        ConfigError: ``nbest`` is below 1 or above ``search.beam_size`` (a beam of K keeps
            K hypotheses; the beam is not widened behind the user's back, since a wider beam
            can change the best hypothesis).
    """
    if nbest is None:
        return search
    if nbest < 1:
        raise ConfigError(f"nbest must be >= 1, got {nbest}")
    if nbest > search.beam_size:
        raise ConfigError(
            f"nbest {nbest} is more than the beam keeps (search.beam_size="
            f"{search.beam_size}): give a beam of at least {nbest}"
        )
    return dataclasses.replace(search, nbest=nbest)


def split_overrides(items: Sequence[str], sections: Sequence[str]) -> tuple[list[str], list[str]]:
    """Command-line positionals -> (the others, the ``KEY=VALUE`` overrides of a key in one
    of ``sections`` among them)."""
    overrides = [item for item in items if "=" in item and _in_sections(item, sections)]
    return [item for item in items if item not in overrides], overrides


def _in_sections(override: str, sections: Sequence[str]) -> bool:
    key = override.partition("=")[0]
    return any(key.startswith(f"{section}.") for section in sections)


def config_from_dict(raw: dict, schema: type = Config) -> Any:
    """Validate a nested dict against ``schema`` (``Config`` unless told)."""
    return _build(schema, raw, "")


def config_to_dict(config: Any) -> dict:
    """A plain, YAML-safe nested dict of a config (what checkpoints store)."""
    return dataclasses.asdict(config)


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            if dotted in MOVED_KEYS:
                raise ConfigError(f"config key {dotted!r} is now {MOVED_KEYS[dotted]!r}")
            raise ConfigError(f"unknown config key {dotted!r} (known: {', '.join(fields)})")
        registry = fields[key].metadata.get("registry")
        if registry is not None:
            values[key] = _build_named(registry, value, fields[key], dotted)
        elif dataclasses.is_dataclass(hints[key]):
            values[key] = _build(hints[key], value, dotted + ".")
        else:
            values[key] = _check_type(value, hints[key], dotted)
    return cls(**values)


def _build_named(registry: dict, value: Any, spec: dataclasses.Field, dotted: str) -> Any:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{dotted} must be a name or a mapping, got {value!r}")
    name = value.get("name", spec.default_factory().name)
    if name not in registry:
        raise ConfigError(f"{dotted}.name: unknown {name!r} (known: {', '.join(registry)})")
    _, config_class = registry[name]
    return _build(config_class, {**value, "name": name}, dotted + ".")


def _check_type(value: Any, hint: Any, dotted: str) -> Any:
    if _matches(value, hint):
        return float(value) if hint is float else value
    raise ConfigError(f"{dotted}: expected {_describe(hint)}, got {value!r}")


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
