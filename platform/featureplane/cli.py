"""The `featureplane` command line (typer). Exit code 0 on success, 1 on failure, with a message
naming the file and field (or the tenant and object) at fault.

Heavy imports (Feast, the gateway) happen inside commands: `featureplane serve` must set
``PROMETHEUS_MULTIPROC_DIR`` before anything imports ``prometheus_client``.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from featureplane.errors import FeatureplaneError
from featureplane.redact import redact, redact_url
from featureplane.settings import Settings
from featureplane.tenancy.catalog import SCHEMA_FILE, TenantCatalog, render_schema
from featureplane.tenancy.spec import TenantSpec

app = typer.Typer(
    help="featureplane: a multi-tenant feature platform on Feast.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
tenants_app = typer.Typer(help="Tenants: validate, list, credentials.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
dashboards_app = typer.Typer(
    help="Grafana dashboards and Prometheus rules, generated from tenants/.", no_args_is_help=True
)
app.add_typer(dashboards_app, name="dashboards")
drift_app = typer.Typer(
    help="Drift of materialized data from a training reference.", no_args_is_help=True
)
app.add_typer(drift_app, name="drift")
cost_app = typer.Typer(help="Cost per tenant and cost centre.", no_args_is_help=True)
app.add_typer(cost_app, name="cost")
k8s_app = typer.Typer(
    help="Each tenant's Kubernetes namespace, quota, RBAC and network policies.",
    no_args_is_help=True,
)
app.add_typer(k8s_app, name="k8s")
console = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:  # pydantic's ValidationError names the FEATUREPLANE_* field
        raise FeatureplaneError(f"configuration: {exc}") from exc


def _catalog(settings: Settings) -> TenantCatalog:
    return TenantCatalog.load(settings.tenants_path, settings.feature_repo_path)


def _select(catalog: TenantCatalog, tenant: str | None, all_: bool) -> list[TenantSpec]:
    if all_ == (tenant is not None):
        raise typer.BadParameter("name one tenant, or pass --all")
    return list(catalog.values()) if all_ else [catalog.get_tenant(tenant or "")]


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )  # fmt: skip


def _parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=option) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


# -- tenants -----------------------------------------------------------------------------------


@tenants_app.command("validate")
def tenants_validate() -> None:
    """Check every tenants/<t>/tenant.yaml against the schema and against each other."""
    settings = _settings()
    catalog = _catalog(settings)
    console.print(f"[green]ok[/] {len(catalog)} tenants valid in {settings.tenants_path}")


@tenants_app.command("list")
def tenants_list() -> None:
    """A table of tenants: project, namespace, owners, SLA, quotas."""
    catalog = _catalog(_settings())
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
    path = _settings().tenants_path / SCHEMA_FILE
    current = path.read_text() if path.exists() else ""
    if check:
        if current != render_schema():
            raise FeatureplaneError(f"{path} is stale: run `featureplane tenants schema`")
        console.print(f"[green]ok[/] {path} is current")
        return
    path.write_text(render_schema())
    console.print(f"wrote {path}")


def _credentials(settings: Settings):  # type: ignore[no-untyped-def]

    from featureplane.tenancy.credentials import CredentialStore

    return CredentialStore(settings.redis_client(), settings.pepper)


@tenants_app.command("issue-token")
def tenants_issue_token(tenant: str) -> None:
    """Issue a bearer token for TENANT. It is printed once; only its HMAC is stored."""
    settings = _settings()
    spec = _catalog(settings).get_tenant(tenant)
    issued = _credentials(settings).issue(spec.name)
    err.print(f"token {issued.id} for tenant {spec.name} (store it now: it is not shown again)")
    print(issued.token)


@tenants_app.command("tokens")
def tenants_tokens(tenant: str) -> None:
    """List TENANT's token ids and creation times (never the secrets)."""
    settings = _settings()
    spec = _catalog(settings).get_tenant(tenant)
    table = Table("id", "tenant", "created", "expires")
    for info in _credentials(settings).list(spec.name):
        table.add_row(info.id, info.tenant, info.created_at, info.expires_at or "never")
    console.print(table)


