"""`featureplane dashboards ...`, `k8s ...` and `cost ...`: running the platform."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from featureplane.cli._common import console, err, load_catalog, load_settings
from featureplane.errors import FeatureplaneError
from featureplane.redact import redact_url
from featureplane.tenancy.catalog import TenantCatalog
from featureplane.tenancy.spec import TenantSpec

dashboards_app = typer.Typer(
    help="Grafana dashboards and Prometheus rules, generated from tenants/.", no_args_is_help=True
)
cost_app = typer.Typer(help="Cost per tenant and cost centre.", no_args_is_help=True)
k8s_app = typer.Typer(
    help="Each tenant's Kubernetes namespace, quota, RBAC and network policies.",
    no_args_is_help=True,
)


# -- dashboards and rules ---------------------------------------------------------------------


@dashboards_app.command("generate")
def dashboards_generate(
    check: Annotated[bool, typer.Option(help="Fail if the committed files are stale.")] = False,
) -> None:
    """Write dashboards/ (Grafana JSON, Prometheus rules, provisioning) from the tenants."""
    from featureplane.dashboards.artifacts import stale, write_all

    settings = load_settings()
    catalog = load_catalog(settings)
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

    specs = _k8s_specs(load_catalog(load_settings()), tenant)
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

    catalog = load_catalog(load_settings())
    rendered = {spec.name: render_tenant(spec) for spec in _k8s_specs(catalog, tenant)}
    applier = Applier(api_client(), dry_run=dry_run)
    suffix = " (dry run)" if dry_run else ""
    for name, manifests in rendered.items():
        count = applier.apply_all(manifests)
        console.print(f"[green]applied[/] {name}: {count} objects{suffix}")
    applier.prune(catalog.keys(), prune, lambda line: err.print(f"[yellow]prune[/] {line}{suffix}"))


# -- cost -------------------------------------------------------------------------------------


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

    from featureplane.cost import load_prices
    from featureplane.cost import report as cost
    from featureplane.online.clients import redis_client

    if format_ not in ("table", "csv", "json"):
        raise typer.BadParameter("one of table, csv, json", param_hint="--format")
    settings = load_settings()
    prices = load_prices(settings.cost_prices)
    url = gateway or f"http://{settings.gateway_host}:{settings.gateway_port}"
    client = redis_client(settings, socket_timeout=30.0)
    try:
        result = cost.report(list(load_catalog(settings).values()), client, prices, url, sample)
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
