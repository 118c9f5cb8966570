"""The repo `feast init` creates (from the installed Feast, unchanged) as a tenant of a throwaway
platform: only a tenant.yaml added, applied and materialized by featureplane's own commands."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.trees import Platform, Tree, cli

TENANT = "quickstart"
# `feast init demo` names its project "demo"; featureplane's lint is made lenient, as a team
# arriving with an existing repo would set it.
TENANT_YAML = "project: demo\nlint: {default: warning}\n"


def feast_init(into: Path) -> Path:
    """The installed Feast's own quickstart repo, as `feast init` writes it."""
    feast = Path(sys.executable).with_name("feast")
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(feast), "init", "demo"], cwd=into, check=True, capture_output=True)
    return into / "demo" / "feature_repo"


def quickstart_tree(root: Path, redis_url: str, extra_definitions: str = "") -> Tree:
    """The quickstart tenant (plus ``extra_definitions`` appended to its definitions), applied
    and materialized with `featureplane apply` and `featureplane materialize`."""
    repo = feast_init(root / "init")
    tree = Platform(root / "platform", redis_url).tree("tree", TENANT, {}, TENANT_YAML)
    target = tree.settings.feature_repo_path / TENANT
    shutil.rmtree(target)
    shutil.copytree(repo, target)
    if extra_definitions:
        with (target / "feature_definitions.py").open("a") as definitions:
            definitions.write(extra_definitions)
    for step in (["apply", TENANT], ["materialize", TENANT]):
        done = cli(tree, *step)
        assert done.returncode == 0, f"featureplane {' '.join(step)}:\n{done.stdout}{done.stderr}"
    return tree


def issue_token(tree: Tree) -> str:
    issued = cli(tree, "tenants", "issue-token", TENANT)
    assert issued.returncode == 0, issued.stderr
    return issued.stdout.strip()
