"""Malformed tenant.yaml and feature files, through the real `featureplane` command.

A broken tenant.yaml makes `featureplane tenants validate` exit 1 with ``<file>: <field>:
<problem>`` and no traceback. A broken feature file makes `featureplane plan` and `featureplane
apply` exit 1 naming the file, and leaves the registry exactly as it was: nothing of the broken
tenant is half-applied, no other tenant is touched.

Everything works on copies of tenants/ and feature_repo/ under tmp_path.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from featureplane.embedded.gateway import settings_env
from featureplane.embedded.redis import EmbeddedRedis
from featureplane.registry.apply import apply_tenant
from featureplane.settings import Settings
from featureplane.tenancy.catalog import TenantCatalog
from tests.support.cli import run_cli
from tests.support.paths import ROOT
from tests.support.settings import make_settings


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


# -- tenant.yaml -----------------------------------------------------------------------------

# (id, tenant, edit of its tenant.yaml, the field named, words of the problem)
Edit = Callable[[Path], object]


def _sub(old: str, new: str) -> Edit:
    return lambda path: _replace(path, old, new)


def _write(data: bytes) -> Edit:
    return lambda path: path.write_bytes(data)


SPECS: list[tuple[str, str, Edit, str, str]] = [
    ("yaml syntax error", "fraud", _sub("quotas:\n", "quotas: [\n"), "line ", "not valid YAML"),
    ("tab indentation", "fraud", _sub("  burst: 1000", "\tburst: 1000"), "line ", "not valid YAML"),
    ("duplicate key", "fraud", _sub("  burst: 1000", "  burst: 1000\n  burst: 10"),
     "line 16", "duplicate key 'burst'"),
    ("not utf-8", "fraud", _write(b"name: fraud\ndescription: caf\xe9\n"), "<file>", "not UTF-8"),
    ("empty file", "fraud", _write(b""), "<file>", "must be a YAML mapping"),
    ("a list, not a mapping", "fraud", _write(b"- name: fraud\n"), "<file>", "YAML mapping"),
    ("quota of the wrong type", "fraud",
     _sub("  requests_per_second: 500", "  requests_per_second: fast"),
     "quotas.requests_per_second", "valid number"),
    ("quota as a yes/no", "fraud", _sub("  burst: 1000", "  burst: yes"),
     "quotas.burst", "valid integer"),
    ("quota as a quoted number", "fraud", _sub("  burst: 1000", '  burst: "1000"'),
     "quotas.burst", "valid integer"),
    ("fractional integer quota", "fraud",
     _sub("  max_entities_per_request: 100", "  max_entities_per_request: 100.5"),
     "quotas.max_entities_per_request", "valid integer"),
    ("infinite quota", "fraud", _sub("  requests_per_second: 500", "  requests_per_second: .inf"),
     "quotas.requests_per_second", "finite number"),
    ("negative quota", "fraud", _sub("  max_body_bytes: 65536", "  max_body_bytes: -1"),
     "quotas.max_body_bytes", "greater than 0"),
    ("zero quota", "fraud",
     _sub("  max_concurrent_requests: 64", "  max_concurrent_requests: 0"),
     "quotas.max_concurrent_requests", "greater than 0"),
    ("negative SLA", "fraud", _sub("  latency_p99_ms: 10", "  latency_p99_ms: -10"),
     "sla.latency_p99_ms", "greater than 0"),
    ("availability over 1", "fraud", _sub("  availability: 0.999", "  availability: 99.9"),
     "sla.availability", "less than 1"),
    ("unknown top-level field", "fraud", _sub("cost_centre:", "colour: blue\ncost_centre:"),
     "colour", "Extra inputs are not permitted"),
    ("unknown quota", "fraud",
     _sub("  burst: 1000", "  burst: 1000\n  max_rows: 3"), "quotas.max_rows", "Extra inputs"),
    ("missing owners", "fraud",
     _sub("owners:\n  - name: Fraud ML team\n    email: fraud-ml@example.com\n", ""),
     "owners", "Field required"),
    ("empty owners", "fraud",
     _sub("owners:\n  - name: Fraud ML team\n    email: fraud-ml@example.com\n", "owners: []\n"),
     "owners", "at least 1 item"),
    ("owner without email", "fraud", _sub("    email: fraud-ml@example.com\n", ""),
     "owners.0.email", "Field required"),
    ("name mismatching its folder", "fraud", _sub("name: fraud", "name: risk"),
     "name", "is 'risk' but the folder is 'fraud'"),
    ("reader that is no tenant", "pricing", _sub("tenants: [recsys]", "tenants: [marketing]"),
     "sharing.0.tenants", "unknown tenant 'marketing'"),
    ("reader that is itself", "pricing", _sub("tenants: [recsys]", "tenants: [pricing]"),
     "sharing.0.tenants", "cannot share with itself"),
    ("reader not a tenant name", "pricing", _sub("tenants: [recsys]", "tenants: [Rec-Sys]"),
     "sharing.0.tenants.0", "pattern"),
    ("grant naming nothing", "pricing", _sub("    feature_views: [product_price]\n", ""),
     "sharing.0", "at least one feature view"),
    ("bad quality policy", "pricing", _sub("  product_price: strict", "  product_price: maybe"),
     "quality.product_price", "'strict' or 'warn'"),
    ("unknown lint rule", "pricing", _sub("\nquality:", "\nlint: {ownr: off}\nquality:"),
     "lint", "'ownr' is not a lint rule (rules: description, entity-owner"),
    ("bad lint level", "pricing", _sub("\nquality:", "\nlint: {owner: never}\nquality:"),
     "lint.owner", "'error', 'warning' or 'off'"),
    ("feast's rule is not the tenant's", "pricing",
     _sub("\nquality:", "\nlint: {feast: off}\nquality:"),
     "lint", "'feast' is not a lint rule"),
]  # fmt: skip


def _cli_in_process(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    *args: str,
) -> tuple[int, str]:
    """`featureplane ARGS` in this process (its entry point, error handling included): the
    exit code and stderr. The table runs this way; the subprocess test below the real one."""
    from featureplane import cli

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", ["featureplane", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("tenant", "edit", "field", "problem"), [s[1:] for s in SPECS],
                         ids=[s[0] for s in SPECS])  # fmt: skip
def test_malformed_tenant_yaml_names_file_and_field(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tenant: str,
    edit: Edit,
    field: str,
    problem: str,
) -> None:
    tenants = tmp_path / "tenants"
    shutil.copytree(ROOT / "tenants", tenants)
    spec_file = tenants / tenant / "tenant.yaml"
    edit(spec_file)
    env = {
        "FEATUREPLANE_TENANTS_DIR": str(tenants),
        "FEATUREPLANE_FEATURE_REPO_DIR": str(ROOT / "feature_repo"),
        "FEATUREPLANE_DATA_DIR": str(tmp_path / "data"),
    }
    code, stderr = _cli_in_process(monkeypatch, capsys, env, "tenants", "validate")
    assert code == 1, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if str(spec_file) in line]
    assert lines, stderr
    assert any(f"{spec_file}: {field}" in line and problem in line for line in lines), stderr


def test_every_broken_file_is_named_at_once(tmp_path: Path) -> None:
    """The real command: two broken tenants, both named in one run, no traceback; a tenant
    sharing with a broken one is not blamed for it ("unknown tenant"). Every command that
    loads the tenants says the same."""
    tenants = tmp_path / "tenants"
    shutil.copytree(ROOT / "tenants", tenants)
    _replace(tenants / "fraud" / "tenant.yaml", "  burst: 1000", "  burst: -5")
    _replace(tenants / "recsys" / "tenant.yaml", "cost_centre:", "costcentre:")
    env = {
        "FEATUREPLANE_TENANTS_DIR": str(tenants),
        "FEATUREPLANE_FEATURE_REPO_DIR": str(ROOT / "feature_repo"),
    }
    proc = run_cli("tenants", "validate", env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert f"{tenants / 'fraud' / 'tenant.yaml'}: quotas.burst:" in proc.stderr
    assert f"{tenants / 'recsys' / 'tenant.yaml'}: costcentre:" in proc.stderr
    assert f"{tenants / 'recsys' / 'tenant.yaml'}: cost_centre: Field required" in proc.stderr
    assert "pricing" not in proc.stderr  # pricing shares with recsys, which is only broken
    assert "Traceback" not in proc.stderr
    listed = run_cli("tenants", "list", env=env, cwd=tmp_path)
    assert listed.returncode == 1
    assert listed.stderr == proc.stderr


# -- feature files -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    root: Path
    settings: Settings

    def env(self) -> dict[str, str]:
        return settings_env(self.settings)

    def registry(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every registry table (protos as bytes), all projects."""
        with closing(sqlite3.connect(str(self.settings.registry))) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            return {t: sorted(db.execute(f'SELECT * FROM "{t}"'), key=repr) for t in tables}


