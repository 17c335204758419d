"""The attention decoder: an LSTM conditional language model over the encoder memory."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional

from multimodal_s2s.masking import padding_mask
from multimodal_s2s.models.attention import ATTENTIONS, LocationConfig
from multimodal_s2s.models.encoders.base import EncoderOutput
from multimodal_s2s.text import BOS_ID, EOS_ID, PAD_ID


@dataclass
class DecoderConfig:
    """Decoder sizes and options.

    ``output_dim`` is the size of the attentional hidden state ``tanh(W [h; c])`` fed to
    the generator (default ``hidden_dim``; ``embedding_dim`` when the generator ties
    weights). ``init_state`` "mean" starts the LSTM from the masked mean of the memory
    (Show-Attend-Tell), "zeros" from zeros. ``init_attention`` is the "previous" attention
    the first step sees (location attention reads it): "zeros", or "first" (all weight on
    the first memory frame, a monotonic start). ``scheduled_sampling`` is the probability of
    feeding the model's own sampled token instead of the reference during training.
    ``dropout`` applies to the token embeddings, between stacked LSTM layers and to the
    attentional hidden state.
    """

    embedding_dim: int = 128
    hidden_dim: int = 256
    num_layers: int = 1
    attention: Any = field(default_factory=LocationConfig, metadata={"registry": ATTENTIONS})
    output_dim: int | None = None
    dropout: float = 0.1
    init_state: Literal["mean", "zeros"] = "mean"
    init_attention: Literal["zeros", "first"] = "zeros"
    scheduled_sampling: float = 0.0


class DecodingWeights(NamedTuple):
    """Products of the decoder's weights that decoding precomputes once per batch.

    token_gates ``(V, 4H)``: every token's embedding through the first LSTM cell's input
    weights, plus both of its biases. context_weight ``(4H + O, D)``: the context columns of
    that cell's input weights stacked on those of the output projection. hidden_weight
    ``(H, 4H)``: that cell's hidden-to-hidden weights, transposed. top_weight ``(O, H)``: the
    output projection's columns for the top layer's state. Under autocast the three
    matrices are in its dtype, cast once here instead of at every step (autocast caches the
    casts of parameters, but not of tensors computed from them).
    """

    token_gates: Tensor
    context_weight: Tensor
    hidden_weight: Tensor
    top_weight: Tensor


class DecoderMemory(NamedTuple):
    """What the decoder reads at every step, fixed for a source.

    memory ``(B, S, D)``, keys ``(B, S, *)`` (attention-specific), mask ``(B, S)`` True = pad.
    Beam search keeps one row per source and ``K`` state rows per source (see ``step``).
    When decoding (``start(..., decoding=True)``): ``decoding``, and, where ``start`` says,
    ``projected`` ``(B, S, 4H + O)``, the memory times ``decoding.context_weight``.
    """

    memory: Tensor
    keys: Tensor
    mask: Tensor
    projected: Tensor | None = None
    decoding: DecodingWeights | None = None

    def select(self, index: Tensor, length: int | None = None) -> "DecoderMemory":
        """Rows ``index`` ``(B',)`` of every per-source tensor, and the first ``length``
        positions (all when ``None``; only positions that are padding in every kept row may
        go)."""
        memory, keys, mask, projected = (
            None if t is None else t.index_select(0, index)[:, :length] for t in self[:4]
        )
        return DecoderMemory(memory, keys, mask, projected, self.decoding)


class DecoderState(NamedTuple):
    """Recurrent state between steps.

    hidden, cell: ``(L, B, H)``; context: ``(B, D)`` last attention context (input feeding),
    or when decoding that context times ``DecodingWeights.context_weight``, ``(B, 4H + O)``;
    weights: ``(B, S)`` last attention weights; coverage: ``(B, S)`` their running sum.
    """

    hidden: Tensor
    cell: Tensor
    context: Tensor
    weights: Tensor
    coverage: Tensor

    def select(self, index: Tensor, length: int | None = None) -> "DecoderState":
        """Rows ``index`` ``(B',)`` of the batch (beam reordering), and the first ``length``
        memory positions of the attention weights and coverage (all when ``None``)."""
        return DecoderState(
            self.hidden.index_select(1, index),
            self.cell.index_select(1, index),
            self.context.index_select(0, index),
            self.weights.index_select(0, index)[:, :length],
            self.coverage.index_select(0, index)[:, :length],
        )


def _lstm_update(gates: Tensor, cell: Tensor) -> tuple[Tensor, Tensor]:
    """``nn.LSTMCell``'s update from its summed gate pre-activations ``(N, 4H)`` (PyTorch's
    order: input, forget, cell, output) and the previous cell ``(N, H)`` -> new ``(h, c)``."""
    input_gate, forget_gate, cell_gate, output_gate = gates.chunk(4, 1)
    cell = torch.sigmoid(forget_gate) * cell + torch.sigmoid(input_gate) * torch.tanh(cell_gate)
    return torch.sigmoid(output_gate) * torch.tanh(cell), cell


class AttentionDecoder(nn.Module):
    """Input-feeding LSTM decoder: ``[embed(y_{t-1}); c_{t-1}] -> LSTM -> attend -> out_t``."""

    def __init__(self, config: DecoderConfig, vocab_size: int, memory_dim: int) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_dim
        self.output_dim = config.output_dim if config.output_dim is not None else hidden
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim, padding_idx=PAD_ID)
        input_sizes = [config.embedding_dim + memory_dim] + [hidden] * (config.num_layers - 1)
        self.cells = nn.ModuleList(nn.LSTMCell(size, hidden) for size in input_sizes)
        attention_class, _ = ATTENTIONS[config.attention.name]
        self.attention = attention_class(config.attention, hidden, memory_dim)
        self.bridge = (
            nn.Linear(memory_dim, 2 * config.num_layers * hidden)
            if config.init_state == "mean"
            else None
        )
        self.output_projection = nn.Linear(hidden + memory_dim, self.output_dim)
        self.dropout = nn.Dropout(config.dropout)

    def start(
        self, encoded: EncoderOutput, decoding: bool = False
    ) -> tuple[DecoderMemory, DecoderState]:
        """Prepare the memory and the initial state for a batch of encoded sources.

        ``decoding`` (search, in evaluation mode) precomputes what ``step`` can take out of
        the loop: each token's input gates, and, for an attention without a gate over a
        memory shorter than it is wide (``S < D``), the context's products with the first
        cell and the output projection, read as ``weights @ projected`` (``S`` multiply-adds
        per output value instead of ``D``). The state then carries that product in place of
        the context. Equal to the training path up to float rounding.
        """
        memory, lengths = encoded.memory, encoded.lengths
        batch, length, dim = memory.shape
        mask = padding_mask(lengths, length)
        layers, hidden = self.config.num_layers, self.config.hidden_dim
        if self.bridge is None:
            hidden_cell = memory.new_zeros(2, layers, batch, hidden)
        else:
            valid = (~mask).unsqueeze(2).to(memory.dtype)
            mean = (memory * valid).sum(1) / lengths.unsqueeze(1).to(memory.dtype)
            bridged = torch.tanh(self.bridge(mean)).view(batch, 2, layers, hidden)
            hidden_cell = bridged.permute(1, 2, 0, 3)
        weights = memory.new_zeros(batch, length)
        if self.config.init_attention == "first":
            weights[:, 0] = 1.0
        decoding_weights = self._decoding_weights() if decoding else None
        context_dim = dim if decoding_weights is None else decoding_weights.context_weight.size(0)
        state = DecoderState(
            hidden_cell[0].contiguous(),
            hidden_cell[1].contiguous(),
            memory.new_zeros(batch, context_dim),
            weights,
            memory.new_zeros(batch, length),
        )
        projected = None
        if decoding_weights is not None and not self.attention.gated and length < dim:
            projected = memory @ decoding_weights.context_weight.t()
        keys = self.attention.prepare(memory)
        return DecoderMemory(memory, keys, mask, projected, decoding_weights), state

    def _decoding_weights(self) -> DecodingWeights:
        first, embedding_dim = self.cells[0], self.config.embedding_dim
        token_gates = torch.addmm(
            first.bias_ih + first.bias_hh,
            self.embedding.weight,
            first.weight_ih[:, :embedding_dim].t(),
        )
        hidden = self.config.hidden_dim
        output_weight = self.output_projection.weight
        matrices = (
            torch.cat([first.weight_ih[:, embedding_dim:], output_weight[:, hidden:]]),
            first.weight_hh.t(),
            output_weight[:, :hidden],
        )
        device = output_weight.device.type
        if torch.is_autocast_enabled(device):
            matrices = tuple(m.to(torch.get_autocast_dtype(device)) for m in matrices)
        return DecodingWeights(token_gates, *matrices)

    def step(
        self, tokens: Tensor, memory: DecoderMemory, state: DecoderState
    ) -> tuple[Tensor, DecoderState]:
        """Advance one token.

        Args:
            tokens: ``(B * K,)`` previous tokens (BOS at the start; never EOS).
            memory: from ``start``, ``B`` rows; state rows ``b * K .. b * K + K - 1`` (the
                beams of source ``b``) attend over memory row ``b``. ``K = 1`` outside search.
            state: previous state, ``B * K`` rows.

        Returns:
            output ``(B * K, O)`` for the generator, and the new state (whose ``weights``
            ``(B * K, S)`` are this step's attention).
        """
        if memory.decoding is not None:
            return self._decoding_step(tokens, memory, state)
        top, new_state = self._advance(self.dropout(self.embedding(tokens)), memory, state)
        return self._output(top, new_state.context), new_state

    def _decoding_step(
        self, tokens: Tensor, memory: DecoderMemory, state: DecoderState
    ) -> tuple[Tensor, DecoderState]:
        """``step`` with the products ``start(..., decoding=True)`` precomputed; ``state.context``
        is the context times ``memory.decoding.context_weight``."""
        gates_dim = 4 * self.config.hidden_dim
        gates = memory.decoding.token_gates[tokens] + state.context[:, :gates_dim]
        gates = torch.addmm(gates, state.hidden[0], memory.decoding.hidden_weight)
        hidden, cell = self._stack(_lstm_update(gates, state.cell[0]), state)
        top = hidden[-1]
        weights = self.attention.weights(top, memory.keys, memory.mask, state.weights)
        if memory.projected is None:
            context = self.attention.read(top, weights, memory.memory)
            context = functional.linear(context, memory.decoding.context_weight)
        else:
            context = torch.bmm(weights, memory.projected).flatten(0, 1)
        output = functional.linear(top, memory.decoding.top_weight, self.output_projection.bias)
        output = torch.tanh(output + context[:, gates_dim:])
        weights = weights.flatten(0, 1)
        return output, DecoderState(hidden, cell, context, weights, state.coverage + weights)

    def _advance(
        self, embedded: Tensor, memory: DecoderMemory, state: DecoderState
    ) -> tuple[Tensor, DecoderState]:
        """The recurrent part of a step: ``(N, E)`` embedded tokens -> the top layer's
        hidden state ``(N, H)`` and the new state (its context attends with it)."""
        x = torch.cat([embedded, state.context], dim=1)
        first = self.cells[0](x, (state.hidden[0], state.cell[0]))
        hidden, cell = self._stack(first, state)
        top = hidden[-1]
        context, weights = self.attention(
            top, memory.memory, memory.keys, memory.mask, state.weights
        )
        return top, DecoderState(hidden, cell, context, weights, state.coverage + weights)

    def _stack(self, first: tuple[Tensor, Tensor], state: DecoderState) -> tuple[Tensor, Tensor]:
        """The first layer's new ``(h, c)`` ``(N, H)`` -> every layer's, ``(L, N, H)`` each
        (dropout between layers)."""
        hiddens, cells = [first[0]], [first[1]]
        for layer in range(1, len(self.cells)):
            h, c = self.cells[layer](
                self.dropout(hiddens[-1]), (state.hidden[layer], state.cell[layer])
            )
            hiddens.append(h)
            cells.append(c)
        return torch.stack(hiddens), torch.stack(cells)

    def _output(self, top: Tensor, context: Tensor) -> Tensor:
        """The attentional hidden state ``tanh(W [h; c])`` (after dropout) for the generator,
        for any leading shape: ``(..., H)`` and ``(..., D)`` -> ``(..., O)``."""
        return self.dropout(torch.tanh(self.output_projection(torch.cat([top, context], dim=-1))))

    def forward(
        self,
        encoded: EncoderOutput,
        inputs: Tensor,
        sample: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Teacher forcing over whole target sequences.

        Only the recurrence runs step by step: the embeddings and the output projection
        ``tanh(W [h; c])`` are computed once for all positions.

        Args:
            encoded: memory ``(B, S, D)`` and lengths ``(B,)``.
            inputs: ``(B, L)`` tokens ``BOS y_1 .. y_{m-1}``, PAD after each sequence.
            sample: maps an output ``(B, O)`` to predicted tokens ``(B,)``; used for
                scheduled sampling in training when ``config.scheduled_sampling > 0``.

        Returns:
            outputs ``(B, L, O)`` and attention weights ``(B, L, S)``.
        """
        memory, state = self.start(encoded)
        sampling = self.training and sample is not None and self.config.scheduled_sampling > 0
        embedded = self.dropout(self.embedding(inputs)).unbind(1)
        tops, contexts, weights = [], [], []
        for position, step_embedded in enumerate(embedded):
            if sampling and position > 0:
                previous = self._output(tops[-1], contexts[-1])
                tokens = self._mix_sampled(inputs[:, position], sample(previous))
                step_embedded = self.dropout(self.embedding(tokens))
            top, state = self._advance(step_embedded, memory, state)
            tops.append(top)
            contexts.append(state.context)
            weights.append(state.weights)
        outputs = self._output(torch.stack(tops, dim=1), torch.stack(contexts, dim=1))
        return outputs, torch.stack(weights, dim=1)

    def _mix_sampled(self, reference: Tensor, sampled: Tensor) -> Tensor:
        """Replace reference tokens by sampled ones with probability ``scheduled_sampling``.

        Padding stays padding, and a sampled EOS, PAD or BOS is never fed: the reference
        token is kept instead.
        """
        use = torch.rand(reference.shape, device=reference.device) < self.config.scheduled_sampling
        use &= reference != PAD_ID
        for special in (PAD_ID, BOS_ID, EOS_ID):
            use &= sampled != special
        return torch.where(use, sampled, reference)
