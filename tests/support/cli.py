"""The real `featureplane` command, run in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def run_cli(
    *args: str, env: Mapping[str, str], cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The real `featureplane` command in a subprocess, seeing ``env`` and none of this process's
    FEATUREPLANE_* (Feast exports some) nor its PROMETHEUS_MULTIPROC_DIR (Feast sets it)."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FEATUREPLANE_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    return subprocess.run(
        [sys.executable, "-m", "featureplane.cli", *args],
        cwd=cwd,
        env=inherited | {"COLUMNS": "250"} | dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
