"""Serving and materialization benchmark (not a test; `make bench`, `make bench-quick`).

In one run on one machine, against one Redis holding the reference dataset
(`../shared/reference/baseline-kit`: N users x 10 features, as tenant "scale") beside the sample
tenants:

- materialization of the whole dataset by Feast's local engine and by featureplane's engine
  (wall, rows/s, peak RSS; each in its own `feast materialize` process under /usr/bin/time);
- serving, 10 features at 1 and 100 random entities, 8 and 32 connections (wrk): stock
  `feast serve` with the tuned flags, the bare Starlette floor, and the featureplane gateway
  with auth, quotas and metrics on; then the gateway's raw p99 (hey) at half its max rate;
- on-demand feature views of the sample tenants, gateway against stock `feast serve` over the
  same registry and Redis with the same requests (:mod:`tests.benchmarks.odfv`);
- feature logging on and off, the gateway's throughput on twin feature services
  (:mod:`tests.benchmarks.featurelog`).

The first two are scenario ``scale``, then ``odfv`` and ``logging``; ``--scenarios`` (default:
the ``FEATUREPLANE_BENCH_SCENARIOS`` variable, else all) selects, e.g.
``FEATUREPLANE_BENCH_SCENARIOS=odfv make bench-quick``. ``odfv`` or ``logging`` alone skips the
reference dataset (``--rows`` does not matter then). Prints a table with the ratios and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from featureplane.demo import deploy_samples
from featureplane.embedded import EmbeddedRedis, free_port
from featureplane.feast_config import feast_env, render
from featureplane.registry.apply import apply_tenant
from featureplane.settings import Settings
from featureplane.tenancy.catalog import TenantCatalog
from featureplane.tenancy.credentials import CredentialStore
from tests.benchmarks import featurelog, odfv
from tests.benchmarks.loadtools import hey, publish, ready_gateway, require

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT.parent / "shared" / "reference" / "baseline-kit"
FEATURES = [f"user_features:f_float_{i}" for i in range(4)]
FEATURES += [f"user_features:f_int_{i}" for i in range(3)] + [
    f"user_features:f_str_{i}" for i in range(3)
]
FEAST = "feast serve (tuned, w=2)"
SCENARIOS = ("scale", "odfv", "logging")
TENANT = {
    "name": "scale",
    "owners": [{"name": "Benchmarks", "email": "bench@example.com"}],
    "cost_centre": "CC-0000-BENCH",
    "sla": {"latency_p99_ms": 5},
    "quotas": {
        "requests_per_second": 1_000_000, "burst": 1_000_000, "max_concurrent_requests": 10_000,
        "max_entities_per_request": 1000, "max_features_per_request": 100, "max_body_bytes": 1_048_576,
    },
}  # fmt: skip

WRK_LUA = """
local N, MAXID = {n}, {maxid}
local feats = '{feats}'
local headers = {{ ["Content-Type"] = "application/json", ["Authorization"] = "Bearer {token}" }}
math.randomseed(os.time())
function request()
  local ids = {{}}
  for i = 1, N do ids[i] = math.random(0, MAXID - 1) end
  return wrk.format("POST", "/get-online-features", headers,
    '{{"features":' .. feats .. ',"entities":{{"user_id":[' .. table.concat(ids, ",") .. ']}}}}')
