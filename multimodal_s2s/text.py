"""Character, word and subword (sentencepiece) tokenizers with fixed special ids, saved with
the model."""

import io
import re
from collections import Counter
from collections.abc import Iterable
from typing import Literal

import sentencepiece
import torch
from torch import Tensor

from multimodal_s2s.errors import InputError

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")

TokenizerKind = Literal["char", "word", "unigram", "bpe"]
KINDS = ("char", "word", "unigram", "bpe")
SUBWORD_KINDS = ("unigram", "bpe")


class Tokenizer:
    """Maps text to token ids and back.

    ``kind`` "char" splits into characters (space is a token), "word" splits on whitespace;
    ids ``0..3`` are always PAD, BOS, EOS, UNK and ordinary tokens follow in sorted order.
    "unigram" and "bpe" are sentencepiece subword models (``model``, the serialized model
    proto, is all they need): the model's ids are ours, with the same special tokens at
    ``0..3``, and ``tokens`` are its pieces in id order.
    """

    def __init__(self, kind: TokenizerKind, tokens: list[str], model: bytes | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"tokenizer kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary must start with {SPECIAL_TOKENS}")
        if (model is not None) != (kind in SUBWORD_KINDS):
            raise ValueError(f"a {kind} tokenizer {'needs' if model is None else 'takes no'} model")
        self.kind = kind
        self.tokens = list(tokens)
        self.model = model
        self._ids = {token: index for index, token in enumerate(self.tokens)}
        self._pieces = None
        if model is not None:
            self._pieces = sentencepiece.SentencePieceProcessor(model_proto=model)
            if _pieces(self._pieces) != self.tokens:
                raise ValueError(f"the {kind} model's pieces are not the tokens given")

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        kind: TokenizerKind,
        min_count: int = 1,
        vocab_size: int | None = None,
    ) -> "Tokenizer":
        """A vocabulary of every unit seen at least ``min_count`` times in ``texts`` (char,
        word), or a subword model of ``vocab_size`` pieces (special tokens included) trained
        on ``texts`` (unigram, bpe).

        Raises:
            InputError: ``texts`` cannot give ``vocab_size`` pieces, naming the sizes they can.
        """
        if kind in SUBWORD_KINDS:
            if vocab_size is None:
                raise ValueError(f"a {kind} tokenizer needs a vocab_size")
            model = train_subwords(list(texts), kind, vocab_size)
            processor = sentencepiece.SentencePieceProcessor(model_proto=model)
            return cls(kind, _pieces(processor), model)
        counts = Counter(unit for text in texts for unit in _split(text, kind))
        kept = sorted(unit for unit, count in counts.items() if count >= min_count)
        return cls(kind, list(SPECIAL_TOKENS) + kept)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Text -> ids (no BOS/EOS); unknown units become UNK."""
        if self._pieces is not None:
            return self._pieces.encode(text)
        return [self._ids.get(unit, UNK_ID) for unit in _split(text, self.kind)]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text, stopping at EOS and skipping PAD and BOS (UNK reads ``<unk>``)."""
        kept = []
        for index in ids:
            if index == EOS_ID:
                break
            if index not in (PAD_ID, BOS_ID):
                kept.append(index)
        if self._pieces is not None:
            return self._pieces.decode(kept)
        return ("" if self.kind == "char" else " ").join(self.tokens[i] for i in kept)

    def unknown_units(self, texts: Iterable[str], min_count: int = 1) -> list[str]:
        """The units of ``texts`` seen at least ``min_count`` times that this vocabulary
        cannot write (characters for subword kinds, whose pieces cover every other string
        of known characters), sorted."""
        if self._pieces is None:
            counts = Counter(unit for text in texts for unit in _split(text, self.kind))
            known = set(self._ids)
        else:
            counts = Counter(char for text in texts for char in text if not char.isspace())
            known = {char for token in self.tokens[len(SPECIAL_TOKENS) :] for char in token}
        return sorted(u for u, count in counts.items() if count >= min_count and u not in known)

    def state_dict(self) -> dict:
        """Plain data (str, list, bytes): what ``from_state_dict`` rebuilds it from."""
        state = {"kind": self.kind, "tokens": self.tokens}
        return state if self.model is None else {**state, "model": self.model}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Tokenizer":
        return cls(state["kind"], state["tokens"], state.get("model"))


def train_subwords(texts: list[str], kind: TokenizerKind, vocab_size: int) -> bytes:
    """A sentencepiece ``kind`` model of ``vocab_size`` pieces trained on ``texts``, as its
    serialized model proto: deterministic (one thread, every sentence, no sampling), with
    PAD, BOS, EOS, UNK at ``0..3``, every character of ``texts`` a piece, and text kept as
    it is (no normalisation), so that ``decode(encode(text)) == text``.

    Raises:
        InputError: there is no text, or it cannot give ``vocab_size`` pieces.
    """
    if not any(text.strip() for text in texts):
        raise InputError(f"tokenizer.kind={kind}: the training split has no text to learn from")
    model = io.BytesIO()
    sentencepiece.set_random_generator_seed(0)
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=model,
            model_type=kind,
            vocab_size=vocab_size,
            pad_id=PAD_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            unk_id=UNK_ID,
            pad_piece=SPECIAL_TOKENS[PAD_ID],
            bos_piece=SPECIAL_TOKENS[BOS_ID],
            eos_piece=SPECIAL_TOKENS[EOS_ID],
            unk_piece=SPECIAL_TOKENS[UNK_ID],
            unk_surface=SPECIAL_TOKENS[UNK_ID],
            character_coverage=1.0,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            max_sentence_length=1 << 20,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as error:
        raise InputError(_training_error(str(error), kind, vocab_size)) from error
    return model.getvalue()


def _training_error(message: str, kind: TokenizerKind, vocab_size: int) -> str:
    """sentencepiece's error as one line that names ``tokenizer.vocab_size``."""
    key = f"tokenizer.vocab_size={vocab_size}"
    if most := re.search(r"Vocabulary size too high.*<= (\d+)", message):
        return (
            f"{key} is too large for the training text: it gives at most {most[1]} {kind} "
            "pieces (special tokens included)"
        )
    if least := re.search(r"smaller than required_chars\. \d+ vs (\d+)", message):
        return (
            f"{key} is too small for the training text: its characters and the "
            f"{len(SPECIAL_TOKENS)} special tokens need at least {least[1]}"
        )
    detail = message.strip().splitlines()[0] if message.strip() else "no reason given"
    return f"{key}: sentencepiece could not train a {kind} model ({detail})"


def _pieces(processor: sentencepiece.SentencePieceProcessor) -> list[str]:
    return [processor.id_to_piece(index) for index in range(processor.get_piece_size())]


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
