"""The zygote: one clean process per gateway process that imports Feast once and forks every
transform worker, so starting or replacing a worker costs milliseconds rather than a Feast
import (seconds of CPU that a hostile tenant could otherwise make the machine pay again and
again).

The zygote is started with the same empty environment as the workers and never runs tenant
code itself: it only forks. The gateway sends it a request and one end of a fresh socket pair
(``SCM_RIGHTS`` on a ``SOCK_SEQPACKET`` control socket); the forked child makes that socket its
stdin and stdout and becomes a worker (:func:`featureplane.transform.worker.main`). The zygote
answers with the child's pid and later reports the child's exit status.

Where unprivileged user namespaces work (probed once, with util-linux ``unshare``), the zygote
is started in user, network and IPC namespaces of its own, and so is every worker it forks: no
network interface is up there, so tenant code can open no connection (not even to 127.0.0.1),
and being in a child user namespace it may not read the gateway's ``/proc/<pid>/environ`` or
memory. Everything a worker uses is an inherited descriptor, which a namespace does not cut.
No PID namespace: the pids the zygote reports are the ones the gateway kills.

Control messages, zygote to gateway: ``R`` (ready), ``S<pid>`` (spawned), ``X<pid><status>``
(exited; a negative status is the killing signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import sys
import tempfile
from collections import deque

from featureplane.confine import DUMPABLE, die_with_parent, unshare_prefix

_PID = struct.Struct(">i")
_EXIT = struct.Struct(">ii")  # also a spawn request: memory_mb, nice
# Without --fork, unshare execs the zygote in place: the process the gateway holds, kills and
# whose death kills the workers (PR_SET_PDEATHSIG) is the zygote itself. The platform's user is
# mapped to an unprivileged uid (nobody) inside, so the exec leaves it no capability there: with
# root's (--map-root-user) one tenant's worker could ptrace another's, since all share the
# namespace. --map-user needs util-linux 2.38; older ones fail the probe (no namespaces).
_UNSHARE = ("--user", "--map-user=65534", "--map-group=65534", "--net", "--ipc")


def namespaces() -> tuple[str, ...]:
    """The ``unshare`` prefix that starts the zygote in namespaces of its own, or () where
    unprivileged user namespaces are unavailable (probed once per process)."""
    return unshare_prefix(*_UNSHARE)


def worker_environment() -> dict[str, str]:
    """The zygote's (so every worker's) whole environment: nothing of the gateway's (which
    holds the registry URL, the Redis URL and the pepper), one thread per numeric library (a
    forked child has only the forking thread, and each thread's arena counts against the
    worker's memory limit)."""
    return {
        "PATH": os.defpath,
        "LANG": "C.UTF-8",
        "HOME": tempfile.gettempdir(),
        "FEAST_USAGE": "False",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


class Zygote:
    """The gateway's handle on its zygote process."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._control: socket.socket | None = None
        self._pending: deque[asyncio.Future[int]] = deque()
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._held = False  # this process's dumpable flag is held cleared for the zygote

    async def _ensure(self) -> socket.socket:
        if self._control is not None and self._process and self._process.returncode is None:
            return self._control
        await self.aclose()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # The zygote's workers run tenant code as this OS user: outside a user namespace they
        # could read this process's /proc/<pid>/environ (the platform's secrets) but for this.
        DUMPABLE.hold()
        self._held = True
        try:
            walls = await asyncio.to_thread(namespaces)  # a probe, the first time only
            # -O turns Feast's typeguard checks off: a third of a singleton view's call.
            self._process = await asyncio.create_subprocess_exec(
                *walls, sys.executable, "-I", "-O", "-m", "featureplane.transform.zygote",
                str(theirs.fileno()),
                pass_fds=[theirs.fileno()],
                env=worker_environment(),
                cwd=tempfile.gettempdir(),
            )  # fmt: skip
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(120):  # importing Feast; gateways may start together
                ready = await loop.sock_recv(ours, 64)
            if ready != b"R":
                raise ConnectionError("the transform zygote did not start")
        except BaseException:  # cancelled by a shutdown too: nothing may outlive the attempt
            ours.close()
            await self.aclose()
            raise
        self._control = ours
        self._listener = asyncio.create_task(self._listen(ours))
        return ours

    async def _listen(self, control: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            while message := await loop.sock_recv(control, 64):
                if message[:1] == b"S":
                    (pid,) = _PID.unpack(message[1:])
                    if self._pending:
                        self._pending.popleft().set_result(pid)
                elif message[:1] == b"X":
                    pid, status = _EXIT.unpack(message[1:])
                    self._exits.setdefault(pid, loop.create_future())
                    if not self._exits[pid].done():
                        self._exits[pid].set_result(status)
        except OSError:
            pass
        for waiting in self._pending:
            if not waiting.done():
                waiting.set_exception(ConnectionError("the transform zygote exited"))
        self._pending.clear()

    async def spawn(self, memory_mb: int, nice: int) -> tuple[int, socket.socket]:
        """A new worker: its pid and the gateway's end of its socket."""
        async with self._lock:
            control = await self._ensure()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            spawned: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._pending.append(spawned)
            try:
                socket.send_fds(control, [_EXIT.pack(memory_mb, nice)], [theirs.fileno()])
                theirs.close()
                async with asyncio.timeout(10):
                    pid = await spawned
            except BaseException:
                theirs.close()
                ours.close()
                raise
        self._exits.setdefault(pid, asyncio.get_running_loop().create_future())
        return pid, ours

    async def exit_status(self, pid: int, timeout: float = 1.0) -> int | None:
        """The worker's exit status (negative: the signal that killed it), once it is known."""
        future = self._exits.get(pid)
        if future is None:
            return None
        try:
            async with asyncio.timeout(timeout):
                status = await asyncio.shield(future)
        except TimeoutError:
            return None
        del self._exits[pid]
        return status

    @staticmethod
    def kill(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # each worker leads its own process group

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()  # its workers die with it (PR_SET_PDEATHSIG)
            await self._process.wait()
        self._process = None
        if self._held:
            DUMPABLE.release()
            self._held = False


# -- the zygote process ------------------------------------------------------------------------


def _reap(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        with contextlib.suppress(OSError):
            control.send(b"X" + _EXIT.pack(pid, code))


def _become_worker(control: socket.socket, channel: int, memory_mb: int, nice: int) -> None:
    code = 70
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()
        os.setsid()
        die_with_parent()
        os.dup2(channel, 0)
        os.dup2(channel, 1)
        os.close(channel)
        from featureplane.transform import worker

        code = worker.main([str(memory_mb), str(nice)])
    finally:
        os._exit(code)


def main(argv: list[str]) -> int:
    die_with_parent()
    control = socket.socket(fileno=int(argv[0]))
    # Everything a worker needs, imported once here and shared copy-on-write by every fork.
    import feast.on_demand_feature_view
    import feast.type_map
    import feast.utils
    import pandas  # type: ignore[import-untyped]
    import pyarrow

    from featureplane.transform import worker

    del feast, pandas, pyarrow, worker
    signal.signal(signal.SIGCHLD, lambda *_: _reap(control))
    control.send(b"R")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 64, 1)
        except InterruptedError:
            continue
        if not message:
            return 0  # the gateway went away
        memory_mb, nice = _EXIT.unpack(message)
        (channel,) = fds
        pid = os.fork()
        if pid == 0:
            _become_worker(control, channel, memory_mb, nice)
        os.close(channel)
        control.send(b"S" + _PID.pack(pid))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
