"""Registry fixtures: a throwaway PostgreSQL for the shared SQL registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from featureplane.embedded.postgres import EmbeddedPostgres, postgres_binary
from featureplane.errors import ConfigError
from tests.conftest import require


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


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster in a temp dir on a free port (initdb + postgres, ~2 s)."""
    server = start_postgres()
    try:
        yield server.url
    finally:
        server.stop()
