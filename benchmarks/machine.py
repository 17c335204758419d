"""What a benchmark ran on, for the record next to its numbers."""

import os

import torch

from multimodal_s2s.cpu import describe_cpu


def describe(device: torch.device) -> dict[str, object]:
    """The processor (with its widest vector instructions and its CPU count), 1-minute load,
    torch version and device (the GPU's name)."""
    return {
        "machine": describe_cpu(),
        "load_average_1min": os.getloadavg()[0],
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
