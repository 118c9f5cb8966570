"""A throwaway PostgreSQL (the shared SQL registry's database)."""

from __future__ import annotations

from featureplane.embedded.postgres import EmbeddedPostgres, postgres_binary
from featureplane.errors import ConfigError
from tests.support.components import require


def require_postgres() -> None:
    """PostgreSQL's server binaries, or a skip (a failure under CI=true)."""
    try:
        postgres_binary("initdb")
        postgres_binary("postgres")
    except ConfigError:
        require(False, "PostgreSQL server binaries (initdb, postgres)")


def start_postgres() -> EmbeddedPostgres:
    require_postgres()
    return EmbeddedPostgres().start()