@pytest.fixture(scope="module")
def platform(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Platform:
    """fraud and recsys applied into a fresh SQLite registry, from copies of the repo folders."""
    root = tmp_path_factory.mktemp("malformed")
    shutil.copytree(ROOT / "tenants", root / "tenants")
    shutil.copytree(ROOT / "feature_repo", root / "feature_repo")
    settings = make_settings(
        root / "data", redis_server.url, registry=str(root / "registry.db")
    ).model_copy(
        update={"tenants_dir": root / "tenants", "feature_repo_dir": root / "feature_repo"}
    )
    catalog = TenantCatalog.load(settings.tenants_path, settings.feature_repo_path)
    for tenant in ("fraud", "recsys"):
        apply_tenant(settings, catalog[tenant])
    return Platform(root, settings)


DEFS = "fraud_definitions.py"
GHOST = """\
from datetime import timedelta

from feast import Entity, FeatureView, Field
from feast.types import Int64
from fraud_definitions import OWNER, account_stats

ghost_stats = FeatureView(
    name="ghost_stats",
    entities=[Entity(name="ghost", join_keys=["ghost_id"], description="Undefined.", owner=OWNER)],
    ttl=timedelta(days=1),
    schema=[
        Field(name="ghost_id", dtype=Int64),
        Field(name="txn_count_24h", dtype=Int64, description="Transactions."),
    ],
    source=account_stats.batch_source,
    description="A view on an entity the repo does not define.",
    owner=OWNER,
)
"""
BROKEN_FEATURE_FILES: list[tuple[str, str, str, list[str]]] = [
    # (id, file to write under feature_repo/fraud/, its text (or an edit of DEFS), named)
    ("python syntax error", DEFS,
     "<edit>account_stats = FeatureView(|account_stats = FeatureView((",
     [f"{DEFS}, line 22: SyntaxError: '(' was never closed"]),
    ("import error", "fraud_extra.py", "import fraud_no_such_module\n",
     ["fraud_extra.py, line 1: ModuleNotFoundError: No module named 'fraud_no_such_module'"]),
    ("error raised at import", "fraud_extra.py", "raise RuntimeError('half-written module')\n",
     ["fraud_extra.py, line 1: RuntimeError: half-written module"]),
    # Lint-clean but for its entity, defined inline: Feast's plan and apply accept it.
    ("feature view on an unknown entity", "fraud_extra.py", GHOST,
     ["fraud_extra.py (ghost_stats)", "entity-ref", "['ghost']"]),
    ("duplicate feature view name", "fraud_extra.py",
     "from feast import FeatureView\n"
     "from fraud_definitions import account, account_stats\n"
     "account_stats_copy = FeatureView(name='account_stats', entities=[account],\n"
     "                                 schema=account_stats.schema,\n"
     "                                 source=account_stats.batch_source)\n",
     ["account_stats", "fraud_extra.py"]),
]  # fmt: skip


def _break(repo: Path, file: str, text: str) -> None:
    if text.startswith("<edit>"):
        old, new = text.removeprefix("<edit>").split("|")
        _replace(repo / file, old, new)
    else:
        (repo / file).write_text(text)


@pytest.mark.parametrize(("file", "text", "named"), [b[1:] for b in BROKEN_FEATURE_FILES],
                         ids=[b[0] for b in BROKEN_FEATURE_FILES])  # fmt: skip
def test_malformed_feature_file_changes_nothing(
    platform: Platform, file: str, text: str, named: list[str]
) -> None:
    repo = platform.settings.feature_repo_path / "fraud"
    saved = {p.name: p.read_text() for p in repo.glob("*.py")}
    before = platform.registry()
    assert {row[1] for row in before["feature_views"]} == {"fraud", "recsys"}  # the baseline
    _break(repo, file, text)
    try:
        # `apply` runs the `plan` gate first, so `plan` alone for one case (the other cases'
        # `apply` goes through the same gate): every Feast parse costs seconds.
        commands = ("plan",) if file == DEFS else ("apply",)
        for command in commands:
            proc = run_cli(command, "fraud", env=platform.env(), cwd=platform.root)
            output = proc.stdout + proc.stderr
            assert proc.returncode == 1, output
            assert "Traceback" not in output, output
            assert 'File "' not in output, output  # no traceback frames either
            for word in named:
                assert word in output, (command, word, output)
            assert platform.registry() == before  # nothing half-applied, nobody else touched
    finally:
        for extra in set(p.name for p in repo.glob("*.py")) - set(saved):
            (repo / extra).unlink()
        for name, original in saved.items():
            (repo / name).write_text(original)
