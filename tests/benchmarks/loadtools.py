"""Drivers for Debian's wrk (throughput, closed loop) and hey (raw per-request latency), and
the gateway as the benchmarks start it (:func:`ready_gateway`).

wrk's percentiles are corrected for coordinated omission and hey's are not (see
../shared/reference/feast-baseline.md): use wrk for req/s and hey for latency.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from featureplane.embedded import GatewayProcess, free_port
from featureplane.settings import Settings


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


WRK_BODIES_LUA = """
local bodies = {{
{bodies}
}}
local headers = {{ ["Content-Type"] = "application/json", ["Authorization"] = "Bearer {token}" }}
math.randomseed({seed})
function request()
  return wrk.format("POST", "{path}", headers, bodies[math.random(#bodies)])
end
{capture}
function done(summary, latency, requests)
  io.write(string.format('RESULT {{"rps":%.1f,"p50_ms":%.2f,"p99_ms":%.2f,"requests":%d,"errors":%d}}\\n',
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
  for _, thread in ipairs(threads or {{}}) do
    local failed = thread:get("failed")
    if failed ~= nil then io.write("FAILED " .. failed .. "\\n") break end
  end
end
"""
# wrk reads every answer's body once response() is defined: only where a failure is wanted.
CAPTURE_LUA = """
threads = {}
function setup(thread) table.insert(threads, thread) end
function response(status, headers, body)
  if failed == nil and status >= 300 then failed = status .. " " .. body:sub(1, 300):gsub("\\n", " ") end
end
"""


def wrk_bodies(
    base: str,
    token: str,
    bodies: Sequence[dict[str, Any]],
    connections: int,
    seconds: float,
    path: str = "/get-online-features",
    capture: bool = False,
) -> dict[str, Any]:
    """wrk POSTing to ``base + path`` a body drawn at random from ``bodies`` per request: req/s,
    p50/p99 ms (corrected for coordinated omission), requests and ``errors`` (non-2xx answers,
    timeouts and socket errors); with ``capture`` (slower: wrk then reads every body), also
    ``failure``, the status and body start of the first non-2xx answer."""
    literals = ",\n".join(f"  [==[{json.dumps(b, separators=(',', ':'))}]==]" for b in bodies)
    script = WRK_BODIES_LUA.format(
        bodies=literals,
        token=token,
        path=path,
        seed=random.randrange(2**31),
        capture=CAPTURE_LUA if capture else "",
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
        name = fh.name
    try:
        out = subprocess.run(
            [require("wrk"), "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--timeout", "10s",
             "-s", name, base],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        Path(name).unlink()
    result: dict[str, Any] = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    if "FAILED " in out:
        result["failure"] = out.split("FAILED ", 1)[1].splitlines()[0]
    return result


@contextmanager
def ready_gateway(
    settings: Settings, workers: int = 2, timeout: float = 300.0
) -> Iterator[GatewayProcess]:
    """``featureplane serve`` with ``workers`` processes, once every one of them is ready.

    A gateway answers /ready 503 (``not_ready``) until its tenants' transform workers are up, and
    each uvicorn process answers for itself only: :class:`GatewayProcess` returns at the first
    200, from whichever process took the probe. So this also waits until every process logged
    uvicorn's "Application startup complete." (it accepts connections only after that), then for
    20 consecutive 200s from /ready on fresh connections. Transform workers import Feast, several
    at once on a small machine: hence the long ``timeout``. Callers that call on-demand views
    still warm up with them and check for non-2xx answers (a process whose workers were replaced
    after start-up would answer 503)."""
    gw = GatewayProcess(settings, free_port(), workers=workers)
    gw.start(timeout=timeout)
    try:
        deadline = time.monotonic() + timeout
        while gw.log.read_text(errors="replace").count("Application startup complete") < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"not every gateway process started within {timeout:.0f} s ({gw.log})"
                )
            time.sleep(0.2)
        ok = 0
        while ok < 20:
            try:
                answer = httpx.get(f"{gw.base}/ready", timeout=5)  # a new connection each time
                ok = ok + 1 if answer.status_code == 200 else 0
            except httpx.HTTPError:
                ok = 0
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway's /ready never settled on 200 ({gw.log})")
            time.sleep(0.05)
        yield gw
    finally:
        gw.stop()


def publish(results: dict[str, Any], out: Path, table: str) -> None:
    """Write a benchmark's results as JSON and print its table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(table)
    print(f"\nwritten to {out}")
