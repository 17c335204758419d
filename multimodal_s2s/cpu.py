"""What the CPU offers, for the bfloat16 settings (``train.cpu_bfloat16``,
``search.cpu_bfloat16``)."""

import functools
from pathlib import Path

BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def has_bfloat16_instructions(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether the CPU lists bfloat16 instructions (AVX512-BF16 or AMX-BF16) among the
    ``flags`` of ``cpuinfo`` (Linux's ``/proc/cpuinfo``); ``None`` when it cannot be read."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return None
    flags = {flag for line in lines if line.startswith("flags") for flag in line.split()}
    return not BFLOAT16_FLAGS.isdisjoint(flags)


def slow_bfloat16_warning(setting: str) -> str | None:
    """A one-line warning for ``setting`` turned on, when this CPU is known to lack bfloat16
    instructions (autocast then emulates bfloat16 and runs slower than float32); else None."""
    if has_bfloat16_instructions() is not False:
        return None
    return (
        f"{setting} is on, but this CPU has no bfloat16 instructions (AVX512-BF16 or AMX), "
        f"so bfloat16 autocast runs slower than float32 here; pass {setting}=false"
    )
