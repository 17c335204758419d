"""Encoders by name: each entry is (encoder class, its config dataclass)."""

from multimodal_s2s.models.encoders.base import Encoder, EncoderOutput
from multimodal_s2s.models.encoders.cnn import CNNConfig, CNNEncoder
from multimodal_s2s.models.encoders.pblstm import (
    ConvPBLSTMConfig,
    PBLSTMConfig,
    PyramidalBLSTMEncoder,
)
from multimodal_s2s.models.encoders.resnet import ResNetConfig, ResNetEncoder

ENCODERS = {
    "pblstm": (PyramidalBLSTMEncoder, PBLSTMConfig),
    "conv_pblstm": (PyramidalBLSTMEncoder, ConvPBLSTMConfig),
    "cnn": (CNNEncoder, CNNConfig),
    "resnet": (ResNetEncoder, ResNetConfig),
}

__all__ = ["ENCODERS", "Encoder", "EncoderOutput"]
