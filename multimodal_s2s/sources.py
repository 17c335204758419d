"""Data sources by name: each entry is (DataSource class, its config dataclass)."""

from multimodal_s2s.data.images import ImageData, ImageDataConfig
from multimodal_s2s.data.speech import SpeechData, SpeechDataConfig
from multimodal_s2s.data.toy import ToyImageConfig, ToyImages, ToySequenceConfig, ToySequences

SOURCES = {
    "toy_sequences": (ToySequences, ToySequenceConfig),
    "toy_images": (ToyImages, ToyImageConfig),
    "speech": (SpeechData, SpeechDataConfig),
    "images": (ImageData, ImageDataConfig),
}

__all__ = ["SOURCES", "ToySequenceConfig"]
