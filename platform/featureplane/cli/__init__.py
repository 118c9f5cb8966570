"""The `featureplane` command line (typer). Exit code 0 on success, 1 on failure, with a message
naming the file and field (or the tenant and object) at fault.

One module per command group: :mod:`.tenants`, :mod:`.registry` (plan, apply, registry-server),
:mod:`.data` (materialize, drift), :mod:`.serve`, :mod:`.ops` (dashboards, k8s, cost),
:mod:`.docs` (the generated reference tables), :mod:`.demo`; what they share is in
:mod:`._common`. Group modules hold their sub-typers; :mod:`.commands` registers them, and the
top-level commands in the order `featureplane --help` lists them.

Heavy imports (Feast, the gateway) happen inside commands: `featureplane serve` must set
``PROMETHEUS_MULTIPROC_DIR`` before anything imports ``prometheus_client``.
"""

from featureplane.cli.commands import app, main

__all__ = ["app", "main"]
