"""Export a model for serving outside this package: the encoder and one decoder step, as ONNX
graphs or TorchScript modules, with an ``export.json`` describing them.

Dimension letters: ``B`` batch, ``N`` samples, ``S`` memory positions, ``D`` memory size,
``A`` attention key size, ``L`` decoder layers, ``H`` decoder hidden size, ``V`` vocabulary.

The encoder graph runs the frontend (log-mel features of raw waveforms, or normalisation of
``uint8`` images), the encoder and the decoder's start (``AttentionDecoder.start``): it
returns the memory, its lengths, the attention keys and the decoder's initial state. The step
graph advances every row by one token and returns the generator's log-probabilities and the
new state. A decoding loop (greedy, as ``export.json``'s ``greedy`` section describes, or a
beam search of one's own) feeds the state back; beam search, CTC and language-model scoring
stay in Python. Both are traced (``torch.jit.trace``, and the TorchScript-based ONNX
exporter), so what depends on the data in Python is fixed at the traced example: a waveform
must have at least the samples of the encoder's ``min_frames`` (``export.json``:
``min_samples``; Python extends shorter ones), images must have the model's
``data.image_size``, and test-time views are not exported. The batch size and the waveform
and memory lengths vary.
"""

import argparse
import copy
import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from multimodal_s2s.atomic_file import atomic_write, check_writable
from multimodal_s2s.checkpoint import load_model
from multimodal_s2s.config import Config
from multimodal_s2s.errors import InputError
from multimodal_s2s.masking import padding_mask
from multimodal_s2s.models.decoder import DecoderMemory, DecoderState
from multimodal_s2s.models.encoders.base import EncoderOutput
from multimodal_s2s.models.model import Seq2Seq
from multimodal_s2s.text import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer

Format = Literal["onnx", "torchscript"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
STATE_NAMES = ("hidden", "cell", "context", "attention", "coverage")
ENCODER_OUTPUTS = ("memory", "memory_lengths", "keys", *STATE_NAMES)
STEP_INPUTS = ("tokens", *STATE_NAMES, "memory", "keys", "memory_lengths")
STEP_OUTPUTS = ("log_probs", *(f"next_{name}" for name in STATE_NAMES))
ONNX_OPSET = 17
# How the tokens of an output (its special ids left out) read as text, by tokenizer kind
JOINS = {
    "char": "join the tokens",
    "word": "join the tokens with spaces",
    "unigram": "join the pieces, then write each \u2581 as a space and strip (sentencepiece)",
    "bpe": "join the pieces, then write each \u2581 as a space and strip (sentencepiece)",
}


class DFTSpectrogram(nn.Module):
    """torchaudio's ``Spectrogram`` (``center=False``, ``power=2``, one-sided, not
    normalised) as a strided convolution with the windowed real DFT basis: the same power
    spectrum up to float rounding, in operations every exporter has (the TorchScript-based
    ONNX exporter has no complex STFT)."""

    def __init__(self, spectrogram: nn.Module) -> None:
        super().__init__()
        settings = (spectrogram.pad, spectrogram.power, spectrogram.normalized)
        if settings != (0, 2.0, False) or spectrogram.center or not spectrogram.onesided:
            raise InputError("export: the frontend's spectrogram settings have no DFT form")
        n_fft, window = spectrogram.n_fft, spectrogram.window.double()
        left = (n_fft - window.numel()) // 2
        window = nn.functional.pad(window, (left, n_fft - window.numel() - left))
        bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64).unsqueeze(1)
        angle = 2 * torch.pi * bins * torch.arange(n_fft, dtype=torch.float64) / n_fft
        basis = torch.cat([angle.cos(), angle.sin()]) * window
        self.register_buffer("basis", basis.unsqueeze(1).to(spectrogram.window.dtype))
        self.hop_length = spectrogram.hop_length

    def forward(self, waveforms: Tensor) -> Tensor:
        """``(B, N)`` -> power spectra ``(B, n_fft // 2 + 1, 1 + (N - n_fft) // hop)``."""
        parts = nn.functional.conv1d(waveforms.unsqueeze(1), self.basis, stride=self.hop_length)
        real, imaginary = parts.chunk(2, dim=1)
        return real.square() + imaginary.square()


