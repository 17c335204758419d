"""Data sources by name: each entry is (DataSource class, its config dataclass)."""

from typing import Any

from multimodal_s2s.data.base import DataSource
from multimodal_s2s.data.images import ImageData, ImageDataConfig
from multimodal_s2s.data.speech import SpeechData, SpeechDataConfig
from multimodal_s2s.data.toy import ToyImageConfig, ToyImages, ToySequenceConfig, ToySequences

SOURCES = {
    "toy_sequences": (ToySequences, ToySequenceConfig),
    "toy_images": (ToyImages, ToyImageConfig),
    "speech": (SpeechData, SpeechDataConfig),
    "images": (ImageData, ImageDataConfig),
}


def build_source(data_config: Any) -> DataSource:
    """The data source a ``data`` config section names (``data_config.name``)."""
    source_class, _ = SOURCES[data_config.name]
    return source_class(data_config)


__all__ = ["SOURCES", "ToySequenceConfig", "build_source"]
