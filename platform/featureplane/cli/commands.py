"""The `featureplane` app: every command group registered, and the console script."""

from __future__ import annotations

import typer

from featureplane.cli import data, demo, docs, ops, registry, serve, tenants
from featureplane.cli._common import err
from featureplane.errors import FeatureplaneError
from featureplane.redact import redact

app = typer.Typer(
    help="featureplane: a multi-tenant feature platform on Feast.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("plan")(registry.plan)
app.command("apply")(registry.apply)
app.command("materialize")(data.materialize)
app.command("serve")(serve.serve)
app.command("registry-server")(registry.registry_server)
app.command("demo")(demo.demo)
app.add_typer(tenants.tenants_app, name="tenants")
app.add_typer(ops.dashboards_app, name="dashboards")
app.add_typer(data.drift_app, name="drift")
app.add_typer(ops.cost_app, name="cost")
app.add_typer(ops.k8s_app, name="k8s")
app.add_typer(docs.docs_app, name="docs")


def main() -> None:
    """The console script: a :class:`~featureplane.errors.FeatureplaneError` is one redacted
    ``error: ...`` line on stderr and exit code 1."""
    try:
        app()
    except FeatureplaneError as exc:
        err.print(f"[red]error:[/] {redact(str(exc))}", highlight=False, soft_wrap=True)
        raise SystemExit(1) from None
