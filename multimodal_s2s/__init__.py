"""Attention seq2seq for speech recognition and image captioning.

The Python API: ``Transcriber`` (recordings to text) and ``Captioner`` (images to captions),
each made with ``from_checkpoint`` and returning ``Result`` objects. They are imported on first
use (``__getattr__``), so that importing a submodule does not load the whole package.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multimodal_s2s.inference.caption import Captioner
    from multimodal_s2s.inference.decoding import Result
    from multimodal_s2s.inference.transcribe import Transcriber

__all__ = ["Captioner", "Result", "Transcriber"]


def __getattr__(name: str) -> Any:
    if name == "Transcriber":
        from multimodal_s2s.inference.transcribe import Transcriber

        return Transcriber
    if name == "Captioner":
        from multimodal_s2s.inference.caption import Captioner

        return Captioner
    if name == "Result":
        from multimodal_s2s.inference.decoding import Result

        return Result
    raise AttributeError(f"module 'multimodal_s2s' has no attribute {name!r}")
