"""Character and word tokenizers with fixed special ids, saved with the model."""

from collections import Counter
from collections.abc import Iterable
from typing import Literal

import torch
from torch import Tensor

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")

TokenizerKind = Literal["char", "word"]


class Tokenizer:
    """Maps text to token ids and back.

    ``kind`` "char" splits into characters (space is a token), "word" splits on whitespace.
    Ids ``0..3`` are always PAD, BOS, EOS, UNK; ordinary tokens follow in sorted order.
    """

    def __init__(self, kind: TokenizerKind, tokens: list[str]) -> None:
        if kind not in ("char", "word"):
            raise ValueError(f"tokenizer kind must be 'char' or 'word', got {kind!r}")
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary must start with {SPECIAL_TOKENS}")
        self.kind = kind
        self.tokens = list(tokens)
        self._ids = {token: index for index, token in enumerate(self.tokens)}

    @classmethod
    def build(cls, texts: Iterable[str], kind: TokenizerKind, min_count: int = 1) -> "Tokenizer":
        """A vocabulary of every unit seen at least ``min_count`` times in ``texts``."""
        counts = Counter(unit for text in texts for unit in _split(text, kind))
        kept = sorted(unit for unit, count in counts.items() if count >= min_count)
        return cls(kind, list(SPECIAL_TOKENS) + kept)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Text -> ids (no BOS/EOS); unknown units become UNK."""
        return [self._ids.get(unit, UNK_ID) for unit in _split(text, self.kind)]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text, stopping at EOS and skipping PAD and BOS."""
        units = []
        for index in ids:
            if index == EOS_ID:
                break
            if index not in (PAD_ID, BOS_ID):
                units.append(self.tokens[index])
        return ("" if self.kind == "char" else " ").join(units)

    def state_dict(self) -> dict:
        return {"kind": self.kind, "tokens": self.tokens}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Tokenizer":
        return cls(state["kind"], state["tokens"])


def _split(text: str, kind: TokenizerKind) -> list[str]:
    return list(text) if kind == "char" else text.split()


def teacher_forcing_pair(token_ids: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Decoder inputs and targets for a batch of token sequences (without BOS/EOS).

    A sequence ``t_1 .. t_n`` gives inputs ``BOS t_1 .. t_n`` and targets ``t_1 .. t_n EOS``;
    EOS is never an input. Both are ``(B, L)`` int64 with ``L = max(n) + 1``, PAD after.
    """
    length = max(len(ids) for ids in token_ids) + 1
    inputs = torch.full((len(token_ids), length), PAD_ID, dtype=torch.long)
    targets = torch.full((len(token_ids), length), PAD_ID, dtype=torch.long)
    for row, ids in enumerate(token_ids):
        sequence = torch.tensor(ids, dtype=torch.long)
        inputs[row, 0] = BOS_ID
        inputs[row, 1 : len(ids) + 1] = sequence
        targets[row, : len(ids)] = sequence
        targets[row, len(ids)] = EOS_ID
    return inputs, targets
