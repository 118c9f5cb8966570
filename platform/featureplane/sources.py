"""Data sources for tenant definitions: where a tenant's offline Parquet lives.

Tenant repos call :func:`parquet_source` instead of hard-coding paths, so one definition works
on every deployment: featureplane sets ``FEATUREPLANE_DATA_DIR`` and ``FEATUREPLANE_PROJECT``
for the `feast apply` subprocess, and the resolved path is what the registry records.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feast import FileSource


def offline_dir(data_dir: Path, project: str, source: str) -> Path:
    """The folder of Parquet parts that backs ``source`` (written by materialization)."""
    return data_dir / "offline" / project / source


def landing_dir(data_dir: Path, project: str, source: str) -> Path:
    """Where new batches for ``source`` arrive before the quality checks."""
    return data_dir / "landing" / project / source


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: run `featureplane apply <tenant>` rather than `feast apply`, "
            "or export the variables `featureplane tenants env <tenant>` prints"
        )
    return value


def parquet_source(
    name: str, timestamp_field: str = "event_timestamp", **kwargs: Any
) -> FileSource:
    """A Feast FileSource over this project's offline Parquet folder for ``name``."""
    from feast import FileSource

    data_dir = Path(_required_env("FEATUREPLANE_DATA_DIR"))
    project = _required_env("FEATUREPLANE_PROJECT")
    path = offline_dir(data_dir, project, name)
    # The registry records this folder; it exists from apply on so Feast can validate it.
    path.mkdir(parents=True, exist_ok=True)
    return FileSource(name=name, path=str(path), timestamp_field=timestamp_field, **kwargs)
