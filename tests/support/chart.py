"""What the chart carries from the rest of the repository.

Its copies of the generated dashboards and rules are written by `featureplane dashboards
generate` (and checked by `--check`); tests/helm also compare them here. The default `tenants:`
list in values.yaml is checked, not rewritten (its schedules are hand-chosen):
`python -m tests.support.chart` prints the names to add or drop.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from tests.support.paths import ROOT

CHART = ROOT / "helm" / "featureplane"


def copies() -> list[tuple[Path, Path]]:
    """(source, copy in the chart) for every generated file the chart carries."""
    pairs = [(ROOT / "dashboards/prometheus/rules.yaml", CHART / "files/rules.yaml")]
    for source in sorted((ROOT / "dashboards/grafana").glob("*.json")):
        pairs.append((source, CHART / "files/dashboards" / source.name))
    return pairs


def tenant_names() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "tenants").glob("*/tenant.yaml"))


def chart_tenant_names() -> list[str]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    return sorted(t["name"] for t in values["tenants"])


def main() -> int:
    wanted, have = set(tenant_names()), set(chart_tenant_names())
    for name in sorted(wanted - have):
        print(f"values.yaml tenants: add {name}")
    for name in sorted(have - wanted):
        print(f"values.yaml tenants: drop {name}")
    return 1 if wanted != have else 0


if __name__ == "__main__":
    sys.exit(main())