end
function done(summary, latency, requests)
  io.write(string.format('RESULT {{"rps":%.1f,"p50_ms":%.2f,"p99_ms":%.2f,"requests":%d,"errors":%d}}\\n',
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
"""


def wrk_run(
    base: str, token: str, entities: int, rows: int, connections: int, seconds: float, tmp: Path
) -> dict[str, Any]:
    script = tmp / f"post-{entities}.lua"
    script.write_text(
        WRK_LUA.format(n=entities, maxid=rows, feats=json.dumps(FEATURES), token=token)
    )
    out = subprocess.run(
        [require("wrk"), "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--timeout", "10s", "-s", str(script), base],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out.split("RESULT ", 1)[1].splitlines()[0])  # type: ignore[no-any-return]


def wait_http(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(
    cmd: list[str], url: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[None]:
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=log)
    try:
        wait_http(url)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def feast_yaml(
    settings: Settings, path: Path, engine: Any, db: int, project: str = "scale"
) -> Path:
    raw = render(settings, project)
    raw["online_store"]["connection_string"] = raw["online_store"]["connection_string"].replace(
        "db=0", f"db={db}"
    )
    raw["batch_engine"] = engine
    path.write_text(yaml.safe_dump(raw))
    return path


def timed_materialize(
    repo: Path, config: Path, env: dict[str, str], start: datetime, end: datetime
) -> dict[str, float]:
    out = subprocess.run(
        ["/usr/bin/time", "-f", "TIME %e %M", str(Path(sys.executable).with_name("feast")), "-c", str(repo), "-f", str(config),
         "materialize", start.strftime("%Y-%m-%dT%H:%M:%S"), end.strftime("%Y-%m-%dT%H:%M:%S")],
        capture_output=True, text=True, env=env, check=True,
    ).stderr  # fmt: skip
    wall, rss_kb = re.findall(r"TIME ([\d.]+) (\d+)", out)[-1]
    return {"wall_s": float(wall), "peak_rss_mb": int(rss_kb) / 1024}


def run(
    rows: int, seconds: float, scenarios: frozenset[str] = frozenset(SCENARIOS)
) -> dict[str, Any]:
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "scenarios": sorted(scenarios),
        "rows": rows,
        "seconds_per_cell": seconds,
    }
    feast = Path(sys.executable).with_name("feast")
    with tempfile.TemporaryDirectory(prefix="fp-bench-") as tmp_name, EmbeddedRedis() as server:
        tmp = Path(tmp_name)
        tenants, repos = tmp / "tenants", tmp / "feature_repo"
        # The sample tenants too, so the gateway serves a multi-tenant catalog as in production.
        shutil.copytree(ROOT / "tenants", tenants)
        shutil.copytree(ROOT / "feature_repo", repos)
        for name in (odfv.PRICING, odfv.FRAUD):  # their ODFVs are measured: no rate quota
            path = tenants / name / "tenant.yaml"
            raw = yaml.safe_load(path.read_text())
            raw["quotas"].update(odfv.UNLIMITED)
            path.write_text(yaml.safe_dump(raw))
        if "logging" in scenarios:
            featurelog.add_twins(repos / featurelog.TENANT)
        settings = Settings(
            redis_url=server.url, data_dir=tmp / "data", tenants_dir=tenants, feature_repo_dir=repos
        )
        deployed = deploy_samples(settings, TenantCatalog.load(tenants), 1000, datetime.now(UTC))
        env = dict(os.environ)
        servers: dict[str, tuple[list[str], str, Path | None, dict[str, str]]] = {}
        if "scale" in scenarios:
            results["materialize"], results["serving"] = {}, {}
            token, env = _scale(settings, tenants, repos, rows, tmp, results)
            serve_yaml = feast_yaml(settings, tmp / "fs-serve.yaml", "local", 0)
            feast_port, floor_port = free_port(), free_port()
            servers = {
                FEAST: (
                    odfv.feast_serve_cmd(feast, repos / "scale", serve_yaml, feast_port),
                    f"http://127.0.0.1:{feast_port}", None, env,
                ),
                "floor (Starlette + orjson, w=2)": (
                    [str(Path(sys.executable).with_name("uvicorn")), "--host", "127.0.0.1", "--port", str(floor_port), "--no-access-log",
                     "--loop", "uvloop", "--http", "httptools", "--workers", "2", "floor_starlette:app"],
                    f"http://127.0.0.1:{floor_port}", KIT, env | {"FLOOR_REDIS_PORT": str(server.port), "FLOOR_PROJECT": "scale", "PYTHONPATH": str(KIT)},
                ),
            }  # fmt: skip
            for name, (cmd, base, cwd, penv) in servers.items():
                with process(cmd, f"{base}/health", cwd, penv):
                    results["serving"][name] = _cells(base, token, rows, seconds, tmp)
        if "odfv" in scenarios:
            requests = odfv.bodies(deployed.tables)
            feast_side, answers = _odfv_feast(settings, repos, feast, env, requests, seconds, tmp)
        # Like the tuned Feast, no access log; auth, quotas and metrics stay on.
        os.environ["FEATUREPLANE_ACCESS_LOG"] = "false"
        with ready_gateway(settings, workers=2) as gw:
            if "scale" in scenarios:
                name = "featureplane gateway (auth+quotas+metrics, w=2)"
                results["serving"][name] = _cells(gw.base, token, rows, seconds, tmp)
                half = int(results["serving"][name]["1x8"]["rps"] / 2)
                body = {"features": FEATURES, "entities": {"user_id": [12345]}}
                results["gateway_p99_at_half_max_1_entity"] = hey(
                    f"{gw.base}/get-online-features", token, body, half, seconds, connections=8
                ).__dict__
            if "odfv" in scenarios:
                tokens = deployed.tokens
                agree = {
                    key: odfv.agrees(gw.base, tokens[tenant], requests[key][0], answers[key])
                    for key, (tenant, _) in odfv.SCENARIOS.items()
                    if key in answers
                }
                ours: dict[str, Any] = {}
                for tenant, keys in _ODFV_SERVERS.items():
                    chosen = {k: requests[k] for k in keys}
                    ours |= odfv.measure(gw.base, tokens[tenant], chosen, seconds)
                results["odfv"] = {
                    "feast serve": feast_side,
                    "gateway": ours,
                    "agree": agree,
                    "paced_rate": odfv.PACED_RATE,
                    "transforms": {
                        t: TenantCatalog.load(tenants)[t].transforms.model_dump()
                        for t in _ODFV_SERVERS
                    },
                }
            if "logging" in scenarios:
                token = deployed.tokens[featurelog.TENANT]
                logged = featurelog.bodies(deployed.tables)
                results["logging"] = {"phases": featurelog.measure(gw.base, token, logged, seconds)}
        if "logging" in scenarios:  # after the gateway wrote what it held at shutdown
            results["logging"]["logged_rows"] = featurelog.logged_rows(repos / featurelog.TENANT)
    return results


# Which scenarios each tenant's `feast serve` (one per Feast project) answers.
_ODFV_SERVERS = {odfv.PRICING: ("python_singleton_1", "plain_1"), odfv.FRAUD: ("pandas_100",)}


def _scale(
    settings: Settings, tenants: Path, repos: Path, rows: int, tmp: Path, results: dict[str, Any]
) -> tuple[str, dict[str, str]]:
    """The reference dataset as tenant ``scale``, materialized by both engines (timed); its token
    and the environment its Feast commands need."""
    (tenants / "scale").mkdir()
    (tenants / "scale" / "tenant.yaml").write_text(yaml.safe_dump(TENANT))
    (repos / "scale").mkdir()
    shutil.copy(KIT / "scale_repo_features.py", repos / "scale" / "scale_features.py")
    # Where the definitions' default SCALE_SRC points (relative to the repo, as Feast resolves
    # it): `featureplane apply` runs them in a sandbox that passes no environment variable on.
    data = repos / "scale" / "data" / "users_1m.parquet"
    data.parent.mkdir()
    subprocess.run(
        [sys.executable, str(KIT / "gen_synthetic.py"), str(rows), str(data)],
        check=True,
        capture_output=True,
    )
    os.environ["SCALE_SRC"] = str(data)
    env = os.environ | {"SCALE_SRC": str(data)}
    spec = TenantCatalog.load(tenants)["scale"]
    apply_tenant(settings, spec)

    start, end = datetime.now(UTC) - timedelta(days=3), datetime.now(UTC) + timedelta(hours=1)
    engines = {
        "feast local": ("local", 1),
        "featureplane": (
            {
                "type": "featureplane.materialize.engine.FeatureplaneEngine",
                "batch_rows": 10_000,
            },
            0,
        ),
    }
    for name, (engine, db) in engines.items():
        config = feast_yaml(settings, tmp / f"fs-{db}.yaml", engine, db)
        if name == "feast local":
            raw = yaml.safe_load(config.read_text())
            raw["materialization"] = {"online_write_batch_size": 10_000}
            config.write_text(yaml.safe_dump(raw))
        measured = timed_materialize(repos / "scale", config, env, start, end)
        measured["rows_per_s"] = rows / measured["wall_s"]
        results["materialize"][name] = measured
    with redis.Redis.from_url(settings.require_redis_url()) as client:
        token = CredentialStore(client, settings.pepper).issue("scale").token
    return token, env


def _odfv_feast(
    settings: Settings,
    repos: Path,
    feast: Path,
    env: dict[str, str],
    requests: dict[str, list[dict[str, Any]]],
    seconds: float,
    tmp: Path,
) -> tuple[dict[str, Any], dict[str, dict[str, list[Any]]]]:
    """Stock `feast serve` per sample project (pricing, then fraud), on the registry and Redis
    the gateway reads: its cells, and its answer to each ODFV scenario's first request."""
    measured: dict[str, Any] = {}
    answers: dict[str, dict[str, list[Any]]] = {}
    catalog = TenantCatalog.load(settings.tenants_path)
    for tenant, keys in _ODFV_SERVERS.items():
        project = catalog[tenant].feast_project
        config = feast_yaml(settings, tmp / f"fs-{tenant}.yaml", "local", 0, project)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        # Feast unpickles the UDFs, which dill pickled by reference to the repo's modules.
        penv = env | feast_env(settings, project) | {"PYTHONPATH": str(repos / tenant)}
        with process(odfv.feast_serve_cmd(feast, repos / tenant, config, port), f"{base}/health",
                     repos / tenant, penv):  # fmt: skip
            for key in keys:
                if key != "plain_1":
                    answers[key] = odfv.computed(base, None, requests[key][0])
            measured |= odfv.measure(base, None, {k: requests[k] for k in keys}, seconds)
    return measured, answers


def _cells(base: str, token: str, rows: int, seconds: float, tmp: Path) -> dict[str, Any]:
    wrk_run(base, token, 1, rows, 8, 3, tmp)  # warm-up
    return {
        f"{n}x{c}": wrk_run(base, token, n, rows, c, seconds, tmp)
        for n in (1, 100)
        for c in (8, 32)
    }


def targets(r: dict[str, Any]) -> list[tuple[str, float, float, bool]]:
    """Issue 5's targets, and the ODFV ones, as (name, measured, target, met)."""
    checks: list[tuple[str, float, float, bool]] = []
    if "serving" in r:
        checks += _scale_targets(r)
    if "odfv" in r:
        checks += odfv.targets(r["odfv"])
    if "logging" in r:
        checks += featurelog.targets(r["logging"])
    return checks


def _scale_targets(r: dict[str, Any]) -> list[tuple[str, float, float, bool]]:
    serving = r["serving"]
    feast, floor, ours = (serving[n] for n in list(serving)[:3])
    local, fp = r["materialize"]["feast local"], r["materialize"]["featureplane"]
    checks: list[tuple[str, float, float, bool]] = []
    for cell in serving[FEAST]:
        need = 4.0 if cell.startswith("1x") else 5.0
        ratio = ours[cell]["rps"] / feast[cell]["rps"]
        checks.append((f"gateway / feast serve, {cell}", ratio, need, ratio >= need))
        ratio = ours[cell]["rps"] / floor[cell]["rps"]
        checks.append((f"gateway / floor, {cell}", ratio, 0.7, ratio >= 0.7))
    p99 = r["gateway_p99_at_half_max_1_entity"]["p99_ms"]
    checks.append(("gateway p99 ms at half max, 1 entity", p99, 5.0, p99 <= 5.0))
    speedup = local["wall_s"] / fp["wall_s"]
    checks.append(("materialization, x Feast local", speedup, 10.0, speedup >= 10.0))
    checks.append(("materialization rows/s", fp["rows_per_s"], 100_000, fp["rows_per_s"] >= 1e5))
    rss = fp["peak_rss_mb"]
    checks.append(("materialization peak RSS MB", rss, 1024, rss <= 1024))
    return checks


def table(r: dict[str, Any]) -> str:
    lines = [
        f"{r['date']}, scenarios {', '.join(r['scenarios'])}, {r['seconds_per_cell']:g} s cells"
    ]
    if "serving" in r:
        lines += _scale_table(r)
    if "odfv" in r:
        lines += odfv.table(r["odfv"])
    if "logging" in r:
        lines += featurelog.table(r["logging"])
    lines.append("targets")
    for name, measured, target, met in targets(r):
        lines.append(
            f"  {'met ' if met else 'MISS'} {name:<44} {measured:10.2f}  (target {target:g})"
        )
    return "\n".join(lines)


def _scale_table(r: dict[str, Any]) -> list[str]:
    lines = [f"materialization of {r['rows']:,} rows x 10 features (wall incl. CLI start-up)"]
    local = r["materialize"]["feast local"]
    for name, m in r["materialize"].items():
        lines.append(
            f"  {name:<14} {m['wall_s']:7.1f} s  {m['rows_per_s']:9,.0f} rows/s  {m['peak_rss_mb']:6.0f} MB  x{local['wall_s'] / m['wall_s']:.1f}"
        )
    serving = r["serving"]
    cells = list(serving[FEAST])
    header = "  ".join(f"{c:>17}" for c in cells)
    lines.append(f"serving (wrk, 10 features)  req/s  p50/p99 ms{'':<18}{header}")
    for name, measured in serving.items():
        row = "  ".join(
            f"{m['rps']:7.0f} {m['p50_ms']:4.1f}/{m['p99_ms']:<4.1f}"
            for m in (measured[c] for c in cells)
        )
        lines.append(f"  {name:<54}{row}")
    half = r["gateway_p99_at_half_max_1_entity"]
    lines.append(
        f"gateway raw p50 / p99 at half its max rate, 1 entity (hey, c=8): {half['p50_ms']:.2f} / {half['p99_ms']:.2f} ms"
    )
    return lines


def _scenarios(text: str) -> frozenset[str]:
    chosen = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = chosen - set(SCENARIOS)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"scenarios are a comma-separated subset of {', '.join(SCENARIOS)}; got {text!r}"
        )
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--out", type=Path, default=Path(".featureplane/bench/serving.json"))
    parser.add_argument(
        "--scenarios",
        type=_scenarios,
        default=os.environ.get("FEATUREPLANE_BENCH_SCENARIOS", ",".join(SCENARIOS)),
        help="comma-separated: scale (materialization and serving on the reference dataset), "
        "odfv (on-demand feature views), logging (feature logging on / off); default "
        "$FEATUREPLANE_BENCH_SCENARIOS, else all",
    )
    args = parser.parse_args()
    out: Path = args.out
    if args.scenarios != frozenset(SCENARIOS):  # a partial run never overwrites a whole one
        out = out.with_name(f"{out.stem}-{'-'.join(sorted(args.scenarios))}{out.suffix}")
    results = run(args.rows, args.seconds, args.scenarios)
    publish(results, out, table(results))


if __name__ == "__main__":
    main()
