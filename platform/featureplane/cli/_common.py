"""What every command group of the CLI shares: the consoles, settings and tenant loading,
tenant selection, the progress bar and ISO 8601 options."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from featureplane.errors import FeatureplaneError
from featureplane.settings import Settings
from featureplane.tenancy.catalog import TenantCatalog
from featureplane.tenancy.spec import TenantSpec

console = Console()
err = Console(stderr=True)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:  # pydantic's ValidationError names the FEATUREPLANE_* field
        raise FeatureplaneError(f"configuration: {exc}") from exc


def load_catalog(settings: Settings) -> TenantCatalog:
    return TenantCatalog.load(settings.tenants_path, settings.feature_repo_path)


def select_tenants(catalog: TenantCatalog, tenant: str | None, all_: bool) -> list[TenantSpec]:
    """The `TENANT` argument or `--all`, exactly one of them."""
    if all_ == (tenant is not None):
        raise typer.BadParameter("name one tenant, or pass --all")
    return list(catalog.values()) if all_ else [catalog.get_tenant(tenant or "")]


def progress_bar() -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )  # fmt: skip


def parse_time(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 option value; UTC when it names no zone."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=option) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