def exportable(model: Seq2Seq) -> Seq2Seq:
    """A float32 copy of ``model`` in evaluation mode, without gradients, whose speech
    frontend computes its spectrogram with ``DFTSpectrogram``."""
    model = copy.deepcopy(model).float().eval().requires_grad_(False)
    logmel = getattr(model.frontend, "frontend", None)
    mel_spectrogram = getattr(logmel, "mel_spectrogram", None)
    if mel_spectrogram is not None:
        mel_spectrogram.spectrogram = DFTSpectrogram(mel_spectrogram.spectrogram)
    return model


class EncoderGraph(nn.Module):
    """The frontend, encoder and decoder start of a ``Seq2Seq`` as one traceable module."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, sources: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, ...]:
        """Encode a padded batch.

        Args:
            sources: ``(B, N)`` float32 waveforms, or ``(B, 3, H, W)`` ``uint8`` images.
            lengths: ``(B,)`` int64 valid samples of each waveform (images: ``None``).

        Returns:
            memory ``(B, S, D)``, memory_lengths ``(B,)`` int64, keys ``(B, S, A)``, and the
            initial state: hidden and cell ``(L, B, H)``, context ``(B, D)``, attention and
            coverage ``(B, S)``.
        """
        encoded = self.model.encode(sources, lengths)
        memory, state = self.model.decoder.start(EncoderOutput(encoded.memory, encoded.lengths))
        return (encoded.memory, encoded.lengths, memory.keys, *state)


class StepGraph(nn.Module):
    """One decoder step and the generator of a ``Seq2Seq`` as one traceable module."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.decoder = model.decoder
        self.generator = model.generator

    def forward(
        self,
        tokens: Tensor,
        hidden: Tensor,
        cell: Tensor,
        context: Tensor,
        attention: Tensor,
        coverage: Tensor,
        memory: Tensor,
        keys: Tensor,
        memory_lengths: Tensor,
    ) -> tuple[Tensor, ...]:
        """Advance every row one token.

        Args:
            tokens: ``(B,)`` int64 previous tokens (BOS first; PAD after a row's EOS).
            hidden, cell, context, attention, coverage: the state (``EncoderGraph``'s shapes).
            memory, keys, memory_lengths: from ``EncoderGraph``.

        Returns:
            log_probs ``(B, V)`` (the generator's), and the new state (outputs named
            ``next_hidden`` .. ``next_coverage``), whose attention ``(B, S)`` is this step's
            alignment.
        """
        mask = padding_mask(memory_lengths, memory.size(1))
        state = DecoderState(hidden, cell, context, attention, coverage)
        output, state = self.decoder.step(tokens, DecoderMemory(memory, keys, mask), state)
        return (self.generator(output), *state)


