"""Registry fixtures: a throwaway PostgreSQL for the shared SQL registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import start_postgres


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster in a temp dir on a free port (initdb + postgres, ~2 s)."""
    server = start_postgres()
    try:
        yield server.url
    finally:
        server.stop()
