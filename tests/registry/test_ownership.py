"""Ownership where teams run the real Feast CLI: tenant A's token cannot create, change or delete
anything in tenant B's project through the registry server, whatever its feature_store.yaml says.

Real components only: the session's redis-server (credentials), a SQLite registry in a temp
dir, `featureplane registry-server` as a subprocess on a free port serving TLS (a self-signed
certificate), and the real `feast apply` CLI with the CI feature_store.yaml of
docs/ownership.md (no database or Redis credentials).
B's registry rows (every object's serialized proto) are read straight from the SQLite file
before and after each attempt and must be byte-for-byte equal.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from featureplane.registry.client_config import remote_feature_store
from featureplane.tenancy.catalog import TenantCatalog
from featureplane.tenancy.credentials import CRED_PREFIX
from tests.support.paths import ROOT
from tests.support.registry_server import (
    GATEWAY,
    A,
    B,
    Platform,
    Rows,
    all_projects,
    feast_apply,
    project_rows,
    registry_db,
    remote_registry,
    tenant_repo,
)


@pytest.fixture
def platform(ownership_platform: Platform) -> Platform:
    return ownership_platform


def assert_denied(call: Callable[[], object]) -> str:
    from feast.errors import FeastPermissionError

    with pytest.raises(FeastPermissionError) as caught:
        call()
    return str(caught.value)


def assert_unauthenticated(call: Callable[[], object]) -> None:
    import grpc  # type: ignore[import-untyped]  # no stubs pinned

    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def failed_for_permission(proc: subprocess.CompletedProcess[str]) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert "FeastPermissionError" in output, output[-3000:]
    return output


@pytest.fixture
def applied(ownership_applied: Rows) -> Rows:
    return ownership_applied


def test_each_tenant_applies_its_own_repo(platform: Platform, applied: Rows) -> None:
    db = registry_db(platform)
    views = {r[1] for r in project_rows(db, A)["feature_views"]}
    assert views == {"account_stats"}
    assert {r[1] for r in applied["feature_views"]} == {"user_profile", "user_item_affinity"}
    assert all_projects(db) == {A, B}
    # A sees its own project and nothing of B's.
    registry = remote_registry(platform, platform.tokens[A])
    assert [p.name for p in registry.list_projects()] == [A]
    assert [v.name for v in registry.list_feature_views(A)] == ["account_stats"]
    assert_denied(lambda: registry.list_feature_views(B))


ATTACK_DEFINITIONS = """
from datetime import timedelta

from feast import Entity, FeatureView, Field, ValueType
from feast.types import Int64, String

from featureplane.sources import parquet_source

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING,
              description="changed by fraud")
