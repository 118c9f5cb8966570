"""Synthetic sample data for a tenant, from the generator its repo ships.

A tenant may ship ``feature_repo/<t>/<t>_sample_data.py`` with
``generate(rows: int, now: datetime, seed: int) -> dict[source_name, pyarrow.Table]``.
The batches land where real upstream jobs would drop theirs (the landing folder), so the demo
and tests go through the same quality checks and materialization as production data.
"""

from __future__ import annotations

import importlib.util
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from featureplane.errors import ConfigError
from featureplane.offline import write_part
from featureplane.settings import Settings
from featureplane.sources import landing_dir
from featureplane.tenancy.spec import TenantSpec


def generator_path(settings: Settings, spec: TenantSpec) -> Path:
    return settings.feature_repo_path / spec.name / f"{spec.name}_sample_data.py"


def generate(settings: Settings, spec: TenantSpec, rows: int, now: datetime) -> dict[str, pa.Table]:
    path = generator_path(settings, spec)
    if not path.exists():
        raise ConfigError(f"{path}: tenant {spec.name!r} ships no sample data generator")
    module_spec = importlib.util.spec_from_file_location(f"_featureplane_samples_{spec.name}", path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    tables: dict[str, pa.Table] = module.generate(rows=rows, now=now)
    return tables


def land(settings: Settings, spec: TenantSpec, tables: dict[str, pa.Table]) -> dict[str, Path]:
    """Drop one batch per source into the tenant's landing folders."""
    return {
        source: write_part(
            table, landing_dir(settings.data_path, spec.feast_project, source), "batch"
        )
        for source, table in tables.items()
    }
