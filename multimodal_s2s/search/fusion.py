"""Shallow fusion: an external language model as a prefix scorer of beam search.

``search.lm`` names a language model checkpoint (``ms2s train-lm``); beam search then ranks
every extension ``c`` of a prefix ``g`` by ``attention (+ CTC) + search.lm_weight *
log p_lm(c | g)``. The LM is read once per path, device and file version
(``load_language_model``) and must have the decoding model's vocabulary, token for token.
"""

import functools
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from multimodal_s2s.errors import InputError
from multimodal_s2s.models.language_model import LanguageModelConfig, LSTMLanguageModel
from multimodal_s2s.text import BOS_ID, Tokenizer

LM_FORMAT = "multimodal_s2s-lm/1"


class LanguageModelScorer:
    """``search.beam.PrefixScorer`` that adds ``weight * log p_lm(c | g)`` to the joint
    log-probability of every token ``c`` of every beam row ``g``.

    The LM runs one step per search step, on all ``N`` rows, in float32 outside autocast
    (under CPU bfloat16 autocast an LSTM may need instructions the CPU lacks), and each row
    depends on its own tokens only, so fusion keeps the search batch-invariant.
    """

    def __init__(self, model: LSTMLanguageModel, rows: int, weight: float) -> None:
        """``model`` on the decoding device, in eval mode; ``rows`` = sources x beam size."""
        self.model = model
        self.weight = weight
        device = next(model.parameters()).device
        self.log_probs, self.state = self._step(torch.full((rows,), BOS_ID, device=device), None)

    def joint(self, log_probs: Tensor) -> Tensor:
        """``(N, V)`` joint log-probabilities so far -> with the weighted LM's added."""
        return log_probs + self.weight * self.log_probs.to(log_probs.dtype)

    def select(self, parents: Tensor, tokens: Tensor) -> None:
        """Make row ``r`` the prefix ``parents[r]`` extended by ``tokens[r]`` (``(N,)``)."""
        hidden, cell = self.state
        self.log_probs, self.state = self._step(tokens, (hidden[:, parents], cell[:, parents]))

    def keep(self, rows: Tensor) -> None:
        """Keep only ``rows`` ``(N',)``."""
        hidden, cell = self.state
        self.log_probs, self.state = self.log_probs[rows], (hidden[:, rows], cell[:, rows])

    def _step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        with torch.autocast(tokens.device.type, enabled=False):
            return self.model.step(tokens, state)


class ScorerChain:
    """Several prefix scorers as one: ``joint`` passes the log-probabilities through each in
    turn (CTC, then the LM), ``select`` and ``keep`` reach every one."""

    def __init__(self, scorers: list[Any]) -> None:
        self.scorers = scorers

    def joint(self, log_probs: Tensor) -> Tensor:
        for scorer in self.scorers:
            log_probs = scorer.joint(log_probs)
        return log_probs

    def select(self, parents: Tensor, tokens: Tensor) -> None:
        for scorer in self.scorers:
            scorer.select(parents, tokens)

    def keep(self, rows: Tensor) -> None:
        for scorer in self.scorers:
            scorer.keep(rows)


def read_language_model_file(path: str | Path) -> dict[str, Any]:
    """The payload of an LM checkpoint (plain data and tensors, read with
    ``weights_only=True``) on the CPU.

    Raises:
        InputError: one line naming ``path``: missing, unreadable or not an LM checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: language model checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InputError(f"{path}: not a readable checkpoint ({type(error).__name__})") from error
    if not isinstance(payload, dict) or payload.get("format") != LM_FORMAT:
        raise InputError(f"{path}: not a language model checkpoint (ms2s train-lm writes them)")
    return payload


def language_model_from_payload(
    payload: dict[str, Any],
) -> tuple[LSTMLanguageModel, Tokenizer, LanguageModelConfig]:
    """The LM (with its weights, in train mode on the CPU), its tokenizer and its config."""
    config = LanguageModelConfig(**payload["config"]["model"])
    tokenizer = Tokenizer.from_state_dict(payload["tokenizer"])
    model = LSTMLanguageModel(config, len(tokenizer))
    model.load_state_dict(payload["model"])
    return model, tokenizer, config


def load_language_model(
    path: str | Path, device: torch.device, tokenizer: Tokenizer
) -> LSTMLanguageModel:
    """The LM of ``path`` in eval mode on ``device``, read once per path, device and file
    version (size and modification time) and shared by every batch of a decoding run.

    Raises:
        InputError: one line: the file is missing or unreadable, or its vocabulary is not
            ``tokenizer``'s (the decoding model's), naming both.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"search.lm: {path}: language model checkpoint not found")
    stat = path.stat()
    model, lm_tokenizer = _load_cached(path.resolve(), stat.st_size, stat.st_mtime_ns, device)
    if lm_tokenizer.state_dict() != tokenizer.state_dict():
        raise InputError(
            f"search.lm: {path} has a vocabulary of {len(lm_tokenizer)} {lm_tokenizer.kind} "
            f"tokens, the model's has {len(tokenizer)} {tokenizer.kind} tokens "
            f"({_first_difference(lm_tokenizer, tokenizer)}); train the LM with "
            "data.vocabulary_from=<the model's checkpoint>"
        )
    return model


@functools.lru_cache(maxsize=4)
def _load_cached(
    path: Path, size: int, mtime_ns: int, device: torch.device
) -> tuple[LSTMLanguageModel, Tokenizer]:
    model, tokenizer, _ = language_model_from_payload(read_language_model_file(path))
    return model.to(device).eval(), tokenizer


def _first_difference(first: Tokenizer, second: Tokenizer) -> str:
    for index, (a, b) in enumerate(zip(first.tokens, second.tokens)):
        if a != b:
            return f"token {index} is {a!r} in the LM and {b!r} in the model"
    if len(first) != len(second):
        return "one vocabulary extends the other"
    return "same tokens, other tokenizer settings"
