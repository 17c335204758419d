import pytest
import torch

from multimodal_s2s.config import load_config
from multimodal_s2s.model import build_model

VOCAB = 12


def tiny_model(overrides: list[str], dtype: torch.dtype = torch.float32, seed: int = 0):
    """A small random model in eval mode built from dotted overrides on the defaults."""
    torch.manual_seed(seed)
    config = load_config(None, overrides)
    return build_model(config, VOCAB).to(dtype).eval(), config


SOURCE_SHAPES = {
    "pblstm": [
        "encoder.name=pblstm",
        "encoder.input_dim=6",
        "encoder.hidden_dim=8",
        "encoder.num_layers=2",
    ],
    "cnn": ["encoder.name=cnn", "encoder.channels=[4, 8]", "data.name=toy_images"],
    "resnet": [
        "encoder.name=resnet",
        "encoder.trunk_layers=1",
        "encoder.output_dim=16",
        "data.name=toy_images",
    ],
}
DECODER = ["decoder.hidden_dim=16", "decoder.embedding_dim=8", "decoder.dropout=0.0"]


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
