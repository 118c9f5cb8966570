"""Limits a process that will run tenant code sets on itself, and the namespaces it is started
in (standard library only).

Used by the plan/apply child (between fork and exec, where nothing may be loaded: ``prctl`` is
looked up once at import) and by the transform zygote and its workers.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import resource
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

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


@functools.cache
def unshare_prefix(*flags: str) -> tuple[str, ...]:
    """The util-linux ``unshare`` argv prefix that starts a command with ``flags``, or () where
    that fails: no ``unshare``, or unprivileged user namespaces forbidden (most container
    runtimes' default seccomp). Probed once per process and set of flags."""
    unshare = shutil.which("unshare", path="/usr/bin:/bin")
    if unshare is None:
        return ()
    command = (unshare, *flags)
    try:
        probe = subprocess.run([*command, "true"], env={}, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ()
    return command if probe.returncode == 0 else ()


class _Dumpable:
    """This process's dumpable flag, cleared while anything that runs tenant code as the same OS
    user is alive (a sandboxed plan child, a transform zygote and its workers; threads may hold
    several) and restored after the last: a non-dumpable process's /proc files (``environ``
    with the platform's secrets, ``mem``) are root's, so those children cannot read them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._was = 1

    def hold(self) -> None:
        if prctl is None:
            return
        with self._lock:
            if self._holders == 0:
                self._was = prctl(PR_GET_DUMPABLE)
                prctl(PR_SET_DUMPABLE, 0)
            self._holders += 1

    def release(self) -> None:
        if prctl is None:
            return
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._was == 1:
                prctl(PR_SET_DUMPABLE, 1)

    @contextlib.contextmanager
    def cleared(self) -> Iterator[None]:
        self.hold()
        try:
            yield
        finally:
            self.release()


DUMPABLE = _Dumpable()
undumpable = DUMPABLE.cleared