@tenants_app.command("rotate-token")
def tenants_rotate_token(
    token_id: str,
    overlap: Annotated[
        int, typer.Option(min=0, help="Seconds the old token keeps working (0: revoke it now).")
    ] = 3600,
) -> None:
    """Issue a successor for a token; the old one expires after --overlap seconds."""
    issued = _credentials(_settings()).rotate(token_id, overlap)
    if issued is None:
        raise FeatureplaneError(f"no token with id {token_id!r}")
    err.print(
        f"token {issued.id} replaces {token_id} ({issued.tenant}), which expires in {overlap} s"
    )
    print(issued.token)


@tenants_app.command("revoke-token")
def tenants_revoke_token(token_id: str) -> None:
    """Revoke a token by id; every gateway refuses it from the next request."""
    tenant = _credentials(_settings()).revoke(token_id)
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
    settings = _settings()
    spec = _catalog(settings).get_tenant(tenant)
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


# -- dashboards and rules ---------------------------------------------------------------------


@dashboards_app.command("generate")
def dashboards_generate(
    check: Annotated[bool, typer.Option(help="Fail if the committed files are stale.")] = False,
) -> None:
    """Write dashboards/ (Grafana JSON, Prometheus rules, provisioning) from the tenants."""
    from featureplane.dashboards.artifacts import stale, write_all

    settings = _settings()
    catalog = _catalog(settings)
    root = settings.tenants_path.parent  # dashboards/ sits beside tenants/
    if check:
        outdated = stale(root, catalog)
        if outdated:
            names = ", ".join(str(p) for p in outdated)
            raise FeatureplaneError(f"stale: {names}: run `featureplane dashboards generate`")
        console.print(f"[green]ok[/] dashboards and rules under {root / 'dashboards'} are current")
        return
    for path in write_all(root, catalog):
        console.print(f"wrote {path}")


# -- kubernetes -------------------------------------------------------------------------------


def _k8s_specs(catalog: TenantCatalog, tenant: str | None) -> list[TenantSpec]:
    return [catalog.get_tenant(tenant)] if tenant is not None else list(catalog.values())


@k8s_app.command("render")
def k8s_render(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (default: all).")] = None,
    output: Annotated[
        str | None, typer.Option(metavar="DIR", help="Write DIR/<tenant>.yaml instead of stdout.")
    ] = None,
) -> None:
    """Render (and validate, strictly) each tenant's Kubernetes objects as YAML."""
    from pathlib import Path

    from featureplane.k8s.manifests import render_tenant, to_yaml

    specs = _k8s_specs(_catalog(_settings()), tenant)
    rendered = {spec.name: to_yaml(render_tenant(spec)) for spec in specs}  # all valid, or none
    if output is None:
        print("".join(rendered.values()), end="")
        return
    directory = Path(output)
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (directory / f"{name}.yaml").write_text(text)
        err.print(f"wrote {directory / f'{name}.yaml'}")


@k8s_app.command("apply")
def k8s_apply(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (default: all).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Send dryRun=All: the server persists nothing.")
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune", help="Delete featureplane namespaces of tenants no longer in tenants/."
        ),
    ] = False,
) -> None:
    """Server-side apply (field manager "featureplane") of each tenant's objects."""
    from featureplane.k8s.applier import Applier, api_client
    from featureplane.k8s.manifests import render_tenant

    catalog = _catalog(_settings())
    rendered = {spec.name: render_tenant(spec) for spec in _k8s_specs(catalog, tenant)}
    applier = Applier(api_client(), dry_run=dry_run)
    suffix = " (dry run)" if dry_run else ""
    for name, manifests in rendered.items():
        count = applier.apply_all(manifests)
        console.print(f"[green]applied[/] {name}: {count} objects{suffix}")
    applier.prune(catalog.keys(), prune, lambda line: err.print(f"[yellow]prune[/] {line}{suffix}"))


# -- registry and data ------------------------------------------------------------------------


