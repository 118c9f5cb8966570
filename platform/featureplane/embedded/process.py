"""The life cycle shared by the local servers featureplane starts: stop politely, then kill."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from featureplane.errors import FeatureplaneError


class LocalServer:
    """A server subprocess used as a context manager; subclasses implement :meth:`start`."""

    stop_signal = signal.SIGTERM
    stop_timeout = 5.0

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def _spawn(
        self,
        name: str,
        cmd: list[str],
        env: Mapping[str, str],
        log: Path,
        ready: Callable[[], bool],
        timeout: float,
        **popen: Any,
    ) -> Self:
        """Start ``cmd`` with its output in ``log`` and poll ``ready`` until it says yes; a
        process that exits or is not ready in time is an error quoting the log's tail.
        ``popen``: more ``subprocess.Popen`` arguments (``user``/``group`` to drop root)."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self._proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, **popen
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise FeatureplaneError(f"the {name} exited during start-up ({log}):\n{tail}")
            if ready():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise FeatureplaneError(f"the {name} was not ready within {timeout:.0f} s ({log})")
            time.sleep(0.1)

    def _cleanup(self) -> None:
        """Release what :meth:`start` created beside the process (temp dirs); optional."""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(self.stop_signal)
                try:
                    proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self._cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
