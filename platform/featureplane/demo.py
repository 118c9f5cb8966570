"""`featureplane demo`: the whole path on the embedded default, with real HTTP calls at the end.

With no ``FEATUREPLANE_REDIS_URL`` it starts a throwaway redis-server; with no
``FEATUREPLANE_DATA_DIR`` it uses (and resets) ``.featureplane/demo`` with a SQLite registry
inside. Whatever is set is honoured and never wiped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from featureplane.embedded.gateway import GatewayProcess
from featureplane.embedded.redis import EmbeddedRedis, free_port
from featureplane.errors import FeatureplaneError, MaterializationError
from featureplane.feast_config import close_registry, open_registry, tenant_views
from featureplane.gateway.plans import ReadPlans
from featureplane.materialize.runner import MaterializeReport, materialize_tenant
from featureplane.online.clients import redis_client
from featureplane.quality.drift import save_reference, take_reference
from featureplane.redact import redact_url
from featureplane.registry.governed import governed_apply
from featureplane.samples import generate, land
from featureplane.settings import Settings
from featureplane.tenancy.catalog import TenantCatalog
from featureplane.tenancy.credentials import CredentialStore
from featureplane.tenancy.spec import TenantSpec

DEMO_DATA_DIR = Path(".featureplane/demo")


@contextlib.contextmanager
def _store(settings: Settings, console: Console) -> Iterator[Settings]:
    if settings.redis_url:
        yield settings
        return
    with EmbeddedRedis() as server:
        console.print(f"started a throwaway redis-server at {server.url}")
        yield settings.model_copy(update={"redis_url": server.url})


def _demo_settings(console: Console) -> Settings:
    settings = Settings()
    if "FEATUREPLANE_DATA_DIR" not in os.environ:
        shutil.rmtree(DEMO_DATA_DIR, ignore_errors=True)
        settings = settings.model_copy(update={"data_dir": DEMO_DATA_DIR})
    console.print(f"data folder {settings.data_path}, registry {redact_url(settings.registry_url)}")
    return settings


@dataclass
class SampleDeployment:
    """The sample tenants applied, materialized and given one token each."""

    tables: dict[str, dict[str, pa.Table]]  # tenant -> source -> the batch that was landed
    tokens: dict[str, str]


def deploy_samples(
    settings: Settings,
    catalog: TenantCatalog,
    rows: int,
    now: datetime,
    say: Callable[[str], None] = lambda _msg: None,
) -> SampleDeployment:
    """Land each tenant's sample batch, apply its definitions, materialize, issue a token.

    A sample lands in two halves split at its median event time, so drift has a reference and
    a batch scored against it: the older half is materialized and taken as the drift reference,
    then the newer half is materialized and scored. What is served is the same as if the sample
    had landed at once (the newest row per entity wins either way).

    Definitions go in through the governed apply (:mod:`featureplane.registry.governed`), as
    `featureplane apply` puts them in: lint and Feast's plan classified, then `feast apply`.
    """
    tables: dict[str, dict[str, pa.Table]] = {}
    for spec in catalog.values():
        tables[spec.name] = generate(settings, spec, rows, now)
        halves = {name: _halves(t, spec.drift.min_rows) for name, t in tables[spec.name].items()}
        land(settings, spec, {name: older for name, (older, _) in halves.items()})
        (result,) = governed_apply(settings, [spec], allow_breaking=None)
        say(f"[green]applied[/] {spec.name} ({result.seconds:.1f} s)")
        reports = [_materialize(settings, spec)]
        with redis_client(settings) as client:
            save_reference(client, take_reference(settings, spec))
        newer = {name: half for name, (_, half) in halves.items() if half is not None}
        if newer:
            land(settings, spec, newer)
            reports.append(_materialize(settings, spec))
        ingested = sum(i.rows for r in reports for i in r.ingested.values())
        scored = [score for r in reports for score in r.drift]
        say(
            f"[green]materialized[/] {spec.name}: {ingested} rows "
            f"({sum(r.seconds for r in reports):.1f} s); drift of the newer half against the "
            f"older: {sum(s.drifted for s in scored)} of {len(scored)} features over threshold"
        )
    with redis_client(settings) as client:
        creds = CredentialStore(client, settings.pepper)
        tokens = {name: creds.issue(name).token for name in catalog}
    return SampleDeployment(tables, tokens)


def _materialize(settings: Settings, spec: TenantSpec) -> MaterializeReport:
    """A materialization run; sample batches failing a strict suite stop the deployment."""
    report = materialize_tenant(settings, spec)
    if report.quarantined:
        raise MaterializationError(report.refusal())
    return report


def _halves(table: pa.Table, min_rows: int) -> tuple[pa.Table, pa.Table | None]:
    """Older and newer half by event time; all of it at once when a half would be too small
    to score (``drift.min_rows``)."""
    if "event_timestamp" not in table.column_names or table.num_rows < 2 * min_rows:
        return table, None
    order = pc.sort_indices(table, [("event_timestamp", "ascending")])
    half = table.num_rows // 2
    return table.take(order[:half]), table.take(order[half:])


def sample_requests(
    catalog: ReadPlans, tenant: str, tables: dict[str, pa.Table], sources: dict[str, str]
) -> list[dict[str, Any]]:
    """One request per feature view (its first two entity rows) and per feature service."""
    project = catalog.projects[catalog.tenants[tenant].feast_project]
    requests = []
    for view in project.views.values():
        table = tables[sources[view.name]]
        rows = table.select(list(view.join_keys)).slice(0, 2).to_pylist()
        entities = {k: [r[k] for r in rows] for k in view.join_keys}
        requests.append(
            {"features": [f"{view.name}:{f}" for f in view.fields], "entities": entities}
        )
    for name, projections in project.services.items():
        first_view = project.views[projections[0][0]]
        table = tables[sources[first_view.name]]
        rows = table.select(list(first_view.join_keys)).slice(0, 2).to_pylist()
        entities = {k: [r[k] for r in rows] for k in first_view.join_keys}
        requests.append({"feature_service": name, "entities": entities})
    return requests


def _show(console: Console, tenant: str, request: dict[str, Any], answer: dict[str, Any]) -> None:
    names = answer["metadata"]["feature_names"]
    what = request.get("feature_service") or request["features"][0].split(":")[0]
    table = Table(title=f"{tenant}: {what}", title_justify="left")
    for name in names:
        table.add_column(name, overflow="ellipsis", no_wrap=True, max_width=30)
    rows = len(answer["results"][0]["values"])
    for i in range(rows):
        cells = []
        for col in answer["results"]:
            value = col["values"][i]
            text = json.dumps(value) if not isinstance(value, str) else value
            text = text if len(text) <= 30 else text[:29] + "…"
            cells.append(
                text if col["statuses"][i] == "PRESENT" else f"[dim]{col['statuses'][i]}[/]"
            )
        table.add_row(*cells)
    console.print(table)


def run_demo(console: Console, *, once: bool, rows: int) -> None:
    started = time.perf_counter()
    settings = _demo_settings(console)
    catalog = TenantCatalog.load(settings.tenants_path, settings.feature_repo_path)
    with _store(settings, console) as settings:
        deployed = deploy_samples(settings, catalog, rows, datetime.now(UTC), console.print)
        tables, tokens = deployed.tables, deployed.tokens
        registry = open_registry(settings)
        try:
            serving = ReadPlans.load(catalog, registry)
            sources = {
                name: {
                    fv.name: fv.batch_source.name
                    for fv in tenant_views(registry, spec.feast_project)
                }
                for name, spec in catalog.items()
            }
        finally:
            close_registry(registry)
        port = _pick_port(settings.gateway_port)
        with GatewayProcess(settings, port, workers=2) as gateway:
            base = gateway.base
            console.print(f"gateway ready at {base} (2 workers)")
            rows_by_view: dict[str, dict[str, Any]] = {name: {} for name in catalog}
            with httpx.Client(base_url=base, timeout=10) as http:
                for name in catalog:
                    for body in sample_requests(serving, name, tables[name], sources[name]):
                        resp = http.post(
                            "/get-online-features", json=body, headers=_auth(tokens[name])
                        )
                        if resp.status_code != 200:
                            raise FeatureplaneError(f"{name}: HTTP {resp.status_code}: {resp.text}")
                        _show(console, name, body, resp.json())
                        if "features" in body:
                            view = body["features"][0].split(":")[0]
                            rows_by_view[name][view] = body["entities"]
                _show_isolation(console, http, catalog, serving, tokens, rows_by_view)
            _print_next_steps(console, settings, base, tokens, serving, catalog, tables, sources)
            console.print(f"demo took {time.perf_counter() - started:.1f} s")
            if once or not sys.stdin.isatty():
                console.print(
                    "stopping the gateway (--once or no terminal); "
                    "run `make demo` in a terminal to keep it serving"
                )
                return
            console.print("[bold]serving until Ctrl-C[/]")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)


def _pick_port(preferred: int) -> int:
    """The configured port (8080 by default) when it is free, else any free one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _show_isolation(
    console: Console,
    http: httpx.Client,
    catalog: TenantCatalog,
    serving: ReadPlans,
    tokens: dict[str, str],
    shared_rows: dict[str, dict[str, Any]],
) -> None:
    """A read through a sharing grant, a cross-tenant read without one, a read without a token."""
    shown_shared = shown_forbidden = False
    for owner in catalog.values():
        for reader in catalog.values():
            if reader.name == owner.name:
                continue
            granted, _ = owner.grants_to(reader.name)
            for view in serving.projects[owner.feast_project].views.values():
                body = {
                    "features": [f"{view.name}:{f}" for f in view.fields],
                    "entities": shared_rows[owner.name][view.name],
                }
                if view.name in granted and not shown_shared:
                    resp = http.post(
                        "/get-online-features", json=body, headers=_auth(tokens[reader.name])
                    )
                    _show(console, f"{reader.name} (shared by {owner.name})", body, resp.json())
                    shown_shared = True
                elif view.name not in granted and not shown_forbidden:
                    resp = http.post(
                        "/get-online-features", json=body, headers=_auth(tokens[reader.name])
                    )
                    console.print(
                        f"isolation: {reader.name} reading {owner.name}'s {view.name} -> "
                        f"HTTP {resp.status_code} {resp.text}"
                    )
                    resp = http.post("/get-online-features", json=body)
                    console.print(f"isolation: no token -> HTTP {resp.status_code} {resp.text}")
                    shown_forbidden = True


