"""The top-level model and the one place that builds it from a config."""

from typing import Any

import torch
from torch import Tensor, nn

from multimodal_s2s.errors import InputError
from multimodal_s2s.frontends import build_frontend
from multimodal_s2s.models.bag_of_words import BagOfWordsHead
from multimodal_s2s.models.ctc import CTCHead, ctc_frames
from multimodal_s2s.models.decoder import AttentionDecoder
from multimodal_s2s.models.encoders import ENCODERS, Encoder, EncoderOutput
from multimodal_s2s.models.generator import Generator


class Seq2Seq(nn.Module):
    """``frontend`` (optional, e.g. log-mel) -> encoder -> attention decoder -> generator.

    ``ctc`` and ``bag_of_words`` (optional) are the heads of auxiliary losses on the encoder
    output (``ctc.py``, ``bag_of_words.py``); beam search can use them too
    (``search.ctc_weight``, ``search.bag_of_words_weight``).
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: AttentionDecoder,
        generator: Generator,
        frontend: nn.Module | None = None,
        ctc: CTCHead | None = None,
        bag_of_words: BagOfWordsHead | None = None,
    ) -> None:
        super().__init__()
        self.frontend = frontend
        self.encoder = encoder
        self.decoder = decoder
        self.generator = generator
        self.ctc = ctc
        self.bag_of_words = bag_of_words

    def encode(
        self, sources: Tensor, lengths: Tensor | None = None, **variant: Any
    ) -> EncoderOutput:
        """Raw sources (``(B, N)`` waveforms, ``(B, T, F)`` features, ``(B, C, H, W)`` images)
        -> memory ``(B, S, D)`` and lengths ``(B,)``. ``variant``: test-time changes for the
        frontend, among those it lists in ``variants`` (``speed`` and ``warp`` for speech,
        ``crop`` for images; ``SearchConfig.variants``). Sequences shorter than the
        encoder's ``min_frames`` (a click of audio) are extended with zero frames to it
        (``_extend_short_sequences``), so that they decode instead of failing."""
        if self.frontend is not None:
            sources, lengths = self.frontend(sources, lengths, **variant)
        if lengths is not None:
            sources, lengths = _extend_short_sequences(sources, lengths, self.encoder.min_frames)
        return self.encoder(sources, lengths)

    def forward(
        self, sources: Tensor, lengths: Tensor | None, inputs: Tensor
    ) -> tuple[Tensor, Tensor, EncoderOutput]:
        """Teacher-forced log-probabilities.

        Args:
            sources, lengths: as for ``encode``.
            inputs: ``(B, L)`` decoder inputs ``BOS y_1 .. y_{m-1}``.

        Returns:
            log-probabilities ``(B, L, V)``, attention ``(B, L, S)``, and the encoder output.
        """
        encoded = self.encode(sources, lengths)
        outputs, weights = self.decoder(encoded, inputs, sample=self._sample)
        return self.generator(outputs), weights, encoded

    def ctc_log_probs(self, encoded: EncoderOutput) -> tuple[Tensor, Tensor]:
        """CTC log-probabilities ``(B, S_c, V)`` float32 (blank = PAD) and lengths ``(B,)``
        over the encoder's CTC frames (``ctc.ctc_frames``); needs a model built with CTC."""
        if self.ctc is None:
            raise ValueError("this model has no CTC head (build it with loss.ctc_weight > 0)")
        frames, lengths = ctc_frames(encoded)[:2]
        return self.ctc(frames), lengths

    def _sample(self, output: Tensor) -> Tensor:
        """``(N, H)`` decoder outputs -> ``(N,)`` tokens drawn from the generator's
        distribution by the Gumbel-max trick, which (unlike ``multinomial``) tolerates a
        non-finite row: its batch is then skipped by the trainer instead of crashing it."""
        log_probs = self.generator(output)
        uniform = torch.rand_like(log_probs).clamp_(min=1e-20)
        return (log_probs - torch.log(-torch.log(uniform))).argmax(-1)


def _extend_short_sequences(frames: Tensor, lengths: Tensor, minimum: int) -> tuple[Tensor, Tensor]:
    """``(B, T, F)`` frames and ``(B,)`` lengths, with every sequence shorter than ``minimum``
    frames extended by zero frames (the normalised features' mean) to ``minimum``; the
    others are unchanged. A short sequence gets the same frames alone and in a batch."""
    if int(lengths.min()) >= minimum:
        return frames, lengths
    lengths = lengths.to(frames.device)
    if frames.size(1) < minimum:
        frames = nn.functional.pad(frames, (0, 0, 0, minimum - frames.size(1)))
    short = (lengths < minimum).unsqueeze(1)
    beyond = torch.arange(frames.size(1), device=frames.device) >= lengths.unsqueeze(1)
    return frames.masked_fill((short & beyond).unsqueeze(2), 0.0), lengths.clamp(min=minimum)


def build_model(config, vocab_size: int) -> Seq2Seq:
    """Build every part from a ``Config`` (see ``config.py``) and a vocabulary size.

    The frontend (e.g. log-mel features) is the one for the data source ``config.data`` names
    (``frontends.FRONTENDS``).
    The CTC head exists only with ``loss.ctc_weight > 0`` and the bag-of-words head only with
    ``loss.bag_of_words_weight > 0``; they are built last, so the other parts start from the
    same weights with and without them.
    """
    frontend = build_frontend(config.data)
    _check_input_dim(frontend, config)
    encoder_class, _ = ENCODERS[config.encoder.name]
    encoder = encoder_class(config.encoder)
    decoder_config = config.decoder
    if config.generator.tie_weights and decoder_config.output_dim is None:
        decoder_config = type(decoder_config)(
            **{**vars(decoder_config), "output_dim": decoder_config.embedding_dim}
        )
    decoder = AttentionDecoder(decoder_config, vocab_size, encoder.output_dim)
    tied = decoder.embedding if config.generator.tie_weights else None
    generator = Generator(decoder.output_dim, vocab_size, tied)
    ctc = None
    if config.loss.ctc_weight > 0:
        ctc_dim = encoder.auxiliary_dim or encoder.output_dim
        ctc = CTCHead(ctc_dim, vocab_size)
    bag_of_words = None
    if config.loss.bag_of_words_weight > 0:
        bag_of_words = BagOfWordsHead(encoder.output_dim, vocab_size)
    return Seq2Seq(encoder, decoder, generator, frontend, ctc, bag_of_words)


def _check_input_dim(frontend: nn.Module | None, config) -> None:
    """Raise an ``InputError`` when the features a frame that the data gives (the
    frontend's ``output_dim``, or ``data.feature_dim`` for sources without a frontend) and
    the encoder's ``input_dim`` both exist and differ."""
    features = getattr(frontend, "output_dim", getattr(config.data, "feature_dim", None))
    declared = getattr(config.encoder, "input_dim", None)
    if features is not None and declared is not None and features != declared:
        raise InputError(
            f"encoder.input_dim is {declared} but the data gives {features} features a "
            "frame (data.features: num_mel_bins times stack_frames; data.feature_dim)"
        )
