"""A copy of the sample tenants with other quotas, for tests and benchmarks that need small or
huge limits without touching tenants/."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.support.paths import ROOT


def tenants_with_quotas(tmp: Path, quotas: dict[str, dict[str, Any]]) -> Path:
    """``tmp/tenants``: tenants/ with each named tenant's ``quotas`` updated."""
    target = tmp / "tenants"
    shutil.copytree(ROOT / "tenants", target)
    for tenant, values in quotas.items():
        path = target / tenant / "tenant.yaml"
        spec = yaml.safe_load(path.read_text())
        spec["quotas"].update(values)
        path.write_text(yaml.safe_dump(spec))
    return target
