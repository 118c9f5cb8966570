"""`featureplane tenants ...`: validate, list, the schema, credentials, and `feast` exports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from featureplane.cli._common import console, err, load_catalog, load_settings
from featureplane.errors import FeatureplaneError
from featureplane.settings import Settings
from featureplane.tenancy.catalog import SCHEMA_FILE, render_schema

if TYPE_CHECKING:
    from featureplane.tenancy.credentials import CredentialStore

tenants_app = typer.Typer(help="Tenants: validate, list, credentials.", no_args_is_help=True)


@tenants_app.command("validate")
def tenants_validate() -> None:
    """Check every tenants/<t>/tenant.yaml against the schema and against each other."""
    settings = load_settings()
    catalog = load_catalog(settings)
    console.print(f"[green]ok[/] {len(catalog)} tenants valid in {settings.tenants_path}")


@tenants_app.command("list")
def tenants_list() -> None:
    """A table of tenants: project, namespace, owners, SLA, quotas."""
    catalog = load_catalog(load_settings())
    table = Table("tenant", "project", "namespace", "owners", "cost centre", "p99 SLA", "rps/burst")
    for spec in catalog.values():
        table.add_row(
            spec.name, spec.feast_project, spec.namespace, ", ".join(o.email for o in spec.owners),
            spec.cost_centre, f"{spec.sla.latency_p99_ms:g} ms",
            f"{spec.quotas.requests_per_second:g}/{spec.quotas.burst}",
        )  # fmt: skip
    console.print(table)


@tenants_app.command("schema")
def tenants_schema(
    check: Annotated[bool, typer.Option(help="Fail if the committed schema is stale.")] = False,
) -> None:
    """Write tenants/tenant.schema.json from the TenantSpec model."""
    path = load_settings().tenants_path / SCHEMA_FILE
    current = path.read_text() if path.exists() else ""
    if check:
        if current != render_schema():
            raise FeatureplaneError(f"{path} is stale: run `featureplane tenants schema`")
        console.print(f"[green]ok[/] {path} is current")
        return
    path.write_text(render_schema())
    console.print(f"wrote {path}")


def _credentials(settings: Settings) -> CredentialStore:
    from featureplane.online.clients import redis_client
    from featureplane.tenancy.credentials import CredentialStore

    return CredentialStore(redis_client(settings), settings.pepper)


@tenants_app.command("issue-token")
def tenants_issue_token(
    tenant: str,
    scope: Annotated[
        str,
        typer.Option(
            help="What the token may do at the gateway, comma-separated: read (get online "
            "features), write (push features).",
        ),
    ] = "read",
) -> None:
    """Issue a bearer token for TENANT. It is printed once; only its HMAC is stored."""
    from featureplane.tenancy.credentials import parse_scopes

    try:
        scopes = parse_scopes(scope)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scope") from None
    settings = load_settings()
    spec = load_catalog(settings).get_tenant(tenant)
    issued = _credentials(settings).issue(spec.name, scopes)
    err.print(
        f"token {issued.id} for tenant {spec.name}, scopes {','.join(issued.scopes)} "
        "(store it now: it is not shown again)"
    )
    print(issued.token)


@tenants_app.command("tokens")
def tenants_tokens(tenant: str) -> None:
    """List TENANT's token ids, scopes and creation times (never the secrets)."""
    settings = load_settings()
    spec = load_catalog(settings).get_tenant(tenant)
    table = Table("id", "tenant", "scopes", "created", "expires")
    for info in _credentials(settings).list(spec.name):
        scopes = ",".join(info.scopes)
        table.add_row(info.id, info.tenant, scopes, info.created_at, info.expires_at or "never")
    console.print(table)


@tenants_app.command("rotate-token")
def tenants_rotate_token(
    token_id: str,
    overlap: Annotated[
        int, typer.Option(min=0, help="Seconds the old token keeps working (0: revoke it now).")
    ] = 3600,
) -> None:
    """Issue a successor for a token; the old one expires after --overlap seconds."""
    issued = _credentials(load_settings()).rotate(token_id, overlap)
    if issued is None:
        raise FeatureplaneError(f"no token with id {token_id!r}")
    err.print(
        f"token {issued.id} (scopes {','.join(issued.scopes)}) replaces {token_id} "
        f"({issued.tenant}), which expires in {overlap} s"
    )
    print(issued.token)


@tenants_app.command("revoke-token")
def tenants_revoke_token(token_id: str) -> None:
    """Revoke a token by id; every gateway refuses it from the next request."""
    tenant = _credentials(load_settings()).revoke(token_id)
    if tenant is None:
        raise FeatureplaneError(f"no token with id {token_id!r}")
    console.print(f"revoked {token_id} ({tenant})")


@tenants_app.command("env")
def tenants_env(
    tenant: str,
    registry_server: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="For TENANT's CI: go through this registry server with the tenant's token "
            "(docs/ownership.md) instead of the database.",
        ),
    ] = None,
    gateway: Annotated[
        str | None, typer.Option(help="With --registry-server: the gateway URL.")
    ] = None,
    tls_cert: Annotated[
        str | None, typer.Option(help="With --registry-server: its CA certificate (TLS).")
    ] = None,
) -> None:
    """Print the exports that let plain `feast` commands run in TENANT's repo."""
    from featureplane.feast_config import feast_env, template_path

    if registry_server is None and (gateway is not None or tls_cert is not None):
        raise typer.BadParameter("--gateway and --tls-cert go with --registry-server")
    settings = load_settings()
    spec = load_catalog(settings).get_tenant(tenant)
    if registry_server is not None:
        from featureplane.registry.client_config import TOKEN_VARIABLE, render_remote_feature_store

        url = gateway or f"http://{settings.gateway_host}:{settings.gateway_port}"
        yaml_text = render_remote_feature_store(
            spec.feast_project, registry_server, url, tls_cert=tls_cert
        )
        print(f"# {spec.name}'s CI: `feast plan`/`feast apply` through {registry_server}.")
        print(f"# {TOKEN_VARIABLE} must hold a token of {spec.name} (a CI secret).")
        print(f"export FEATUREPLANE_PROJECT={spec.feast_project!r}")
        print(f"export FEATUREPLANE_DATA_DIR={str(settings.data_path)!r}")
        print(f"cat > featureplane-ci.yaml <<'EOF'\n{yaml_text}EOF")
        print('export FEAST_FS_YAML_FILE_PATH="$PWD/featureplane-ci.yaml"')
        print(f"# then: cd feature_repo/{spec.name} && feast plan")
        return
    for key, value in feast_env(settings, spec.feast_project).items():
        print(f"export {key}={value!r}")
    print(f"export FEAST_FS_YAML_FILE_PATH={str(template_path(settings))!r}")
    print(f"# then: cd {settings.feature_repo_path / spec.name} && feast plan")
