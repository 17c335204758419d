import pytest
import torch
from torch import nn

from multimodal_s2s.models.decoder import AttentionDecoder, DecoderConfig
from multimodal_s2s.models.encoders import EncoderOutput


class _CountingDropout(nn.Dropout):
    """Dropout that counts its calls (each call in training draws a mask)."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(x)


@pytest.mark.parametrize("num_layers", [1, 3])
def test_training_draws_dropout_masks_only_where_they_are_used(num_layers):
    # Embeddings and the attentional hidden state once each for the whole sequence, and
    # between stacked LSTM layers at every step: never on the top layer's output, which
    # feeds the attention and the output projection undropped.
    config = DecoderConfig(embedding_dim=4, hidden_dim=8, num_layers=num_layers, dropout=0.5)
    decoder = AttentionDecoder(config, 7, 6).train()
    decoder.dropout = _CountingDropout(0.5)
    length = 5
    encoded = EncoderOutput(torch.randn(2, 3, 6), torch.tensor([3, 2]))
    outputs, _ = decoder(encoded, torch.randint(3, 7, (2, length)))
    assert outputs.shape[:2] == (2, length)
    assert decoder.dropout.calls == 2 + (num_layers - 1) * length
