"""Drivers for Debian's wrk (throughput, closed loop) and hey (raw per-request latency).

wrk's percentiles are corrected for coordinated omission and hey's are not (see
../shared/reference/feast-baseline.md): use wrk for req/s and hey for latency.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SystemExit(
            f"{tool} is not installed: `apt-get install {tool}` (make bench does this as root)"
        )
    return path


@dataclass
class WrkResult:
    rps: float
    non_2xx: int
    requests: int


@dataclass
class HeyResult:
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int]


def _lua(token: str, body: dict[str, Any]) -> str:
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    )


def wrk(url: str, token: str, body: dict[str, Any], connections: int, seconds: float) -> WrkResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(_lua(token, body))
        script = fh.name
    try:
        out = subprocess.run(
            [require("wrk"), "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "-s", script, url],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        Path(script).unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(rps, int(non_2xx.group(1)) if non_2xx else 0, total)


def hey(
    url: str, token: str, body: dict[str, Any], rate: int, seconds: float, connections: int = 1
) -> HeyResult:
    """``rate`` requests/s in all (hey's -q is per connection)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(body, fh)
        body_file = fh.name
    try:
        out = subprocess.run(
            [
                require("hey"), "-z", f"{seconds:.0f}s", "-c", str(connections),
                "-q", str(max(1, rate // connections)), "-m", "POST", "-T", "application/json",
                "-H", f"Authorization: Bearer {token}", "-D", body_file, url,
            ],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        Path(body_file).unlink()

    def pct(p: int) -> float:
        match = re.search(rf"\s{p}% in ([\d.]+) secs", out)
        return float(match.group(1)) * 1000 if match else float("nan")

    statuses = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    return HeyResult(pct(50), pct(99), statuses)


def publish(results: dict[str, Any], out: Path, table: str) -> None:
    """Write a benchmark's results as JSON and print its table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(table)
    print(f"\nwritten to {out}")