user_profile = FeatureView(  # changes B's view
    name="user_profile", entities=[user], ttl=timedelta(days=1),
    schema=[Field(name="user_id", dtype=String), Field(name="sessions_7d", dtype=Int64)],
    source=parquet_source("user_activity"), description="changed by fraud",
)
stolen = FeatureView(  # creates one in B's project; user_item_affinity is left out: deleted
    name="stolen", entities=[user], ttl=timedelta(days=1),
    schema=[Field(name="user_id", dtype=String), Field(name="sessions_7d", dtype=Int64)],
    source=parquet_source("stolen"),
)
"""


def test_hand_edited_project_cannot_create_change_or_delete(
    platform: Platform, applied: Rows
) -> None:
    db = registry_db(platform)
    repo = platform.root / "repos" / "attack"
    repo.mkdir(parents=True)
    (repo / "attack_definitions.py").write_text(ATTACK_DEFINITIONS)
    output = failed_for_permission(feast_apply(platform, repo, B, platform.tokens[A]))
    assert f"Requires roles ['featureplane:tenant:{B}']" in output
    assert project_rows(db, B) == applied
    # A's own repo, pointed at B's project, fares no better.
    failed_for_permission(feast_apply(platform, tenant_repo(platform, A), B, platform.tokens[A]))
    assert project_rows(db, B) == applied
    assert all_projects(db) == {A, B}


def test_emptied_repo_cannot_delete_other_tenants_objects(
    platform: Platform, applied: Rows
) -> None:
    db = registry_db(platform)
    empty = platform.root / "repos" / "empty"
    empty.mkdir(parents=True)
    failed_for_permission(feast_apply(platform, empty, B, platform.tokens[A]))
    assert project_rows(db, B) == applied
    # The deletions themselves, one RPC each (the CLI is refused before it gets there).
    registry = remote_registry(platform, platform.tokens[A], B)
    assert_denied(lambda: registry.delete_feature_view("user_profile", B, commit=True))
    assert_denied(lambda: registry.delete_entity("user", B, commit=True))
    assert_denied(lambda: registry.delete_data_source("user_activity", B, commit=True))
    assert_denied(lambda: registry.delete_project(B, commit=True))
    assert project_rows(db, B) == applied


def test_permissions_and_projects_of_others_are_closed(platform: Platform, applied: Rows) -> None:
    from feast.permissions.permission import Permission
    from feast.permissions.policy import RoleBasedPolicy
    from feast.project import Project

    db = registry_db(platform)
    registry = remote_registry(platform, platform.tokens[A])
    grab = Permission(name="grab", policy=RoleBasedPolicy(roles=[f"featureplane:tenant:{A}"]))
    assert_denied(lambda: registry.apply_permission(grab, B, commit=True))
    assert_denied(lambda: registry.apply_project(Project(name=B, description="mine"), commit=True))
    # Squatting: pricing is a tenant whose project does not exist yet; zzz is no tenant's.
    assert "pricing" not in all_projects(db)
    assert_denied(lambda: registry.apply_project(Project(name="pricing"), commit=True))
    assert_denied(lambda: registry.apply_project(Project(name="zzz"), commit=True))
    assert_denied(lambda: registry.update_infra(registry.get_infra(A), B, commit=True))
    assert all_projects(db) == {A, B}
    assert project_rows(db, B) == applied
    # In its own project A may store Permission objects, but they grant nothing: the server
    # enforces the ownership computed from tenants/, not what the registry holds.
    registry.apply_permission(grab, A, commit=True)
    assert project_rows(db, B) == applied
    assert_denied(lambda: remote_registry(platform, platform.tokens[B]).list_feature_views(A))
    registry.delete_permission("grab", A, commit=True)


def test_bad_revoked_and_foreign_tokens_are_refused(platform: Platform, applied: Rows) -> None:
    db = registry_db(platform)
    own_rows = project_rows(db, A)
    good = platform.tokens[A]
    token_id = good.split("_")[1]
    for token in (
        None,  # no Authorization header
        "not-a-featureplane-token",
        f"fpt_{token_id}_{'x' * 43}",  # a real id, a wrong secret
    ):
        assert_unauthenticated(remote_registry(platform, token).list_projects)
    ghost = platform.credentials.issue("ghost")  # a valid token of no tenant in tenants/
    assert_unauthenticated(remote_registry(platform, ghost.token).list_projects)
    expired = platform.credentials.issue(A)
    platform.redis.hset(CRED_PREFIX + expired.id, "expires_at", str(time.time() - 1))
    assert_unauthenticated(remote_registry(platform, expired.token).list_projects)
    # A revoked token, with the real CLI on A's own project: refused from the next call on.
    revoked = platform.credentials.issue(A)
    assert remote_registry(platform, revoked.token).list_projects()[0].name == A
    platform.credentials.revoke(revoked.id)
    proc = feast_apply(platform, tenant_repo(platform, A), A, revoked.token)
    assert proc.returncode != 0
    assert "UNAUTHENTICATED" in proc.stdout + proc.stderr
    assert project_rows(db, A) == own_rows
    assert project_rows(db, B) == applied


def test_plaintext_clients_get_nothing(platform: Platform) -> None:
    """The server speaks TLS only (tokens never cross the network in clear)."""
    import grpc

    plain = remote_registry(platform, platform.tokens[A], plaintext=True)
    with pytest.raises(grpc.RpcError) as caught:
        plain.list_projects()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_default_deny_without_a_server() -> None:
    """The policy alone, through Feast's enforcer: unknown projects and unnamed projects grant
    nothing, and the list is never empty (Feast grants everything on an empty one)."""
    from feast.entity import Entity
    from feast.errors import FeastPermissionError
    from feast.permissions.action import AuthzedAction
    from feast.permissions.enforcer import enforce_policy
    from feast.permissions.user import User
    from feast.project import Project
    from feast.value_type import ValueType

    from featureplane.registry.permissions import OwnershipPolicy, request_project, tenant_role

    policy = OwnershipPolicy(lambda: TenantCatalog.load(ROOT / "tenants"))
    user_a = User(A, [tenant_role(A)])
    entity = Entity(name="e", join_keys=["id"], value_type=ValueType.INT64)

    def allowed(project: str | None, resource: Any) -> bool:
        perms = policy.permissions_for(project)
        assert perms
        try:
            enforce_policy(perms, user_a, [resource], [AuthzedAction.CREATE])
        except FeastPermissionError:
            return False
        return True

    assert allowed(A, entity)
    assert not allowed(B, entity)
    assert not allowed("zzz", entity)
    assert not allowed(None, entity)
    assert allowed(None, Project(name=A))
    assert not allowed(A, Project(name=B))
    assert request_project(Project(name=B).to_proto()) == B  # ApplyProject's request field


def test_reload_keeps_last_good_ownership() -> None:
    from featureplane.registry.permissions import OwnershipPolicy

    good = TenantCatalog.load(ROOT / "tenants")
    now = [0.0]
    loads: Iterator[TenantCatalog | Exception] = iter(
        [good, OSError("tenants/ unreadable"), TenantCatalog({}, ROOT / "tenants")]
    )

    def load() -> TenantCatalog:
        answer = next(loads)
        if isinstance(answer, Exception):
            raise answer
        return answer

    policy = OwnershipPolicy(load, refresh_seconds=10, clock=lambda: now[0])
    assert policy.owners()[A] == A
    now[0] = 11.0  # the reload fails: the last good ownership stays in force
    assert policy.owners()[A] == A
    now[0] = 22.0  # an offboarded tenant owns nothing any more
    assert policy.owners() == {}
    assert not policy.is_tenant(A)


def test_tenants_env_prints_the_ci_configuration(tmp_path: Path) -> None:
    from featureplane.cli import app

    env = {
        "FEATUREPLANE_TENANTS_DIR": str(ROOT / "tenants"),
        "FEATUREPLANE_FEATURE_REPO_DIR": str(ROOT / "feature_repo"),
        "FEATUREPLANE_DATA_DIR": str(tmp_path),
    }
    result = CliRunner().invoke(
        app, ["tenants", "env", A, "--registry-server", "reg:6570", "--gateway", GATEWAY], env=env
    )
    assert result.exit_code == 0, result.output
    body = result.output.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    assert yaml.safe_load(body) == remote_feature_store(A, "reg:6570", GATEWAY)
    assert f"export FEATUREPLANE_DATA_DIR='{tmp_path.resolve()}'" in result.output
    assert "fpt_" not in result.output
    assert "redis://" not in result.output
