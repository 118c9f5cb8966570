"""The life cycle shared by the local servers featureplane starts: stop politely, then kill."""

from __future__ import annotations

import signal
import subprocess
from types import TracebackType
from typing import Self


class LocalServer:
    """A server subprocess used as a context manager; subclasses implement :meth:`start`."""

    stop_signal = signal.SIGTERM
    stop_timeout = 5.0

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        raise NotImplementedError

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