AllowBreaking = Annotated[
    str | None,
    typer.Option(
        "--allow-breaking",
        metavar="REASON",
        help="Accept breaking changes; the reason goes to <data dir>/audit/<tenant>.jsonl.",
    ),
]


@app.command()
def plan(
    tenant: str,
    json_: Annotated[
        bool, typer.Option("--json", help="One JSON document on stdout (see docs/ci.md).")
    ] = False,
    allow_breaking: AllowBreaking = None,
) -> None:
    """Lint TENANT's repo and classify Feast's plan for its project (safe / breaking). Exits 1
    on lint errors, and on breaking changes unless --allow-breaking gives a reason."""
    from featureplane.errors import PlanError
    from featureplane.feast_config import check_registry
    from featureplane.registry.gate import record_acceptance, run_gate
    from featureplane.registry.report import print_report, report_json

    settings = _settings()
    spec = _catalog(settings).get_tenant(tenant)
    check_registry(settings)  # else Feast's plan reports a dead registry as a lint error
    result = record_acceptance(settings, run_gate(settings, spec, allow_breaking), "plan")
    if json_:
        print(report_json(result))
    else:
        print_report(console, result)
    if not result.passed:
        raise PlanError(f"plan of tenant {spec.name!r} refused: {'; '.join(result.refusals)}")


@app.command()
def apply(
    tenant: Annotated[str | None, typer.Argument()] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every tenant.")] = False,
    allow_breaking: AllowBreaking = None,
) -> None:
    """The `plan` gate, then `feast apply` of TENANT's definitions into its project of the
    shared registry. Nothing is applied unless every named tenant passes the gate, nor when the
    registry is unreachable (one line naming it and the cause)."""
    from featureplane.errors import ApplyError, PlanError
    from featureplane.feast_config import check_registry
    from featureplane.registry.apply import apply_tenant
    from featureplane.registry.gate import record_acceptance, run_gate
    from featureplane.registry.report import print_report

    settings = _settings()
    specs = _select(_catalog(settings), tenant, all_)
    check_registry(settings)  # before the gate: its plan would report a dead registry as lint
    gates = [run_gate(settings, spec, allow_breaking) for spec in specs]
    for gate in gates:
        print_report(console, gate)
    refused = [f"{g.plan.tenant}: {'; '.join(g.refusals)}" for g in gates if not g.passed]
    if refused:
        raise PlanError(f"apply refused, nothing applied: {' | '.join(refused)}")
    for gate in gates:
        audit_file = record_acceptance(settings, gate, "apply").audit_file
        if audit_file is not None:
            console.print(f"breaking changes of {gate.plan.tenant} accepted: see {audit_file}")
    with _progress() as progress:
        task = progress.add_task("apply", total=len(specs))
        for spec in specs:
            progress.update(task, description=f"apply {spec.name}")
            try:
                result = apply_tenant(settings, spec)
            except ApplyError:
                check_registry(settings)  # lost on the way: say so in one line, not Feast's tail
                raise
            progress.console.print(
                f"[green]applied[/] {spec.name} -> project {result.project} "
                f"({result.seconds:.1f} s)"
            )
            progress.advance(task)


