"""`featureplane plan`, `apply` and `registry-server`: the shared registry.

The governed-apply rule itself is :mod:`featureplane.registry.governed`; these commands parse,
show progress and print.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Annotated

import typer

from featureplane.cli._common import (
    console,
    load_catalog,
    load_settings,
    progress_bar,
    select_tenants,
)
from featureplane.errors import FeatureplaneError

if TYPE_CHECKING:
    from rich.progress import TaskID

    from featureplane.registry.apply import ApplyResult
    from featureplane.registry.gate import GateResult
    from featureplane.tenancy.spec import TenantSpec

AllowBreaking = Annotated[
    str | None,
    typer.Option(
        "--allow-breaking",
        metavar="REASON",
        help="Accept breaking changes; the reason goes to <data dir>/audit/<tenant>.jsonl.",
    ),
]


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
    from featureplane.registry.gate import record_acceptance
    from featureplane.registry.governed import gate_tenants
    from featureplane.registry.report import print_report, report_json

    settings = load_settings()
    spec = load_catalog(settings).get_tenant(tenant)
    (gate,) = gate_tenants(settings, [spec], allow_breaking)
    result = record_acceptance(settings, gate, "plan")
    if json_:
        print(report_json(result))
    else:
        print_report(console, result)
    if not result.passed:
        raise PlanError(f"plan of tenant {spec.name!r} refused: {'; '.join(result.refusals)}")


class _ApplyProgress:
    """The apply progress bar: shown from the first tenant's apply on (not while the gate runs),
    one line per applied tenant above it."""

    def __init__(self, total: int) -> None:
        self._progress = progress_bar()
        self._total = total
        self._task: TaskID | None = None

    def applying(self, spec: TenantSpec) -> None:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task("apply", total=self._total)
        self._progress.update(self._task, description=f"apply {spec.name}")

    def applied(self, result: ApplyResult) -> None:
        assert self._task is not None, "applied before applying"
        self._progress.console.print(
            f"[green]applied[/] {result.tenant} -> project {result.project} "
            f"({result.seconds:.1f} s)"
        )
        self._progress.advance(self._task)

    def __enter__(self) -> _ApplyProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._progress.stop()


def _print_acceptance(gate: GateResult) -> None:
    if gate.audit_file is not None:
        console.print(f"breaking changes of {gate.plan.tenant} accepted: see {gate.audit_file}")


def apply(
    tenant: Annotated[str | None, typer.Argument()] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every tenant.")] = False,
    allow_breaking: AllowBreaking = None,
) -> None:
    """The `plan` gate, then `feast apply` of TENANT's definitions into its project of the
    shared registry. Nothing is applied unless every named tenant passes the gate, nor when the
    registry is unreachable (one line naming it and the cause)."""
    from featureplane.registry.governed import governed_apply
    from featureplane.registry.report import print_report

    settings = load_settings()
    specs = select_tenants(load_catalog(settings), tenant, all_)
    with _ApplyProgress(len(specs)) as progress:
        governed_apply(
            settings,
            specs,
            allow_breaking,
            on_gate=lambda gate: print_report(console, gate),
            on_accepted=_print_acceptance,
            on_apply=progress.applying,
            on_applied=progress.applied,
        )


def registry_server(
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
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    tls = None if tls_key is None else TlsFiles(Path(tls_key), Path(tls_cert or ""))
    serve(
        settings,
        host or settings.registry_server_host,
        port if port is not None else settings.registry_server_port,
        tls,
    )
