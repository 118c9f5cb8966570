"""`featureplane demo --once`: the embedded default end to end, as `make demo` runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from featureplane.embedded.redis import redis_server_binary
from tests.support.components import require
from tests.support.paths import ROOT


def test_demo_fetches_real_values_for_every_tenant(tmp_path: Path) -> None:
    try:
        redis_server_binary()
    except Exception:
        require(False, "redis-server")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("FEATUREPLANE_", "PROMETHEUS_"))
    }
    env["FEATUREPLANE_DATA_DIR"] = str(tmp_path / "data")
    env["COLUMNS"] = "200"
    proc = subprocess.run(
        [sys.executable, "-m", "featureplane.cli", "demo", "--once", "--rows", "50"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for title in (
        "fraud: account_stats",
        "recsys: user_profile",
        "recsys: user_item_affinity",
        "pricing: pricing_model_v1",
    ):
        assert title in out
    assert "HTTP 403" in out
    assert "HTTP 401" in out
    assert "curl -s -X POST http://127.0.0.1:" in out
    assert "Authorization: Bearer fpt_" in out
