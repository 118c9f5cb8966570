"""Limits a process that will run tenant code sets on itself (standard library only).

Used by the plan/apply child (between fork and exec, where nothing may be loaded: ``prctl`` is
looked up once at import) and by the transform zygote and its workers.
"""

from __future__ import annotations

import contextlib
import ctypes
import resource
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_DUMPABLE = 1, 3, 4


def _libc_prctl() -> Callable[..., int] | None:
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
    return None


prctl = _libc_prctl()  # None off Linux


def die_with_parent() -> None:
    """SIGKILL this process when the thread that started it dies (Linux), so nothing running
    tenant code outlives the featureplane process that started it."""
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def limit_address_space(limit_bytes: int) -> None:
    """Cap the address space (an allocation past it fails: MemoryError in Python), no core files."""
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
