"""`featureplane materialize` and `featureplane drift reference`: tenants' data."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from featureplane.cli._common import (
    console,
    load_catalog,
    load_settings,
    parse_time,
    progress_bar,
    select_tenants,
)
from featureplane.errors import FeatureplaneError

drift_app = typer.Typer(
    help="Drift of materialized data from a training reference.", no_args_is_help=True
)


def materialize(
    tenant: Annotated[str | None, typer.Argument()] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every tenant.")] = False,
    start: Annotated[
        str | None, typer.Option(help="ISO 8601 start (default: incremental).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="ISO 8601 end (default: now).")] = None,
) -> None:
    """Check landed batches (quality checks), ingest them into offline Parquet and materialize
    them into the online store. Exits 1 when a batch failed a strict suite (quarantined)."""
    from featureplane.materialize.runner import materialize_tenant, report_lines

    settings = load_settings()
    settings.require_redis_url()
    specs = select_tenants(load_catalog(settings), tenant, all_)
    start_at, end_at = parse_time(start, "--start"), parse_time(end, "--end")
    refused: list[str] = []
    with progress_bar() as progress:
        task = progress.add_task("materialize", total=len(specs))
        for spec in specs:

            def say(msg: str, name: str = spec.name) -> None:
                progress.update(task, description=f"{name}: {msg}")

            try:
                report = materialize_tenant(settings, spec, start_at, end_at, progress=say)
            except FeatureplaneError as exc:  # stop, but keep naming what was quarantined
                raise FeatureplaneError("\n".join([*refused, str(exc)])) from exc
            if report.quarantined:  # the good batches went through: go on to the next tenant
                refused.append(report.refusal())
            summary, findings = report_lines(report)
            progress.console.print(summary)
            for line in findings:
                progress.console.print(line, highlight=False, soft_wrap=True)
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
    from featureplane.online.clients import redis_client
    from featureplane.quality.drift import reference_key, save_reference, take_reference

    settings = load_settings()
    spec = load_catalog(settings).get_tenant(tenant)
    reference = take_reference(
        settings, spec, parse_time(start, "--start"), parse_time(end, "--end")
    )
    with redis_client(settings) as client:
        save_reference(client, reference)
    table = Table("feature view", "source", "rows", "feature", "kind", "bins")
    for name, view in reference.views.items():
        for feature, summary in view.features.items():
            bins = len(summary.shares) - 1  # the last one counts missing values
            table.add_row(name, view.source, str(view.rows), feature, summary.kind, str(bins))
    console.print(table)
    console.print(f"[green]stored[/] {reference_key(spec.name)}")
