"""The sandbox tenant code runs in: Feast's parse and inference of one repo, sealed and bounded.

Feast runs repo code at plan and apply: it imports every module of the repo and calls each
on-demand view's UDF on sample inputs to infer its schema. featureplane runs that in a child
(``python -P -m featureplane.registry.feast_plan plan|apply <repo> <feature_store.yaml>``,
:mod:`.feast_plan`) which

- **holds no platform secret.** Its environment is built from nothing: PATH, HOME and TMPDIR
  in a private folder, LANG, PYTHONPATH for featureplane, and the template's variables, which
  point at a private SQLite registry holding only the tenant's project (:mod:`.staging`) and at
  a Redis that is not there. Never ``os.environ``, the registry URL, the Redis URL or the token
  pepper. It inherits no descriptor, and while it runs the parent is not dumpable, so a child
  that is not root cannot read ``/proc/<parent>/environ``.
- **is walled off where Linux allows it.** When unprivileged user namespaces work (probed once,
  with util-linux ``unshare``), the child gets user, PID, mount and network namespaces of its
  own: it sees no other process (so no one's ``/proc/<pid>/environ``), reaches no network (no
  Redis, no database), and whatever it starts dies with it. Where they do not (many container
  runtimes forbid them), it still runs as the platform's OS user and can read what that user
  can; CI keeps write credentials out of the job that plans pull requests (docs/ci.md).
- **is bounded**: :attr:`~featureplane.settings.Settings.plan_timeout_seconds` of wall-clock
  time, then its whole process group is killed, and
  :attr:`~featureplane.settings.Settings.plan_memory_mb` of address space (``RLIMIT_AS``).

The child reports each step on stderr (:data:`.feast_plan.PROGRESS`: ``importing <file>``, ...).
A child stopped at a limit, exiting on its own or killed fails with one line naming the tenant,
the file of its last step and the limit, e.g. ``tenant 'acme': feature_repo/acme/acme_views.py:
stopped after the 120 s plan time limit (FEATUREPLANE_PLAN_TIMEOUT_SECONDS) while inferring
on-demand feature view 'scores' from sample inputs``. A repo Feast refuses (an exception in a
module, a duplicate name) fails as before, naming the file and line.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from featureplane.confine import (
    die_with_parent,
    limit_address_space,
    undumpable,
    unshare_prefix,
)
from featureplane.errors import FeatureplaneError
from featureplane.feast_config import feast_env, template_path
from featureplane.registry import feast_plan
from featureplane.registry.feast_plan import OUT_OF_MEMORY, PROGRESS, REFUSED
from featureplane.registry.lint import display
from featureplane.settings import Settings
from featureplane.tenancy.spec import TenantSpec

Mode = Literal["plan", "apply"]
# The template names a Redis; the sandbox never talks to one. Port 1: nothing listens there.
_NOWHERE = "redis://127.0.0.1:1"
_UNSHARE = ("--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--net", "--kill-child")


@dataclass(frozen=True)
class Finished:
    document: dict[str, Any]  # what the child printed on stdout
    output: str  # what it (Feast, tenant modules) wrote on stderr, steps left out


def run_sandboxed(
    settings: Settings,
    spec: TenantSpec,
    mode: Mode,
    registry: Path,
    error: type[FeatureplaneError],
) -> Finished:
    """Run the child on the tenant's repo against the staged SQLite ``registry``, to its end.
    Raises ``error`` naming the tenant: one line when the child was stopped, exited or died;
    the file and line of the problem when Feast refused the repo."""
    repo = settings.feature_repo_path / spec.name
    command = [
        *namespaces(),
        sys.executable,
        "-P",  # no script folder or working directory on sys.path
        "-s",
        "-m",
        feast_plan.__name__,
        mode,
        str(repo),
        str(template_path(settings)),
    ]
    with tempfile.TemporaryDirectory(prefix=f"featureplane-{mode}-{spec.name}-") as folder:
        work = Path(folder)
        for sub in ("home", "tmp"):
            (work / sub).mkdir()
        out, err = work / "stdout", work / "stderr"
        # Files, not pipes: a grandchild that escaped the kill cannot hold the parent up.
        with out.open("wb") as stdout, err.open("wb") as stderr, undumpable():
            proc = subprocess.Popen(
                command,
                env=child_env(settings, spec, registry, work),
                cwd=work,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # its own process group, killed whole
                preexec_fn=functools.partial(_bound, settings.plan_memory_mb),
            )
            timed_out = False
            try:
                proc.wait(settings.plan_timeout_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:  # also on KeyboardInterrupt: nothing of the child outlives the call
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return _outcome(
            settings,
            spec,
            mode,
            proc.returncode,
            timed_out,
            out.read_text(errors="replace"),
            err.read_text(errors="replace"),
            error,
        )


def child_env(settings: Settings, spec: TenantSpec, registry: Path, work: Path) -> dict[str, str]:
    """The child's whole environment: nothing from ``os.environ``, no platform secret."""
    sealed = settings.model_copy(update={"redis_url": _NOWHERE, "registry": str(registry)})
    source_root = Path(__file__).resolve().parents[2]  # where the featureplane package is
    path = [str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
    return {
        "PATH": os.pathsep.join(path),
        "HOME": str(work / "home"),
        "TMPDIR": str(work / "tmp"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(source_root),
        "PYTHONDONTWRITEBYTECODE": "1",
        # The template's variables: the project, the staged registry, no Redis, the data folder
        # (repos record their Parquet paths under it).
        **feast_env(sealed, spec.feast_project),
    }


def namespaces() -> tuple[str, ...]:
    """The ``unshare`` prefix that gives the child namespaces of its own, or () where
    unprivileged user namespaces are unavailable (probed once per process)."""
    return unshare_prefix(*_UNSHARE)


def _bound(memory_mb: int) -> None:  # pragma: no cover - runs in the child before exec
    limit_address_space(memory_mb * 1024 * 1024)
    die_with_parent()  # no orphaned child keeps writing after featureplane was killed


# -- what became of the child -----------------------------------------------------------------


def _outcome(
    settings: Settings,
    spec: TenantSpec,
    mode: Mode,
    code: int,
    timed_out: bool,
    stdout: str,
    stderr: str,
    error: type[FeatureplaneError],
) -> Finished:
    lines = stderr.splitlines()
    steps = [line.removeprefix(PROGRESS) for line in lines if line.startswith(PROGRESS)]
    told = "\n".join(line for line in lines if not line.startswith(PROGRESS)).strip()
    done = [step for step in steps if step not in {OUT_OF_MEMORY, REFUSED}]
    where, doing = _step(settings, spec, done[-1] if done else "starting")
    tenant = f"tenant {spec.name!r}"
    if timed_out:
        raise error(
            f"{tenant}: {where}: stopped after the {settings.plan_timeout_seconds:g} s plan "
            f"time limit (FEATUREPLANE_PLAN_TIMEOUT_SECONDS) while {doing}"
        )
    memory = f"the {settings.plan_memory_mb} MB plan memory limit (FEATUREPLANE_PLAN_MEMORY_MB)"
    if OUT_OF_MEMORY in steps:
        raise error(f"{tenant}: {where}: stopped at {memory} while {doing}")
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        hint = f"; perhaps it hit {memory}" if -code in _CRASHES else ""
        raise error(f"{tenant}: {where}: killed by {name} while {doing}{hint}")
    if code == 0:
        document = _document(stdout)
        if document is not None:
            return Finished(document, told)
    if code != 0 and steps and steps[-1] == REFUSED:
        repo = settings.feature_repo_path / spec.name
        tail = "\n".join(told.splitlines()[-15:])
        raise error(f"feast {mode} failed for tenant {spec.name!r} ({repo}):\n{tail}")
    raise error(
        f"{tenant}: {where}: exited with code {code} while {doing} (definitions must not exit)"
    )


_CRASHES = frozenset({signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS})


def _document(stdout: str) -> dict[str, Any] | None:
    """The child's JSON document: its last line (whatever a library wrote to fd 1 comes
    first), or None."""
    lines = stdout.strip().splitlines()
    try:
        document = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _step(settings: Settings, spec: TenantSpec, step: str) -> tuple[str, str]:
    """(the file a step names, what the child was doing) for messages."""
    repo = settings.feature_repo_path / spec.name
    verb, _, rest = step.partition(" ")
    if verb == "importing" and rest:
        return display(repo / rest), "importing it"
    if verb == "inferring" and rest:
        file, _, view = rest.partition("\t")
        return display(repo / file), f"inferring on-demand feature view {view!r} from sample inputs"
    if verb in {"planning", "applying"}:
        return display(repo), f"Feast was {verb} the repo"
    return display(repo), "starting"