@app.command()
def materialize(
    tenant: Annotated[str | None, typer.Argument()] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every tenant.")] = False,
    start: Annotated[
        str | None, typer.Option(help="ISO 8601 start (default: incremental).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="ISO 8601 end (default: now).")] = None,
) -> None:
    """Check landed batches (quality gate), ingest them into offline Parquet and materialize
    them into the online store. Exits 1 when a batch failed a strict suite (quarantined)."""
    from featureplane.errors import QualityError
    from featureplane.materialize.runner import materialize_tenant

    settings = _settings()
    settings.require_redis_url()
    specs = _select(_catalog(settings), tenant, all_)
    start_at, end_at = _parse_time(start, "--start"), _parse_time(end, "--end")
    refused: list[str] = []
    with _progress() as progress:
        task = progress.add_task("materialize", total=len(specs))
        for spec in specs:

            def say(msg: str, name: str = spec.name) -> None:
                progress.update(task, description=f"{name}: {msg}")

            try:
                report = materialize_tenant(settings, spec, start_at, end_at, progress=say)
            except QualityError as exc:  # the good batches went through: go on to the next tenant
                report = exc.report
                refused.append(str(exc))
            except FeatureplaneError as exc:  # stop, but keep naming what was quarantined
                raise FeatureplaneError("\n".join([*refused, str(exc)])) from exc
            rows = sum(i.rows for i in report.ingested.values())
            progress.console.print(
                f"[green]materialized[/] {spec.name}: {rows} new offline rows, "
                f"{len(report.views)} feature views online ({report.seconds:.1f} s)"
            )
            for verdict in report.quality:
                if verdict.outcome != "passed":
                    colour = "red" if verdict.outcome == "quarantined" else "yellow"
                    progress.console.print(
                        f"[{colour}]{verdict.outcome}[/] {spec.name}/{verdict.source}/"
                        f"{verdict.batch}: report {verdict.report}",
                        highlight=False,
                        soft_wrap=True,
                    )
            for drifted in (s for s in report.drift if s.drifted):
                ks = "" if drifted.ks is None else f", KS {drifted.ks:.3f} / {drifted.ks_limit:g}"
                progress.console.print(
                    f"[yellow]drift[/] {spec.name}/{drifted.feature_view}.{drifted.feature} in "
                    f"{drifted.batch}: PSI {drifted.psi:.3f} / {drifted.psi_limit:g}{ks} "
                    "(score / threshold)",
                    highlight=False,
                    soft_wrap=True,
                )
            progress.advance(task)
    if refused:
        raise FeatureplaneError("\n".join(refused))


@drift_app.command("reference")
def drift_reference(
    tenant: str,
    start: Annotated[
        str | None, typer.Option(help="ISO 8601: only events from here (default: all).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="ISO 8601: only events before this.")] = None,
) -> None:
    """Summarize TENANT's offline data (what its models train on) as the reference later
    batches are scored against; stored in Redis, replacing the previous reference."""

    from featureplane.quality.drift import reference_key, save_reference, take_reference

    settings = _settings()
    spec = _catalog(settings).get_tenant(tenant)
    reference = take_reference(
        settings, spec, _parse_time(start, "--start"), _parse_time(end, "--end")
    )
    with settings.redis_client() as client:
        save_reference(client, reference)
    table = Table("feature view", "source", "rows", "feature", "kind", "bins")
    for name, view in reference.views.items():
        for feature, summary in view.features.items():
            bins = len(summary.shares) - 1  # the last one counts missing values
            table.add_row(name, view.source, str(view.rows), feature, summary.kind, str(bins))
    console.print(table)
    console.print(f"[green]stored[/] {reference_key(spec.name)}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default FEATUREPLANE_GATEWAY_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default FEATUREPLANE_GATEWAY_PORT.")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Default FEATUREPLANE_GATEWAY_WORKERS.")
    ] = None,
) -> None:
    """Run the gateway (uvicorn, several workers share metrics through PROMETHEUS_MULTIPROC_DIR).
    Exits 1 at once when the registry is unreachable: a gateway needs one registry snapshot to
    start (running ones keep serving theirs through a registry outage)."""
    from featureplane.feast_config import check_registry

    settings = _settings()
    settings.require_redis_url()
    check_registry(settings)
    metrics_dir = settings.metrics_path
    shutil.rmtree(metrics_dir, ignore_errors=True)  # stale values of dead processes
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    import uvicorn

    uvicorn.run(
        "featureplane.gateway.app:create_app",
        factory=True,
        host=host or settings.gateway_host,
        port=port if port is not None else settings.gateway_port,
        workers=workers or settings.gateway_workers,
        access_log=False,  # the gateway writes its own (JSON, with tenant and request id)
        proxy_headers=False,  # client addresses are not used: skip the per-request rewrite
        server_header=False,
        loop="uvloop",
        http="httptools",
        log_level="info",
    )


@app.command("registry-server")
def registry_server_command(
    host: Annotated[
        str | None, typer.Option(help="Default FEATUREPLANE_REGISTRY_SERVER_HOST.")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Default FEATUREPLANE_REGISTRY_SERVER_PORT.")
    ] = None,
    tls_key: Annotated[str | None, typer.Option(help="PEM private key: serve TLS.")] = None,
    tls_cert: Annotated[str | None, typer.Option(help="PEM certificate chain for TLS.")] = None,
) -> None:
    """Feast's gRPC registry server over the shared registry: tenants' CI runs plain `feast
    apply` through it with their tokens, each confined to its own project (docs/ownership.md)."""
    import logging
    from pathlib import Path

    try:
        from featureplane.registry.server import TlsFiles, serve
    except ImportError as exc:  # grpcio is Feast's optional `grpcio` extra
        raise FeatureplaneError(f"the registry server needs feast[grpcio]: {exc}") from exc

    if (tls_key is None) != (tls_cert is None):
        raise typer.BadParameter("give both --tls-key and --tls-cert, or neither")
    settings = _settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    tls = None if tls_key is None else TlsFiles(Path(tls_key), Path(tls_cert or ""))
    serve(
        settings,
        host or settings.registry_server_host,
        port if port is not None else settings.registry_server_port,
        tls,
    )


@app.command()
def demo(
    once: Annotated[
        bool, typer.Option("--once", help="Stop after the calls instead of serving.")
    ] = False,
    rows: Annotated[int, typer.Option(min=1, help="Entities per sample source.")] = 1000,
) -> None:
    """Everything on the embedded default: data, apply, materialize, gateway, real calls."""
    from featureplane.demo import run_demo

    run_demo(console, once=once, rows=rows)


@cost_app.command("report")
def cost_report(
    format_: Annotated[
        str, typer.Option("--format", help="table, csv or json.", case_sensitive=False)
    ] = "table",
    gateway: Annotated[
        str | None,
        typer.Option(
            "--gateway",
            metavar="URL",
            help="A gateway to read request and entity-row counts from (its /metrics). "
            "Default: http://<FEATUREPLANE_GATEWAY_HOST>:<FEATUREPLANE_GATEWAY_PORT>.",
        ),
    ] = None,
    sample: Annotated[int, typer.Option(min=1, help="Keys sampled per tenant.")] = 200,
) -> None:
    """Usage and cost per tenant: requests, entity rows, rows materialized, online bytes, quota."""
    import redis

    from featureplane.cost import report as cost

    if format_ not in ("table", "csv", "json"):
        raise typer.BadParameter("one of table, csv, json", param_hint="--format")
    settings = _settings()
    prices = cost.load_prices(settings.cost_prices)
    url = gateway or f"http://{settings.gateway_host}:{settings.gateway_port}"
    client = settings.redis_client(socket_timeout=30.0)
    try:
        result = cost.report(list(_catalog(settings).values()), client, prices, url, sample)
    except redis.RedisError as exc:
        raise FeatureplaneError(
            f"online store {redact_url(settings.redis_url or '')}: {exc}"
        ) from exc
    finally:
        client.close()
    if format_ == "csv":
        print(cost.to_csv(result), end="")
    elif format_ == "json":
        print(cost.to_json(result))
    else:
        table = Table(
            title=f"cost ({result.currency}; illustrative prices unless "
            "FEATUREPLANE_COST_PRICES is set)"
        )
        for column in cost.COLUMNS:
            table.add_column(
                column, justify="right" if column in ("quantity", "unit_price", "cost") else "left"
            )
        for row in cost.rows(result):
            table.add_row(
                *(
                    "-"
                    if row[c] is None
                    else (f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]))
                    for c in cost.COLUMNS
                )
            )
        console.print(table)
    if result.note:
        err.print(f"[yellow]note:[/] {result.note}", highlight=False, soft_wrap=True)


def main() -> None:
    try:
        app()
    except FeatureplaneError as exc:
        err.print(f"[red]error:[/] {redact(str(exc))}", highlight=False, soft_wrap=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