def export_model(checkpoint: str | Path, out: str | Path, export_format: Format) -> list[Path]:
    """Write ``encoder``, ``decoder_step`` (``.onnx`` or ``.pt``) and ``export.json`` to the
    folder ``out`` for the model of ``checkpoint``; returns their paths.

    Raises:
        InputError: an unknown format, ONNX without the onnx package, a checkpoint that is
            missing or cannot be read, or a model with an operation ONNX has no form for.
    """
    if export_format not in FORMATS:
        raise InputError(f"export format must be one of {', '.join(FORMATS)}, got {export_format}")
    if export_format == "onnx" and importlib.util.find_spec("onnx") is None:
        raise InputError(
            "--format onnx needs the onnx package: pip install 'multimodal_s2s[export]'"
        )
    model, tokenizer, config = load_model(checkpoint, "cpu")
    model = exportable(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sources, lengths = example_sources(model, config)
    encoder, step = EncoderGraph(model).eval(), StepGraph(model).eval()
    with torch.no_grad():
        encoder_inputs = (sources,) if lengths is None else (sources, lengths)
        encoded = encoder(*encoder_inputs)
        step_inputs = _step_inputs(encoded)
        step_outputs = step(*step_inputs)
    suffix = SUFFIXES[export_format]
    paths = [out / f"encoder{suffix}", out / f"decoder_step{suffix}"]
    encoder_names = [_sources(model, config)["kind"], "lengths"][: len(encoder_inputs)]
    names = (encoder_names, list(ENCODER_OUTPUTS), list(STEP_INPUTS), list(STEP_OUTPUTS))
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # fused layers that ONNX lacks
    try:
        kept = _export(export_format, (encoder, step), (encoder_inputs, step_inputs), names, paths)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    graphs = {
        "encoder_inputs": _kept(dict(zip(encoder_names, encoder_inputs)), kept),
        "encoder_outputs": dict(zip(ENCODER_OUTPUTS, encoded)),
        "step_inputs": _kept(dict(zip(STEP_INPUTS, step_inputs)), kept),
        "step_outputs": dict(zip(STEP_OUTPUTS, step_outputs)),
    }
    description = describe(model, tokenizer, config, export_format, graphs)
    paths.append(out / "export.json")
    with atomic_write(paths[-1]) as file:
        file.write(json.dumps(description, indent=2) + "\n")
    return paths


def _export(
    export_format: Format,
    modules: tuple[nn.Module, nn.Module],
    inputs: tuple[tuple[Tensor, ...], tuple[Tensor, ...]],
    names: tuple[list[str], ...],
    paths: list[Path],
) -> list[str]:
    """Trace the encoder and the step to ``paths``; returns the names of the inputs the
    written graphs take."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on the frozen control flow
        if export_format == "torchscript":
            for module, example, path in zip(modules, inputs, paths):
                torch.jit.trace(module, example, check_trace=False).save(str(path))
            return names[0] + names[2]
        kept = _onnx(modules[0], inputs[0], paths[0], names[0], names[1])
        return kept + _onnx(modules[1], inputs[1], paths[1], names[2], names[3])


def _kept(tensors: dict[str, Tensor], names: list[str]) -> dict[str, Tensor]:
    return {name: tensor for name, tensor in tensors.items() if name in names}


def example_sources(model: Seq2Seq, config: Config) -> tuple[Tensor, Tensor | None]:
    """A batch of two traced example sources: waveforms of different lengths (speech),
    ``uint8`` images of the configured size, or features (sources without a frontend)."""
    generator = torch.Generator().manual_seed(0)
    if getattr(config.data, "image_size", None) is not None:
        size = getattr(config.data, "image_size", 32)
        images = torch.randint(0, 256, (2, 3, size, size), generator=generator)
        return images.to(torch.uint8 if model.frontend is not None else torch.float32), None
    if model.frontend is not None:
        samples = max(4 * min_samples(model, config), 16 * config.data.features.hop_length)
        lengths = torch.tensor([samples, samples * 3 // 4])
        return 0.1 * torch.randn(2, samples, generator=generator), lengths
    frames = 4 * model.encoder.min_frames
    lengths = torch.tensor([frames, frames * 3 // 4])
    dim = config.encoder.input_dim
    return torch.randn(2, frames, dim, generator=generator), lengths


def min_samples(model: Seq2Seq, config: Config) -> int:
    """The fewest samples a waveform must have for the encoder's ``min_frames`` (the exported
    encoder does not extend shorter ones, as the Python model does)."""
    hop = config.data.features.hop_length
    frames = model.encoder.min_frames * config.data.features.stack_frames
    return (frames - 1) * hop


def _step_inputs(encoded: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """The step's example inputs after the encoder's outputs: BOS for every row."""
    memory, memory_lengths, keys, *state = encoded
    tokens = torch.full((memory.size(0),), BOS_ID, dtype=torch.long)
    return (tokens, *state, memory, keys, memory_lengths)


def _onnx(
    module: nn.Module,
    inputs: tuple[Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
) -> list[str]:
    """Write ``module`` traced on ``inputs`` as an ONNX graph; returns the names of its
    inputs (the exporter leaves out those the graph never reads, such as the previous
    attention for an attention other than location-aware)."""
    axes = {name: _dynamic_axes(name) for name in input_names + output_names}
    try:
        torch.onnx.export(  # the TorchScript-based exporter: a trace, as for torchscript
            module,
            inputs,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes={name: value for name, value in axes.items() if value},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    except torch.onnx.OnnxExporterError as error:
        raise InputError(
            f"{path.stem} has no ONNX form ({str(error).splitlines()[0]}); "
            "--format torchscript exports it"
        ) from error
    import onnx  # an optional dependency (the export extra), as torch.onnx.export needs it

    return [entry.name for entry in onnx.load(str(path)).graph.input]


def _dynamic_axes(name: str) -> dict[int, str]:
    """The axes of a named input or output that vary between calls."""
    name = name.removeprefix("next_")
    if name in ("hidden", "cell"):
        return {1: "batch"}
    if name == "waveforms":
        return {0: "batch", 1: "samples"}
    if name == "features":
        return {0: "batch", 1: "frames"}
    if name in ("memory", "keys", "attention", "coverage"):
        return {0: "batch", 1: "memory"}
    return {0: "batch"}


def describe(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    config: Config,
    export_format: Format,
    graphs: dict[str, dict[str, Tensor]],
) -> dict[str, Any]:
    """The ``export.json`` of an export: its files, the vocabulary and special ids, each
    graph's inputs and outputs (name, dtype, shape: a name for an axis that varies, a number
    for one that is fixed), what the sources are, and what a greedy decoding loop needs."""
    search = config.search
    suffix = SUFFIXES[export_format]
    return {
        "format": export_format,
        "files": {"encoder": f"encoder{suffix}", "decoder_step": f"decoder_step{suffix}"},
        "sources": _sources(model, config),
        "tokenizer": tokenizer.kind,
        "vocabulary": tokenizer.tokens,
        "text": JOINS[tokenizer.kind],
        "special_ids": {"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID, "unk": UNK_ID},
        "encoder": _signature(graphs["encoder_inputs"], graphs["encoder_outputs"]),
        "decoder_step": _signature(graphs["step_inputs"], graphs["step_outputs"]),
        "greedy": {
            "first_token": BOS_ID,
            "end_token": EOS_ID,
            "after_end_token": PAD_ID,
            "never_emit": [PAD_ID, BOS_ID],
            "max_length": search.max_length,
            "max_length_ratio": search.max_length_ratio,
            "no_repeat_ngram_size": search.no_repeat_ngram_size,
            "loop": (
                "run the encoder once; its state outputs are the step's state inputs. Each "
                "step feeds tokens (first_token, then each row's last token, after_end_token "
                "once the row emitted end_token), the state, memory, keys and memory_lengths; "
                "take the arg max of log_probs without never_emit (and, with "
                "no_repeat_ngram_size n > 0, without the tokens that would repeat an n-gram "
                "the row has emitted); a row ends at end_token or after "
                "min(max_length, ceil(max_length_ratio * memory_length)) tokens"
            ),
        },
    }


def _signature(inputs: dict[str, Tensor], outputs: dict[str, Tensor]) -> dict[str, Any]:
    def entries(tensors: dict[str, Tensor]) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "dtype": str(tensor.dtype).removeprefix("torch."),
                "shape": [
                    _dynamic_axes(name).get(axis, size) for axis, size in enumerate(tensor.shape)
                ],
            }
            for name, tensor in tensors.items()
        ]

    return {"inputs": entries(inputs), "outputs": entries(outputs)}


def _sources(model: Seq2Seq, config: Config) -> dict[str, Any]:
    """What the encoder's first input holds; its ``kind`` is that input's name."""
    if isinstance(getattr(model.frontend, "frontend", None), nn.Module):
        features = config.data.features
        return {
            "kind": "waveforms",
            "sample_rate": features.sample_rate,
            "min_samples": min_samples(model, config),
            "padding": "zeros after each waveform's length; lengths gives the valid samples",
        }
    image_size = getattr(config.data, "image_size", None)
    if model.frontend is not None or image_size is not None:
        dtype = "uint8 RGB" if model.frontend is not None else "float32"
        return {"kind": "images", "layout": f"{dtype} (batch, channels, image_size, image_size)"}
    return {"kind": "features", "min_frames": model.encoder.min_frames}


def add_export_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``export`` on the ``ms2s`` sub-command parser."""
    parser = subparsers.add_parser(
        "export", help="write a checkpoint's encoder and one decoder step as ONNX or TorchScript"
    )
    parser.add_argument("--model", type=Path, required=True, help="checkpoint")
    parser.add_argument("--format", choices=FORMATS, required=True, help="onnx or torchscript")
    parser.add_argument("--out", type=Path, required=True, help="folder for the exported files")
    parser.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    check_writable(args.out, folder=True)
    for path in export_model(args.model, args.out, args.format):
        print(path)
    return 0
