"""What the CPU offers: bfloat16 instructions for the bfloat16 settings (``train.cpu_bfloat16``,
``search.cpu_bfloat16``), and a one-line description for the record next to measured numbers
(two hosts that report the same processor name can differ in their vector instructions, and
with them in speed)."""

import functools
import os
import platform
from pathlib import Path
from typing import NamedTuple

CPUINFO = Path("/proc/cpuinfo")
BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
VECTOR_LEVELS = (
    ("amx_bf16", "AMX-BF16"),
    ("avx512_bf16", "AVX512-BF16"),
    ("avx512f", "AVX-512 without bfloat16"),
    ("avx2", "AVX2 without AVX-512"),
)


class CpuInfo(NamedTuple):
    """The processor's model name and the instruction flags Linux lists for it."""

    model: str
    flags: frozenset[str]


@functools.cache
def read_cpuinfo(cpuinfo: Path = CPUINFO) -> CpuInfo | None:
    """The first ``model name`` and the union of the ``flags`` lines of ``cpuinfo`` (Linux's
    ``/proc/cpuinfo``); ``None`` when it cannot be read."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return None
    models = [line.partition(":")[2].strip() for line in lines if line.startswith("model name")]
    flags = {flag for line in lines if line.startswith("flags") for flag in line.split()}
    return CpuInfo(models[0] if models else "unknown processor", frozenset(flags))


def has_bfloat16_instructions(cpuinfo: Path = CPUINFO) -> bool | None:
    """Whether the CPU lists bfloat16 instructions (AVX512-BF16 or AMX-BF16) among the
    ``flags`` of ``cpuinfo``; ``None`` when it cannot be read."""
    info = read_cpuinfo(cpuinfo)
    return None if info is None else not BFLOAT16_FLAGS.isdisjoint(info.flags)


def describe_cpu(cpuinfo: Path = CPUINFO) -> str:
    """The processor, its architecture, the CPUs this machine has and its widest vector
    instructions, e.g. ``"AMD EPYC (x86_64), 2 CPUs, AVX2 without AVX-512"``."""
    machine = f"({platform.machine()}), {os.cpu_count()} CPUs"
    info = read_cpuinfo(cpuinfo)
    if info is None:
        return f"unknown processor {machine}"
    level = next((name for flag, name in VECTOR_LEVELS if flag in info.flags), "without AVX2")
    return f"{info.model} {machine}, {level}"


def slow_bfloat16_warning(setting: str) -> str | None:
    """A one-line warning for ``setting`` turned on, when this CPU is known to lack bfloat16
    instructions (autocast then emulates bfloat16 and runs slower than float32); else None."""
    if has_bfloat16_instructions() is not False:
        return None
    return (
        f"{setting} is on, but this CPU has no bfloat16 instructions (AVX512-BF16 or AMX), "
        f"so bfloat16 autocast runs slower than float32 here; pass {setting}=false"
    )
