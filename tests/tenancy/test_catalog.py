"""Tenant specs: the samples are valid, the schema is current, errors name the file and field."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from featureplane.errors import TenantSpecError
from featureplane.tenancy.catalog import SCHEMA_FILE, TenantCatalog, load_spec, render_schema

ROOT = Path(__file__).resolve().parents[2]


def test_sample_tenants_are_valid_and_distinct() -> None:
    catalog = TenantCatalog.load(ROOT / "tenants", ROOT / "feature_repo")
    assert set(catalog) == {"fraud", "recsys", "pricing"}
    assert {s.feast_project for s in catalog.values()} == {"fraud", "recsys", "pricing"}
    views, services = catalog["pricing"].grants_to("recsys")
    assert views == {"product_price"}
    assert services == frozenset()
    assert catalog["pricing"].grants_to("fraud") == (frozenset(), frozenset())


def test_committed_schema_is_current() -> None:
    committed = (ROOT / "tenants" / SCHEMA_FILE).read_text()
    assert committed == render_schema(), "run `featureplane tenants schema`"


def _copy_tenants(tmp_path: Path) -> Path:
    target = tmp_path / "tenants"
    shutil.copytree(ROOT / "tenants", target)
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        ("  burst: 1000", "  burst: -1", "quotas.burst", "greater than 0"),
        ("  latency_p99_ms: 10", "  latency_p99_ms: fast", "sla.latency_p99_ms", "valid number"),
        ("cost_centre: CC-1042-RISK\n", "", "cost_centre", "Field required"),
        (
            "  max_body_bytes: 65536",
            "  max_body_bytes: 65536\n  max_rows: 3",
            "quotas.max_rows",
            "Extra inputs",
        ),
        ("    email: fraud-ml@example.com", "    email: not-an-email", "owners.0.email", "pattern"),
        ("name: fraud", "name: Fraud", "name", "pattern"),
    ],
)
def test_invalid_field_is_named_with_its_file(
    tmp_path: Path, old: str, new: str, field: str, message: str
) -> None:
    tenants = _copy_tenants(tmp_path)
    spec_file = tenants / "fraud" / "tenant.yaml"
    _edit(spec_file, old, new)
    with pytest.raises(TenantSpecError) as excinfo:
        load_spec(spec_file)
    assert str(spec_file) in str(excinfo.value)
    assert any(f == field and message in m for f, m in excinfo.value.problems), (
        excinfo.value.problems
    )


def test_folder_and_name_must_agree(tmp_path: Path) -> None:
    tenants = _copy_tenants(tmp_path)
    shutil.move(tenants / "fraud", tenants / "risk")
    with pytest.raises(
        TenantSpecError, match=r"risk/tenant.yaml: name: is 'fraud' but the folder is 'risk'"
    ):
        load_spec(tenants / "risk" / "tenant.yaml")


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    tenants = _copy_tenants(tmp_path)
    spec_file = tenants / "recsys" / "tenant.yaml"
    spec_file.write_text("name: recsys\nowners: [\n")
    with pytest.raises(TenantSpecError, match=r"recsys/tenant.yaml: line \d+: not valid YAML"):
        load_spec(spec_file)


def test_cross_checks_catch_unknown_grantee_and_shared_project(tmp_path: Path) -> None:
    tenants = _copy_tenants(tmp_path)
    _edit(tenants / "pricing" / "tenant.yaml", "tenants: [recsys]", "tenants: [marketing]")
    _edit(tenants / "recsys" / "tenant.yaml", "name: recsys\n", "name: recsys\nproject: fraud\n")
    with pytest.raises(TenantSpecError) as excinfo:
        TenantCatalog.load(tenants)
    text = str(excinfo.value)
    assert "pricing/tenant.yaml: sharing.0.tenants: unknown tenant 'marketing'" in text
    assert "project: 'fraud' is already tenant" in text


def test_cli_validate_reports_file_and_field_and_exits_1(tmp_path: Path) -> None:
    tenants = _copy_tenants(tmp_path)
    _edit(tenants / "fraud" / "tenant.yaml", "  burst: 1000", "  burst: lots")
    proc = subprocess.run(
        [sys.executable, "-m", "featureplane.cli", "tenants", "validate"],
        capture_output=True,
        text=True,
        env={
            "FEATUREPLANE_TENANTS_DIR": str(tenants),
            "FEATUREPLANE_FEATURE_REPO_DIR": str(ROOT / "feature_repo"),
            "PATH": "",
        },
        check=False,
    )
    assert proc.returncode == 1
    assert "fraud/tenant.yaml: quotas.burst:" in proc.stderr.replace("\n", "")


def test_onboarding_is_two_folders_and_no_code(tmp_path: Path) -> None:
    """A copy of a tenant under a new name is a valid new tenant with no code change."""
    tenants = _copy_tenants(tmp_path)
    repos = tmp_path / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", repos)
    shutil.copytree(tenants / "fraud", tenants / "payments")
    _edit(tenants / "payments" / "tenant.yaml", "name: fraud", "name: payments")
    shutil.copytree(repos / "fraud", repos / "payments")
    catalog = TenantCatalog.load(tenants, repos)
    assert catalog["payments"].feast_project == "payments"
    assert catalog["payments"].namespace == "fp-payments"
