"""The committed Grafana dashboards, and their panel queries as Grafana would send them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from featureplane.dashboards import artifacts
from tests.support.paths import ROOT

DASHBOARDS = (artifacts.TENANT_SLA, artifacts.PLATFORM_OVERVIEW)
# Grafana's variables, as a 1 s scrape interval and a short time range would set them.
GRAFANA_VARIABLES = {"$tenant": "fraud", "$__rate_interval": "1m", "$__range": "1m"}


def dashboard(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ROOT / path).read_text())
    return document


def panel_queries() -> list[Any]:
    """Every panel query of the committed dashboards as Grafana would send it, one
    ``pytest.param`` each, named ``<dashboard>/<panel>/<refId>``."""
    found = []
    for path in DASHBOARDS:
        for panel in dashboard(path)["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                found.append(
                    pytest.param(expr, id=f"{path.stem}/{panel['title']}/{target['refId']}")
                )
    return found
