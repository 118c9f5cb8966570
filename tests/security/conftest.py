"""Security fixtures: the session's ownership registry server (see tests/conftest.py), under the
names tests/registry/test_ownership.py uses."""

from __future__ import annotations

import pytest

from tests.support.registry_server import Platform, Rows


@pytest.fixture
def platform(ownership_platform: Platform) -> Platform:
    return ownership_platform


@pytest.fixture
def applied(ownership_applied: Rows) -> Rows:
    return ownership_applied
