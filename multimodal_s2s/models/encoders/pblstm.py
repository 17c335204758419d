"""Pyramidal BiLSTM encoder (Listen, Attend and Spell), optionally behind a convolutional
front end (ESPnet's VGG-BLSTMP idea)."""

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from multimodal_s2s import cpu
from multimodal_s2s.errors import InputError
from multimodal_s2s.masking import padding_mask
from multimodal_s2s.models.encoders.base import Encoder, EncoderOutput


@dataclass
class PBLSTMConfig:
    """A BLSTM layer over the features, then ``num_layers`` pyramid BLSTM layers.

    Each pyramid layer concatenates frames ``2t`` and ``2t + 1`` before its BLSTM, so the
    output has ``S = T // 2**num_layers`` frames. An odd trailing frame is dropped at every
    layer (floor rounding), which gives the same ``T // 2**num_layers`` overall.

    ``ctc_layer`` (``0 .. num_layers``) also returns the output of that BLSTM layer as
    ``EncoderOutput.auxiliary`` for the CTC loss: layer 0 runs over the features (frames
    ``T``), layer ``k`` after ``k`` pyramid joins (frames ``T // 2**k``, ``2**k`` times the
    feature hop). ``None``: no auxiliary output (a CTC loss then reads the memory).

    ``conv_channels``: one convolution block per entry before the BLSTM layers (see
    ``ConvSubsampling``), each halving the frames (``T -> (T + 1) // 2``) and the features.
    Its input is read as a ``(T, input_dim)`` spectrogram, so the features should be one
    frame's mel bins (``data.features.stack_frames: 1``).
    """

    name: str = "pblstm"
    input_dim: int = 80
    hidden_dim: int = 256
    num_layers: int = 3
    output_dim: int | None = None
    dropout: float = 0.0
    ctc_layer: int | None = None
    conv_channels: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.ctc_layer is not None and not 0 <= self.ctc_layer <= self.num_layers:
            raise InputError(
                f"encoder.ctc_layer must be between 0 and encoder.num_layers "
                f"({self.num_layers}), got {self.ctc_layer}"
            )
        if any(channels < 1 for channels in self.conv_channels):
            raise InputError(f"encoder.conv_channels must be positive, got {self.conv_channels}")


@dataclass
class ConvPBLSTMConfig(PBLSTMConfig):
    """``PBLSTMConfig`` with two convolution blocks of 32 channels by default: frames 4x
    longer at the first BLSTM layer, and the memory ``4 * 2**num_layers`` feature hops."""

    name: str = "conv_pblstm"
    conv_channels: list[int] = field(default_factory=lambda: [32, 32])


class PyramidalBLSTMEncoder(Encoder):
    """``(B, T, F)`` features -> memory ``(B, T // 2**k, D)``; with ``c`` convolution blocks,
    ``(B, T_c // 2**k, D)`` where ``T_c`` is ``T`` halved ``c`` times, rounding up.

    Padding frames never change an output (``ConvSubsampling``, ``BLSTMLayer``).
    ``D`` is ``output_dim`` when set (a linear projection), else ``2 * hidden_dim``.
    """

    def __init__(self, config: PBLSTMConfig) -> None:
        super().__init__()
        self.convolution = (
            ConvSubsampling(config.input_dim, config.conv_channels)
            if config.conv_channels
            else None
        )
        convolutions, joins = len(config.conv_channels), config.num_layers
        self.min_frames = 2**convolutions * (2**joins - 1) + 1
        hidden = config.hidden_dim
        first_size = self.convolution.output_dim if self.convolution else config.input_dim
        input_sizes = [first_size] + [4 * hidden] * config.num_layers
        self.layers = nn.ModuleList(BLSTMLayer(size, hidden) for size in input_sizes)
        self.dropout = nn.Dropout(config.dropout)
        self.projection = (
            nn.Linear(2 * hidden, config.output_dim) if config.output_dim is not None else None
        )
        self.output_dim = config.output_dim if config.output_dim is not None else 2 * hidden
        self.ctc_layer = config.ctc_layer
        self.auxiliary_dim = 2 * hidden if config.ctc_layer is not None else None

    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """Encode features.

        Args:
            inputs: ``(B, T, F)`` features.
            lengths: ``(B,)`` valid frames per sequence, each ``>= min_frames`` (``2**k``;
                ``2**c * (2**k - 1) + 1`` with ``c`` convolution blocks); ``None`` = all ``T``.

        Returns:
            memory ``(B, max(L) // 2**k, D)`` and lengths ``(B,)`` = ``L // 2**k``, where ``L``
            is ``lengths`` after the convolution blocks; with ``ctc_layer: j``, auxiliary
            ``(B, max(L) // 2**j, 2 * hidden_dim)`` and lengths ``L // 2**j`` (padding frames
            are zeros).
        """
        if lengths is None:
            lengths = torch.full((inputs.size(0),), inputs.size(1), dtype=torch.long)
        lengths = lengths.to(device=inputs.device, dtype=torch.long)
        if int(lengths.min()) < self.min_frames:
            raise ValueError(
                f"pblstm needs at least {self.min_frames} input frames per sequence, "
                f"got {int(lengths.min())}"
            )
        # frames past the longest sequence are cut (they change no output); a trace
        # (``inference.export``) keeps them, as it would fix the cut at the traced length
        x = inputs if torch.jit.is_tracing() else inputs[:, : int(lengths.max())]
        if self.convolution is not None:
            x, lengths = self.convolution(x, lengths)
        auxiliary = None
        for index, layer in enumerate(self.layers):
            if index > 0:
                x, lengths = _join_adjacent_frames(x, lengths)
                x = self.dropout(x)
            x = layer(x, lengths)
            if index == self.ctc_layer:
                auxiliary = EncoderOutput(x, lengths)
        if self.projection is not None:
            x = self.projection(self.dropout(x))
        return EncoderOutput(x, lengths, auxiliary)


