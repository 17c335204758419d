"""Choosing the device a command runs on, and the numerics it runs with there."""

import torch

from multimodal_s2s.errors import InputError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as given.

    Raises:
        InputError: ``name`` is not a device name, or names CUDA where there is none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InputError(f"device {name!r}: not a device name (cpu, cuda, auto)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r}: CUDA is not available")
    return device


def full_float32_on_cuda() -> None:
    """Make cuDNN run float32 convolutions and LSTMs in full float32, for this process.

    PyTorch lets cuDNN compute them in TF32 (a 10-bit mantissa) by default, and the rounding
    then depends on the kernel picked for each batch shape, so that a source can decode
    differently alone than in a batch (``benchmarks/beam_search_speed.py`` checks it). The
    ``ms2s`` command line calls this so that no result depends on the batch size;
    mixed-precision training (float16 under autocast) is not affected.
    """
    torch.backends.cudnn.allow_tf32 = False
