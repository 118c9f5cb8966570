"""One-tenant repo trees for governed `featureplane plan` / `apply`: each tree is a copy of the
repository's tenant folders holding one tenant, on a data folder and SQLite registry shared by
every tree of a test module, and the real CLI run in one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from featureplane.embedded.gateway import settings_env
from featureplane.registry.apply import apply_tenant
from featureplane.settings import Settings
from featureplane.tenancy.catalog import load_spec
from tests.support.paths import ROOT
from tests.support.settings import make_settings

OWNER = "ml@example.com"
TENANT_YAML = """\
name: {tenant}
owners: [{{name: ML team, email: {owner}}}]
cost_centre: CC-0001
sla: {{latency_p99_ms: 10}}
"""


@dataclass(frozen=True)
class Tree:
    """A copy of the repository's tenant folders holding one tenant, with its settings."""

    root: Path
    tenant: str
    settings: Settings

    @property
    def env(self) -> dict[str, str]:
        return settings_env(self.settings)


@dataclass(frozen=True)
class Platform:
    """One data folder and SQLite registry shared by every tree of a test module."""

    root: Path
    redis_url: str

    def tree(self, name: str, tenant: str, modules: dict[str, str], tenant_yaml: str = "") -> Tree:
        """The tenant's repo holding ``modules``; ``tenant_yaml`` is appended to its tenant.yaml."""
        root = self.root / name
        repo = root / "feature_repo" / tenant
        repo.mkdir(parents=True)
        shutil.copy(ROOT / "feature_repo" / "feature_store.yaml", root / "feature_repo")
        for file, text in modules.items():
            (repo / file).write_text(text)
        (root / "tenants" / tenant).mkdir(parents=True)
        (root / "tenants" / tenant / "tenant.yaml").write_text(
            TENANT_YAML.format(tenant=tenant, owner=OWNER) + tenant_yaml
        )
        settings = make_settings(
            self.root / "data", self.redis_url, registry=str(self.root / "registry.db")
        ).model_copy(
            update={"tenants_dir": root / "tenants", "feature_repo_dir": root / "feature_repo"}
        )
        return Tree(root, tenant, settings)

    def applied(self, name: str, tenant: str, modules: dict[str, str]) -> Tree:
        """A tree whose definitions are in the registry (applied without the gate)."""
        tree = self.tree(name, tenant, modules)
        spec = load_spec(tree.settings.tenants_path / tenant / "tenant.yaml")
        apply_tenant(tree.settings, spec)
        return tree


def cli(tree: Tree, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real `featureplane` command, run in the tree's root."""
    clean = {k: v for k, v in os.environ.items() if k not in {"GIT_COMMIT", "GITHUB_SHA"}}
    return subprocess.run(
        [sys.executable, "-m", "featureplane.cli", *args],
        cwd=tree.root,
        env=clean | tree.env | {"COLUMNS": "200"} | env,
        capture_output=True,
        text=True,
        check=False,
    )
