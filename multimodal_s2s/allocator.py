"""Process-wide settings of the C memory allocator, made by the command-line entry points."""

import ctypes
import sys

# glibc's ``mallopt`` parameters (``malloc.h``) and the values set for them.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20  # the largest glibc accepts
TRIM_THRESHOLD_BYTES = 2**30


def reuse_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed memory for the next allocation; returns whether
    the settings were made (only with glibc, on Linux).

    By default glibc maps every block over 128 KB (a limit it raises as such blocks are
    freed) fresh from the kernel and unmaps it when freed, and returns memory freed at the
    top of its heap beyond 128 KB; each page of a fresh mapping then costs a page fault when
    first written. A batched beam-search step allocates and frees several blocks of
    megabytes (the attention energies of every image and beam), so this traffic recurs every
    step; served from the heap, and with freed memory kept at its top, those blocks cost no
    page faults (``recipes/scenes_captioning/experiments.md``). Memory in use at the peak is
    the same; the process keeps what it freed instead of returning it to the system at once.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mmap = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    trim = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    return bool(mmap and trim)
