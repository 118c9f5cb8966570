"""Schemathesis against the running gateway's own ``/openapi.json``.

The real gateway (`featureplane serve`, 2 workers) is fuzzed with requests generated from the
schema it publishes — valid and invalid ones (wrong types, missing and extra fields, boundary
values; schemathesis' coverage and fuzzing phases) — with real tenant tokens and with none. Every
answer must pass:

- ``not_a_server_error``: no 5xx;
- ``status_code_conformance``: a status code the schema documents for that operation;
- ``content_type_conformance``: a Content-Type it documents;
- ``response_schema_conformance``: a body that validates against the documented schema;
- ``negative_data_rejection``: a request the schema says is invalid is refused (4xx);
- ``ignored_auth``, ``unsupported_method``: the documented bearer auth is enforced, other
  methods get 405 with ``Allow``.

Not run: ``positive_data_acceptance`` — it expects every schema-valid request to succeed, but
which feature names and join keys exist is registry data no schema can enumerate, so a
generated ``{"features": ["abc:x"]}`` is rightly a 400. The 200 path is checked instead with
known-good requests for every sample tenant (:func:`test_answers_match_the_schema`).

Runs the schemathesis CLI (pytest 9.2 removed the ``Node._nodeid`` that schemathesis' lazy
pytest loader needs), derandomized (``--generation-deterministic``) with a bounded number of
examples per operation, so the run is the same every time.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis import checks

from featureplane.embedded.gateway import GatewayProcess
from tests.support.deployment import Deployment
from tests.support.gateway import bearer

MAX_EXAMPLES = 150
CLI_CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "ignored_auth",
    "unsupported_method",
]
OPERATIONS = {"GET /health", "GET /ready", "GET /metrics", "POST /get-online-features"}


def _schemathesis(gateway: GatewayProcess, cwd: Path, headers: dict[str, str]) -> str:
    cmd = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{gateway.base}/openapi.json",
        "--checks",
        ",".join(CLI_CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--workers",
        "1",
        "--continue-on-failure",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    for name, value in headers.items():
        cmd += ["--header", f"{name}: {value}"]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"schemathesis found problems:\n{output}"
    return output


@pytest.mark.parametrize("tenant", ["recsys", "fraud", None], ids=["recsys", "fraud", "no-token"])
def test_fuzz_the_published_schema(
    gateway: GatewayProcess, deployment: Deployment, tmp_path: Path, tenant: str | None
) -> None:
    headers = bearer(deployment.tokens[tenant]) if tenant else {}
    output = _schemathesis(gateway, tmp_path, headers)
    assert f"Operations:       {len(OPERATIONS)} selected / {len(OPERATIONS)} total" in output
    generated = re.search(r"(\d+) generated, (\d+) passed", output)
    assert generated is not None, output
    assert int(generated[1]) == int(generated[2]) >= 200, output  # a real run, every case passed


# Known-good requests (200) whose answers are validated against the published schema: values of
# every Feast type the samples hold, absent entities, a repeated entity, a feature service.
GOOD: list[tuple[str, dict[str, Any]]] = [
    (
        "fraud",
        {
            "features": [
                "account_stats:txn_count_24h",
                "account_stats:chargeback_rate",
                "account_stats:is_flagged",
            ],
            "entities": {"account_id": [1, 2, 10**12, 1]},
        },
    ),
    (
        "recsys",
        {
            "features": ["user_profile:taste_embedding", "user_profile:recent_item_ids"],
            "entities": {"user_id": ["u000004", "nobody", "u000004"]},
            "full_feature_names": True,
        },
    ),
    (
        "pricing",
        {
            "feature_service": "pricing_model_v1",
            "entities": {"store_id": [1, 2], "sku": ["sku-00001", "none"]},
        },
    ),
]


@pytest.fixture(scope="module")
def published(gateway: GatewayProcess) -> Any:
    return schemathesis.openapi.from_url(f"{gateway.base}/openapi.json")


@pytest.mark.parametrize(("tenant", "body"), GOOD, ids=[g[0] for g in GOOD])
def test_answers_match_the_schema(
    published: Any, deployment: Deployment, tenant: str, body: dict[str, Any]
) -> None:
    case = published["/get-online-features"]["POST"].Case(
        body=body, headers=bearer(deployment.tokens[tenant]), media_type="application/json"
    )
    response = case.call_and_validate(
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
        ]
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert len(answer["results"]) == len(answer["metadata"]["feature_names"])
