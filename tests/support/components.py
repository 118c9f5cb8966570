"""Components a test needs (a binary, a server, an extra): a skip when missing, except under
CI=true, where a missing component fails the run loudly."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, what: str) -> None:
    """Skip when a component is missing, except in CI where that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing", pytrace=False)
    pytest.skip(f"{what} not available")


def require_binary(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"the {name} binary")
    assert path is not None
    return path
