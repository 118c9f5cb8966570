"""featureplane: a multi-tenant feature platform built on Feast.

Where each concept lives (``featureplane/…``; floors run upwards, an import never runs down one,
checked by ``tests/test_boundaries.py``):

==========================  ===================================================================
tenants                     ``tenancy/`` — tenant.yaml model, catalog, JSON schema, credentials
registry and governance     ``registry/`` — governed apply and plan, lint, audit, ownership
                            (registry server, permissions); ``feast_config.py`` wires Feast
online store format         ``online/`` — Feast's Redis layout and codec, RESP, cluster slots,
                            Redis URLs, the one client factory, the gateway's connections
gateway                     ``gateway/`` — app factory, auth, quotas, the feature route, ops
on-demand transformations   ``transform/`` — sandboxed per-tenant workers, their zygote
ingest                      ``ingest/`` — landing batches into offline Parquet (``offline.py``)
materialization             ``materialize/`` — the run, Feast batch engine, file-source scan
quality                     ``quality/`` — GX suites, batch checks, quarantine, drift
observability               ``observability/`` — metrics, logging, tracing, run records
cost                        ``cost/`` — usage and cost per tenant, price model
dashboards                  ``dashboards/`` — Grafana dashboards, Prometheus rules (generated)
Kubernetes                  ``k8s/`` — per-tenant manifests, server-side apply
CLI                         ``cli/`` — the ``featureplane`` command, one module per group
==========================  ===================================================================

Beneath them: ``errors.py`` (the exception tree), ``redact.py`` (secrets out of text),
``settings.py`` (the one settings class), ``sources.py`` (what tenant definitions import).
Beside them: ``embedded/`` (throwaway local servers), ``samples.py`` and ``demo.py``.

The package root stays light (no Feast import): `featureplane serve` must own
``PROMETHEUS_MULTIPROC_DIR`` before Feast or prometheus_client load.
"""

from featureplane.errors import FeatureplaneError
from featureplane.settings import Settings
from featureplane.sources import parquet_source

__version__ = "0.1.0"
__all__ = ["FeatureplaneError", "Settings", "__version__", "parquet_source"]
