"""What a benchmark ran on, for the record next to its numbers."""

import os
import platform

import torch


def describe(device: torch.device) -> dict[str, object]:
    """The processor, core count, 1-minute load, torch version and device (the GPU's name)."""
    return {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_1min": os.getloadavg()[0],
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
