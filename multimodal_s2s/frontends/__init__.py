"""Frontends: the model-side preprocessing of a modality, saved with the model (log-mel
features with SpecAugment for speech, normalisation and augmentation of 8-bit images), and
the test-time views they can decode a source in.

Which frontend a model has follows from its data source's name (``FRONTENDS``); sources
that are not listed (the toy tasks) give the encoder their tensors as they are.
"""

from collections.abc import Callable
from typing import Any

from torch import nn

from multimodal_s2s.frontends.features import FeaturePipeline
from multimodal_s2s.frontends.image import ImageFrontend

FRONTENDS: dict[str, Callable[[Any], nn.Module]] = {
    "speech": lambda data: FeaturePipeline(data.features),
    "images": lambda data: ImageFrontend(augment=data.augment, augmentation=data.augmentation),
}


def build_frontend(data_config: Any) -> nn.Module | None:
    """The frontend for the data source that ``data_config.name`` names, built from that
    ``data`` config section; ``None`` for a source without one."""
    builder = FRONTENDS.get(data_config.name)
    return None if builder is None else builder(data_config)


def decoding_views(data_config: Any) -> list[dict[str, Any]]:
    """The test-time views that ``data_config.test_views`` asks for, as keyword arguments
    of the frontend (``SpeechViews``, ``ImageViews``); ``[{}]`` (the source as it is) for a
    source without views."""
    views = getattr(data_config, "test_views", None)
    return [{}] if views is None else views.variants()
