"""An LSTM language model over the seq2seq models' tokens, for shallow fusion in beam search.

Trained like the decoder without a source: fed ``BOS y_1 .. y_{m-1}``, it emits the
log-probabilities of ``y_1 .. y_m`` (``y_m`` = EOS) from its own output layer. Its tokens are
those of a ``text.Tokenizer``, with the same special ids, so that fused with a speech or
caption model of the same vocabulary its scores add up token by token
(``search.fusion.LanguageModelScorer``).
"""

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from multimodal_s2s.text import PAD_ID

LanguageModelState = tuple[Tensor, Tensor]


@dataclass
class LanguageModelConfig:
    """``num_layers`` LSTM layers of ``hidden_dim`` over ``embedding_dim`` embeddings;
    ``dropout`` on the embeddings, between the layers and before the output layer."""

    embedding_dim: int = 128
    hidden_dim: int = 512
    num_layers: int = 2
    dropout: float = 0.2


class LSTMLanguageModel(nn.Module):
    """Embedding, LSTM layers and an output layer with log-softmax."""

    def __init__(self, config: LanguageModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(
            config.embedding_dim,
            config.hidden_dim,
            config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.output = nn.Linear(config.hidden_dim, vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        """``(B, L)`` inputs ``BOS y_1 .. y_{m-1}`` (PAD after) -> ``(B, L, V)`` log-probs of
        the next token. The LSTM reads left to right, so trailing PAD changes no output
        before it."""
        hidden, _ = self.lstm(self.dropout(self.embedding(tokens)))
        return torch.log_softmax(self.output(self.dropout(hidden)), dim=-1)

    def step(
        self, tokens: Tensor, state: LanguageModelState | None = None
    ) -> tuple[Tensor, LanguageModelState]:
        """One token per row: ``(N,)`` tokens and the ``(layers, N, H)`` hidden and cell
        states (``None``: the start) -> ``(N, V)`` log-probs of the next token, new state."""
        hidden, state = self.lstm(self.dropout(self.embedding(tokens.unsqueeze(1))), state)
        return torch.log_softmax(self.output(self.dropout(hidden[:, 0])), dim=-1), state
