"""How to log what a feature service serves: its ``logging_config`` compiled with the read plans.

A :class:`ServiceLogging` holds the Arrow schema of the service's logs, computed by Feast's own
``FeatureServiceLoggingSource.get_schema`` over the registry objects the plans were compiled
from (no registry round trip; no on-demand UDF unpickled), and where the logs go. The gateway
writes only local :class:`FileLoggingDestination` folders, as Feast's file offline store does;
anything else is compiled as ``refused`` with the reason, so requests are served and counted,
never logged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

# The system columns of a log row, as feast.feature_logging names them.
LOG_TIMESTAMP, LOG_DATE, REQUEST_ID = "__log_timestamp", "__log_date", "__request_id"


@dataclass(frozen=True, eq=False)
class ServiceLogging:
    """One feature service's logging plan."""

    tenant: str  # the service's owner: whose repo the destination is in, the metrics' label
    project: str
    service: str
    sample_rate: float  # Feast's: the fraction of requests logged
    path: str  # the FileLoggingDestination path; relative means in the owner's repo folder
    partition_by: tuple[str, ...] = ()
    schema: pa.Schema | None = None
    # (log column, answer name with full_feature_names, answer name without) per feature
    features: tuple[tuple[str, str, str], ...] = ()
    keys: tuple[str, ...] = ()  # join keys and request fields: from the answer or the request
    refused: str | None = None  # why it is not logged, in one line


class _Loaded:
    """The registry lookups of ``get_schema``, answered from objects already listed."""

    def __init__(self, views: Mapping[str, Any]) -> None:
        self._views = views

    def get_feature_view(self, name: str, project: str, allow_cache: bool = False) -> Any:
        from feast.errors import FeatureViewNotFoundException

        view = self._views.get(name)
        if view is None:
            raise FeatureViewNotFoundException(name, project)
        return view

    get_on_demand_feature_view = get_stream_feature_view = get_feature_view


def _refusal(destination: Any) -> str | None:
    from feast.infra.offline_stores.file_source import FileLoggingDestination

    if not isinstance(destination, FileLoggingDestination):
        return f"its destination is a {type(destination).__name__}, not a local file folder"
    if "://" in destination.path or not destination.path:
        return f"its destination {destination.path!r} is not a local file folder"
    return None


def compile_logging(
    project: str, tenant: str, services: Iterable[Any], views: Iterable[Any]
) -> dict[str, ServiceLogging]:
    """The logging plan of every service of ``project`` that has a ``logging_config``;
    ``views`` are the project's feature views and on-demand views (UDFs not loaded)."""
    from feast.feature_logging import FeatureServiceLoggingSource as Source

    loaded = _Loaded({v.name: v for v in views})
    plans: dict[str, ServiceLogging] = {}
    for fs in services:
        config = fs.logging_config
        if config is None:
            continue
        destination = config.destination
        base = ServiceLogging(
            tenant,
            project,
            fs.name,
            float(config.sample_rate),
            str(getattr(destination, "path", "")),
            tuple(getattr(destination, "partition_by", None) or ()),
        )
        refused = _refusal(destination)
        if refused is not None:
            plans[fs.name] = replace(base, refused=refused)
            continue
        try:
            schema = Source(fs, project).get_schema(loaded)
        except KeyError as exc:  # FEAST_TYPE_TO_ARROW_TYPE has no entry for it
            plans[fs.name] = replace(base, refused=f"Feast's logs cannot hold type {exc}")
            continue
        except Exception as exc:  # a view the gateway does not serve
            plans[fs.name] = replace(base, refused=f"Feast cannot log it: {exc}"[:300])
            continue
        missing = [c for c in base.partition_by if c not in schema.names]
        if missing:
            plans[fs.name] = replace(base, refused=f"it partitions by unknown columns {missing}")
            continue
        features = tuple(
            (f"{p.name_to_use()}__{f.name}", f"{p.name}__{f.name}", f.name)
            for p in fs.feature_view_projections
            for f in p.features
        )
        derived = {c for column, _, _ in features for c in _feature_columns(column)}
        system = {LOG_TIMESTAMP, LOG_DATE, REQUEST_ID}
        keys = tuple(n for n in schema.names if n not in derived and n not in system)
        plans[fs.name] = replace(base, schema=schema, features=features, keys=keys)
    return plans


def _feature_columns(column: str) -> tuple[str, str, str]:
    """A feature's value, event-time and status columns."""
    return column, f"{column}__timestamp", f"{column}__status"
