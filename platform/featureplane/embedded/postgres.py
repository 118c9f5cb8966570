"""A throwaway PostgreSQL cluster on a free loopback port (the tests' SQL registry at scale).

Uses the server binaries of Debian's ``postgresql`` package (``initdb``, ``postgres``), found on
``PATH`` or under ``/usr/lib/postgresql/<version>/bin``. ``postgres`` runs in the foreground as
the :class:`~featureplane.embedded.process.LocalServer` child, so stopping it is a signal
(SIGINT: PostgreSQL's "fast" shutdown). Trust authentication on loopback, ``fsync=off``: a
test fixture, never a deployment. As root, the server runs as the ``postgres`` user (initdb
refuses root).

:meth:`EmbeddedPostgres.halt` stops the server the way a crash does (SIGQUIT, "immediate"
shutdown) but keeps its data directory and port: :meth:`~EmbeddedPostgres.start` brings the same
cluster back, with crash recovery, which is what the registry outage tests need.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Self

from featureplane.embedded.process import LocalServer
from featureplane.embedded.redis import free_port
from featureplane.errors import ConfigError

SERVER_USER = "postgres"  # who runs the server when we are root


def postgres_binary(name: str) -> str:
    """``initdb``, ``postgres`` …: from ``PATH``, else the newest Debian cluster version."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise ConfigError(
        f"no PostgreSQL {name} binary found: install Debian's postgresql (server binaries)"
    )


class EmbeddedPostgres(LocalServer):
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back sessions, checkpoint, exit
    stop_timeout = 15.0

    def __init__(
        self, port: int | None = None, database: str = "registry", user: str = "featureplane"
    ) -> None:
        super().__init__()
        self.port = port or free_port()
        self.database = database
        self.user = user
        self._root: Path | None = None
        self._created = False

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def log(self) -> Path:
        if self._root is None:
            raise ConfigError("EmbeddedPostgres has not been started")
        return self._root / "postgres.log"

    def _drop(self) -> dict[str, Any]:
        """Popen arguments that drop root to the ``postgres`` user (nothing otherwise)."""
        if os.geteuid() != 0:
            return {}
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise ConfigError(
                f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL as"
            ) from None
        return {"user": SERVER_USER, "group": SERVER_USER, "extra_groups": []}

    def _initdb(self) -> Path:
        root = Path(tempfile.mkdtemp(prefix="featureplane-pg-"))
        self._root = root
        drop = self._drop()
        if drop:
            shutil.chown(root, SERVER_USER, SERVER_USER)
        cmd = [
            postgres_binary("initdb"), "-D", str(root / "data"), "-U", self.user,
            "--auth=trust", "-E", "UTF8", "--no-sync",
        ]  # fmt: skip
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            check=False,
            **drop,
        )
        if done.returncode != 0:
            raise ConfigError(f"initdb failed in {root}: {done.stderr.strip()[-2000:]}")
        return root

    def _accepts(self, database: str) -> bool:
        import psycopg

        try:
            with psycopg.connect(
                host="127.0.0.1", port=self.port, user=self.user, dbname=database, connect_timeout=1
            ):
                return True
        except psycopg.Error:
            return False

    def start(self, timeout: float = 30.0) -> Self:
        """Start the server (initializing the cluster and its database the first time)."""
        root = self._root or self._initdb()
        cmd = [
            postgres_binary("postgres"), "-D", str(root / "data"), "-p", str(self.port),
            "-k", str(root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
        ]  # fmt: skip
        env = dict(os.environ)
        self._spawn("PostgreSQL server", cmd, env, self.log, self._ready, timeout, **self._drop())
        if not self._created:
            import psycopg

            with psycopg.connect(
                host="127.0.0.1", port=self.port, user=self.user, dbname="postgres", autocommit=True
            ) as conn:
                conn.execute(f'CREATE DATABASE "{self.database}"')  # our own name, not input
            self._created = True
        return self

    def _ready(self) -> bool:
        return self._accepts("postgres")

    def halt(self) -> None:
        """Stop the server as a crash would (SIGQUIT: "immediate" shutdown, no checkpoint),
        keeping its data directory and port, so :meth:`start` brings the same cluster back."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _cleanup(self) -> None:
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
            self._created = False
