"""The registry server of the ownership tests: `featureplane registry-server` serving TLS (a
self-signed certificate) on a fresh SQLite registry, tokens for two tenants, and the real
`feast apply` CLI as a tenant's CI runs it; the registry's rows read straight from the file."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from featureplane.embedded.redis import EmbeddedRedis, free_port
from featureplane.registry.client_config import TOKEN_VARIABLE, remote_feature_store
from featureplane.settings import Settings
from featureplane.tenancy.credentials import CredentialStore
from tests.support.components import require
from tests.support.paths import ROOT
from tests.support.settings import make_settings

A, B = "fraud", "recsys"  # A attacks B
GATEWAY = "http://127.0.0.1:9"  # never contacted by `feast apply` (remote online store)

Rows = dict[str, list[tuple[Any, ...]]]


def _grpc_available() -> bool:
    try:
        import grpc  # type: ignore[import-untyped]  # noqa: F401
        import grpc_health  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Platform:
    settings: Settings
    address: str
    root: Path
    cert: Path
    redis: redis.Redis
    credentials: CredentialStore
    tokens: dict[str, str]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A key and a certificate for 127.0.0.1, valid for a day."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "server.key", directory / "server.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def start_platform(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """The registry server (TLS) on a fresh registry, with a token for A and for B; the session
    fixture ``ownership_platform`` (tests/conftest.py) runs it once for every module using it."""
    require(_grpc_available(), "grpcio (feast[grpcio])")
    from featureplane.embedded.registry_server import RegistryServerProcess

    root = tmp_path_factory.mktemp("ownership")
    settings = make_settings(root / "data", redis_server.url, registry=str(root / "registry.db"))
    client = redis.Redis.from_url(redis_server.url)
    credentials = CredentialStore(client, settings.pepper)
    tokens = {tenant: credentials.issue(tenant).token for tenant in (A, B)}
    key, cert = self_signed(root)
    with RegistryServerProcess(settings, free_port(), tls=(key, cert)) as server:
        yield Platform(settings, server.address, root, cert, client, credentials, tokens)
    client.close()


def feast_apply(
    platform: Platform, repo: Path, project: str, token: str
) -> subprocess.CompletedProcess[str]:
    """`feast apply` as a tenant's CI runs it: the documented remote feature_store.yaml, the
    token in FEATUREPLANE_TOKEN, and no FEATUREPLANE_* credentials in the environment."""
    fs_yaml = platform.root / f"{repo.name}-{project}.yaml"
    config = remote_feature_store(project, platform.address, GATEWAY, tls_cert=str(platform.cert))
    fs_yaml.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATUREPLANE_")}
    env.pop("INTRA_COMMUNICATION_BASE64", None)
    env |= {
        TOKEN_VARIABLE: token,
        "FEATUREPLANE_PROJECT": project,
        "FEATUREPLANE_DATA_DIR": str(platform.settings.data_path),
    }
    feast = str(Path(sys.executable).with_name("feast"))
    return subprocess.run(
        [feast, "-c", str(repo), "-f", str(fs_yaml), "apply"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def tenant_repo(platform: Platform, tenant: str) -> Path:
    target = platform.root / "repos" / tenant
    if not target.exists():
        shutil.copytree(
            ROOT / "feature_repo" / tenant, target, ignore=shutil.ignore_patterns("__pycache__")
        )
    return target


def project_rows(db: Path, project: str) -> Rows:
    """Every registry row of ``project``, in every table that has one, as stored (serialized
    protos included), read from the database file itself."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows: Rows = {}
        for table in sorted(tables):
            columns = [c[1] for c in conn.execute(f"PRAGMA table_info({table})")]
            if "project_id" in columns:
                query = f"SELECT rowid, * FROM {table} WHERE project_id = ? ORDER BY rowid"
                rows[table] = conn.execute(query, (project,)).fetchall()
    return rows


def all_projects(db: Path) -> set[str]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return {r[0] for r in conn.execute("SELECT project_id FROM projects")}


def registry_db(platform: Platform) -> Path:
    return Path(platform.settings.registry_url.removeprefix("sqlite:///"))


def remote_registry(
    platform: Platform, token: str | None, project: str = A, plaintext: bool = False
) -> Any:
    """Feast's own remote registry client (what `feast` uses), in process, for single RPCs."""
    from feast.infra.registry.remote import RemoteRegistry, RemoteRegistryConfig
    from feast.permissions.auth_model import KubernetesAuthConfig, NoAuthConfig

    auth = (
        NoAuthConfig()
        if token is None
        else KubernetesAuthConfig(type="kubernetes", user_token=token)
    )
    config = RemoteRegistryConfig(
        registry_type="remote",
        path=platform.address,
        is_tls=not plaintext,
        cert="" if plaintext else str(platform.cert),
    )
    return RemoteRegistry(config, project, None, auth_config=auth)


def apply_both(platform: Platform) -> Rows:
    """Both tenants apply their own repos through the server; returns B's rows."""
    for tenant in (B, A):
        proc = feast_apply(platform, tenant_repo(platform, tenant), tenant, platform.tokens[tenant])
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rows = project_rows(registry_db(platform), B)
    assert len(rows["feature_views"]) == 2
    assert len(rows["entities"]) >= 2
    # No Permission object is stored for B: stock Feast would then let any authenticated user
    # do anything in B's project. Ownership must not depend on what the registry holds.
    assert rows["permissions"] == []
    return rows