class ConvSubsampling(nn.Module):
    """Convolution blocks over a ``(T, F)`` spectrogram: each a 3 x 3 convolution with stride 2
    in time and in frequency, then ReLU; the channels and frequencies of the last block are
    flattened into each frame's features.

    Padding never changes an output: every block's input is zero past each sequence's
    frames, so a valid frame near the end sees the zeros it would see alone (the
    convolution's own zero padding).
    """

    def __init__(self, input_dim: int, channels: list[int]) -> None:
        super().__init__()
        sizes = [1] + list(channels)
        self.blocks = nn.ModuleList(
            nn.Conv2d(inputs, outputs, kernel_size=3, stride=2, padding=1)
            for inputs, outputs in zip(sizes, sizes[1:])
        )
        frequencies = input_dim
        for _ in channels:
            frequencies = (frequencies + 1) // 2
        self.output_dim = channels[-1] * frequencies

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, T, F)`` and ``(B,)`` -> ``(B, T', C * F')`` and ``(B,)`` frames, where each
        block maps ``T -> (T + 1) // 2`` and ``F -> (F + 1) // 2``; zeros at padding frames."""
        x = x.unsqueeze(1)
        for block in self.blocks:
            x = x.masked_fill(padding_mask(lengths, x.size(2))[:, None, :, None], 0.0)
            x = torch.relu(block(x))
            lengths = (lengths + 1) // 2
        x = x.masked_fill(padding_mask(lengths, x.size(2))[:, None, :, None], 0.0)
        batch, channels, frames, frequencies = x.shape
        return x.permute(0, 2, 1, 3).reshape(batch, frames, channels * frequencies), lengths


def _join_adjacent_frames(x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """``(B, T, D)`` -> ``(B, T // 2, 2 * D)``, lengths halved with floor rounding."""
    batch, frames, dim = x.shape
    even = frames // 2 * 2
    return x[:, :even].reshape(batch, even // 2, 2 * dim), lengths // 2


class BLSTMLayer(nn.Module):
    """A bidirectional LSTM over a padded batch whose outputs never depend on the padding.

    The forward LSTM reads the batch as it is (padding only follows the valid frames); the
    backward LSTM reads every sequence reversed within its own length, so it too starts at
    that sequence's last valid frame. This replaces packed sequences: on the CPU PyTorch's
    packed LSTM backward re-zeroes a gradient buffer of the whole batch at every time step,
    which made a packed BLSTM layer train far slower than on the padded batch
    (``recipes/phone_menu_asr/experiments.md``); padding costs some compute instead, which length
    bucketing keeps small. Parameters are initialised as ``nn.LSTM(bidirectional=True)``'s.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.forward_lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.backward_lstm = nn.LSTM(input_size, hidden_size, batch_first=True)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """``(B, T, F)`` and ``(B,)`` valid frames -> ``(B, T, 2 * H)`` (forward states, then
        backward states), zeros at padding frames."""
        reversal = _reversal_index(lengths, x.size(1))
        forward = _run_lstm(self.forward_lstm, x)
        backward = _run_lstm(self.backward_lstm, _gather_frames(x, reversal))
        output = torch.cat([forward, _gather_frames(backward, reversal)], dim=2)
        return output.masked_fill(padding_mask(lengths, x.size(1)).unsqueeze(2), 0.0)


def _run_lstm(lstm: nn.LSTM, x: Tensor) -> Tensor:
    """``(B, T, F)`` -> the LSTM's outputs ``(B, T, H)``.

    Under CPU bfloat16 autocast, PyTorch always runs an LSTM with oneDNN's bfloat16
    primitive. oneDNN has that primitive only on CPUs with bfloat16 instructions. On a CPU
    without them the call fails ("could not create a primitive
    descriptor for the LSTM forward propagation primitive"). There the LSTM runs in float32
    instead and its output is rounded to the autocast dtype, as autocast's own LSTM would
    return it.
    """
    fallback = (
        x.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and cpu.has_bfloat16_instructions() is False
    )
    if not fallback:
        return lstm(x)[0]
    with torch.autocast("cpu", enabled=False):
        output = lstm(x.float())[0]
    return output.to(torch.bfloat16)


def _reversal_index(lengths: Tensor, frames: int) -> Tensor:
    """``(B, T)`` frame order that reverses each sequence's first ``lengths[b]`` frames and
    leaves its padding in place; applying it twice restores the original order."""
    positions = torch.arange(frames, device=lengths.device).expand(lengths.size(0), -1)
    last = lengths.unsqueeze(1) - 1
    return torch.where(positions <= last, last - positions, positions)


def _gather_frames(x: Tensor, order: Tensor) -> Tensor:
    """``(B, T, D)`` frames rearranged by ``(B, T)`` frame indices."""
    return x.gather(1, order.unsqueeze(2).expand(-1, -1, x.size(2)))
