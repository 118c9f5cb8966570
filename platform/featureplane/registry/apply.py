"""Running `feast apply` for one tenant's project in the shared registry.

Each apply runs in its own subprocess: Feast imports every module of the repo by bare name and
adds the repo to ``sys.path``, so two tenants' modules in one process would collide.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from featureplane.errors import ApplyError
from featureplane.registry.feast_config import feast_env, template_path
from featureplane.settings import Settings
from featureplane.tenancy.spec import TenantSpec


@dataclass(frozen=True)
class ApplyResult:
    tenant: str
    project: str
    seconds: float
    output: str


def feast_command(settings: Settings, spec: TenantSpec, *args: str) -> list[str]:
    """A `feast` CLI invocation on the tenant's repo with the shared template."""
    feast = Path(sys.executable).with_name("feast")
    launcher = [str(feast)] if feast.exists() else [sys.executable, "-m", "feast.cli.cli"]
    repo = settings.feature_repo_path / spec.name
    return [*launcher, "-c", str(repo), "-f", str(template_path(settings)), *args]


def run_feast(settings: Settings, spec: TenantSpec, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | feast_env(settings, spec.feast_project)
    return subprocess.run(
        feast_command(settings, spec, *args),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def apply_tenant(settings: Settings, spec: TenantSpec) -> ApplyResult:
    repo = settings.feature_repo_path / spec.name
    if not repo.is_dir():
        raise ApplyError(f"{repo}: no Feast definitions for tenant {spec.name!r}")
    started = time.perf_counter()
    proc = run_feast(settings, spec, "apply")
    seconds = time.perf_counter() - started
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-15:])
        raise ApplyError(f"feast apply failed for tenant {spec.name!r} ({repo}):\n{tail}")
    return ApplyResult(spec.name, spec.feast_project, seconds, output)
