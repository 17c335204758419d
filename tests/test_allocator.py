import platform
import subprocess
import sys

import pytest

# Counts the blocks glibc maps from the kernel one by one (``mallinfo2().hblks``) for four
# tensors of 1-31 MB, in a fresh process, after ``reuse_freed_memory()`` when asked to.
_COUNT_MAPPED_BLOCKS = """
import ctypes, sys, torch
from multimodal_s2s.allocator import reuse_freed_memory

class MallInfo2(ctypes.Structure):  # glibc's struct mallinfo2 (malloc.h)
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
mapped = mallinfo2().hblks
blocks = [torch.empty(size * 2**20, dtype=torch.uint8) for size in (1, 4, 16, 31)]
print(mallinfo2().hblks - mapped)
"""


def _mapped_blocks(setting: str) -> int:
    command = [sys.executable, "-c", _COUNT_MAPPED_BLOCKS, setting]
    return int(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc settings")
def test_reuse_freed_memory_serves_blocks_of_megabytes_from_the_heap():
    # By default glibc maps blocks this size fresh from the kernel: all four, or three where
    # the imports already raised its dynamic mmap threshold past 1 MB (seen on a CUDA image).
    assert _mapped_blocks("default") >= 3
    assert _mapped_blocks("reuse") == 0