def _print_next_steps(
    console: Console,
    settings: Settings,
    base: str,
    tokens: dict[str, str],
    serving: ReadPlans,
    catalog: TenantCatalog,
    tables: dict[str, dict[str, pa.Table]],
    sources: dict[str, dict[str, str]],
) -> None:
    name = next(iter(catalog))
    body = sample_requests(serving, name, tables[name], sources[name])[0]
    console.rule("try it")
    console.print("tokens (shown once):")
    for tenant, token in tokens.items():
        console.print(f"  {tenant}: {token}", highlight=False, soft_wrap=True)
    curl = (
        f"curl -s -X POST {base}/get-online-features -H 'Content-Type: application/json' "
        f"-H 'Authorization: Bearer {tokens[name]}' -d {shlex.quote(json.dumps(body))}"
    )
    console.print(curl, highlight=False, soft_wrap=True)
    console.print(f"metrics: curl -s {base}/metrics | grep featureplane_", highlight=False)
    console.print(
        f"environment: FEATUREPLANE_REDIS_URL={redact_url(settings.redis_url or '')} "
        f"FEATUREPLANE_REGISTRY={redact_url(settings.registry_url)} "
        f"FEATUREPLANE_DATA_DIR={settings.data_path}",
        highlight=False,
        soft_wrap=True,
    )
