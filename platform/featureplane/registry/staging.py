"""One project's rows of the shared registry, staged in a private SQLite file and swapped back.

Tenant code never sees the shared registry (:mod:`.sandbox`). The parent copies the project's
rows of every table of Feast's SQL registry (each has a ``project_id`` column) into a fresh
SQLite file (:func:`stage`); the sandboxed child plans or applies against that file; an apply
then replaces the project's rows of the shared registry with the staged file's in one
transaction (:func:`transplant`), on SQLite and PostgreSQL alike. Rows move as stored: protos
stay bytes, so the parent never unpickles a UDF. Reading needs only ``SELECT`` on the registry
tables, which is all `featureplane plan` asks of the database.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from featureplane.errors import RegistryError
from featureplane.feast_config import feast_registry_url, registry_failure, sqlite_path
from featureplane.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine, Table

Rows = dict[str, list[dict[str, Any]]]  # table -> the project's rows, by column name


def _tables() -> list[Table]:
    """Feast's registry tables that hold per-project rows (all of them in Feast 0.67)."""
    from feast.infra.registry.sql import metadata

    return [table for table in metadata.sorted_tables if "project_id" in table.c]


def _engine(url: str) -> Engine:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    # SQLite: wait for another writer's transaction (Feast's own timeout is 5 s).
    connect_args = {"timeout": 30} if url.startswith("sqlite") else {}
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


def _read(conn: Connection, project: str) -> Rows:
    from sqlalchemy import inspect, select

    present = set(inspect(conn).get_table_names())
    return {
        table.name: [
            dict(row._mapping)
            for row in conn.execute(select(table).where(table.c.project_id == project))
        ]
        for table in _tables()
        if table.name in present
    }


def read_rows(url: str, project: str) -> Rows:
    """The project's rows of the registry at ``url`` (a SQLAlchemy URL)."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return _read(conn, project)
    finally:
        engine.dispose()


def stage(settings: Settings, project: str, to: Path) -> Rows:
    """Create the SQLite registry ``to`` holding only ``project``'s rows of the shared registry;
    return those rows. :class:`RegistryError` (one line) when the registry cannot be read."""
    from feast.infra.registry.sql import metadata
    from sqlalchemy import insert
    from sqlalchemy.exc import SQLAlchemyError

    live = sqlite_path(settings)
    try:
        # A SQLite registry not created yet is empty; reading would create the file.
        rows = (
            {} if live and not live.exists() else read_rows(feast_registry_url(settings), project)
        )
    except SQLAlchemyError as exc:
        raise RegistryError(registry_failure(settings, exc)) from None
    part = to.with_name(f"{to.name}.part")  # complete or absent under its final name
    engine = _engine(f"sqlite:///{part}")
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            for table in _tables():
                if rows.get(table.name):
                    conn.execute(insert(table), rows[table.name])
    finally:
        engine.dispose()
    part.replace(to)
    return rows


def transplant(settings: Settings, staged: Path, project: str) -> Rows:
    """Replace ``project``'s rows of every table of the shared registry with ``staged``'s, in one
    transaction (creating the tables first on a fresh registry); return the rows written.

    Concurrent transplants of one project are serialized (SQLite: its write lock, and the
    caller's project lock; PostgreSQL: a transaction-scoped advisory lock on the project); the
    last one wins whole. Other projects' rows are never written.
    """
    from feast.infra.registry.sql import metadata
    from sqlalchemy import delete, insert, text
    from sqlalchemy.exc import SQLAlchemyError

    rows = read_rows(f"sqlite:///{staged}", project)
    engine = _engine(feast_registry_url(settings))
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                    {"key": f"featureplane-apply:{project}"},
                )
            metadata.create_all(conn)  # no-op unless this is the registry's first apply
            for table in _tables():
                conn.execute(delete(table).where(table.c.project_id == project))
                if rows.get(table.name):
                    conn.execute(insert(table), rows[table.name])
    except SQLAlchemyError as exc:
        raise RegistryError(registry_failure(settings, exc, "written")) from None
    finally:
        engine.dispose()
    return rows


def removed_views(before: Rows, after: Rows) -> list[Any]:
    """The protos (``FeatureView``/``StreamFeatureView``/``LabelView`` messages, parsed from
    bytes) of the views ``before`` holds and ``after`` does not: those whose online rows Feast
    deletes when it applies the change (its ``tables_to_delete``)."""
    from feast.protos.feast.core.FeatureView_pb2 import FeatureView
    from feast.protos.feast.core.LabelView_pb2 import LabelView
    from feast.protos.feast.core.StreamFeatureView_pb2 import StreamFeatureView

    removed = []
    for table, proto in (
        ("feature_views", FeatureView),
        ("stream_feature_views", StreamFeatureView),
        ("label_views", LabelView),
    ):
        kept = {row["feature_view_name"] for row in after.get(table, [])}
        removed += [
            proto.FromString(row["feature_view_proto"])
            for row in before.get(table, [])
            if row["feature_view_name"] not in kept
        ]
    return removed
