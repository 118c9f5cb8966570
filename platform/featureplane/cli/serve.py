"""`featureplane serve`: the gateway.

Nothing here imports ``prometheus_client`` (nor the gateway) before the command has set
``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import os
import shutil
from typing import Annotated

import typer

from featureplane.cli._common import load_settings
from featureplane.confine import DUMPABLE


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

    settings = load_settings()
    settings.require_redis_url()
    check_registry(settings)
    metrics_dir = settings.metrics_path
    shutil.rmtree(metrics_dir, ignore_errors=True)  # stale values of dead processes
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # Tenants' transform workers run as this OS user: this process's /proc/<pid>/environ holds
    # the platform's secrets too, so it is root's for as long as the gateway runs (each serving
    # process clears its own flag while its zygote lives).
    DUMPABLE.hold()
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
