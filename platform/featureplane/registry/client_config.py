"""The feature_store.yaml a tenant's CI uses: plain `feast plan`/`feast apply` through the
registry server, with no database or Redis credentials.

- ``registry``: the registry server (``registry_type: remote``);
- ``auth``: the tenant's ``fpt_…`` token, which Feast's client sends as a bearer token. The file
  says ``${FEATUREPLANE_TOKEN}``: Feast expands variables when it reads the file, so the secret
  stays in the CI's secret store, never in the repository;
- ``online_store``: the gateway (``type: remote``), whose client has no infrastructure to
  create or delete at apply time, so CI needs no Redis credentials (the platform's own
  `featureplane apply` and materialization maintain Redis).

The offline store stays ``file``: `feast apply` only validates the source folders and records
their paths, which :func:`featureplane.sources.parquet_source` derives from
``FEATUREPLANE_DATA_DIR`` and ``FEATUREPLANE_PROJECT``.
"""

from __future__ import annotations

from typing import Any

import yaml

TOKEN_VARIABLE = "FEATUREPLANE_TOKEN"


def remote_feature_store(
    project: str,
    registry_server: str,
    gateway_url: str,
    *,
    token: str = "${" + TOKEN_VARIABLE + "}",
    tls_cert: str | None = None,
) -> dict[str, Any]:
    """The mapping; ``tls_cert`` is the CA certificate when the server runs TLS."""
    registry: dict[str, Any] = {"registry_type": "remote", "path": registry_server}
    if tls_cert is not None:
        registry.update(is_tls=True, cert=tls_cert)
    return {
        "project": project,
        "provider": "local",
        "registry": registry,
        "online_store": {"type": "remote", "path": gateway_url},
        "offline_store": {"type": "file"},
        "auth": {"type": "kubernetes", "user_token": token},
        "entity_key_serialization_version": 3,
    }


def render_remote_feature_store(
    project: str, registry_server: str, gateway_url: str, *, tls_cert: str | None = None
) -> str:
    doc = remote_feature_store(project, registry_server, gateway_url, tls_cert=tls_cert)
    return yaml.safe_dump(doc, sort_keys=False)
