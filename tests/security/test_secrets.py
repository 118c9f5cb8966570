"""Secrets stay secret: bearer tokens never reach logs, metrics or error bodies; URL passwords
never reach reprs or messages; and outside development nothing secret has a default.

Traffic goes to the real gateway (`featureplane serve`, 2 workers) with valid, wrong, revoked and
misplaced tokens (wrong header, query string, body, request id, Content-Type); then the gateway's
captured output (uvicorn's stderr and the JSON access log), a /metrics scrape and every answer
are searched for each token and for its secret part. The registry server's log gets the same
search after RPCs with good, bad and revoked tokens.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from featureplane.embedded.gateway import GatewayProcess
from featureplane.embedded.redis import free_port
from featureplane.errors import ConfigError
from featureplane.observability.metrics import FLUSH_SECONDS
from featureplane.redact import redact, redact_url
from featureplane.settings import Settings
from featureplane.tenancy.credentials import CredentialStore
from tests.support.cli import run_cli
from tests.support.deployment import Deployment
from tests.support.paths import ROOT
from tests.support.registry_server import Platform, remote_registry

FEATURES = "/get-online-features"
REDIS_PASSWORD = "redis-pw-Zq8x41"
PG_PASSWORD = "pg-pw-Kd93nA"
PEPPER = "pepper-value-Mn27vQ-0123456789"


@dataclass(frozen=True)
class Secret:
    label: str
    token: str

    @property
    def secret(self) -> str:
        return self.token.split("_", 2)[2]


def secret_parts(token: str) -> list[str]:
    """The token and its secret (whatever comes after ``fpt_<id>_``)."""
    parts = [token]
    pieces = token.split("_", 2)
    if len(pieces) == 3 and len(pieces[2]) >= 8:
        parts.append(pieces[2])
    return parts


def assert_no_secret(text: str, tokens: list[str], where: str) -> None:
    for token in tokens:
        for part in secret_parts(token):
            assert part not in text, f"a token{' secret' if part != token else ''} in {where}"


# -- the gateway -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokens(deployment: Deployment) -> dict[str, str]:
    """valid (fraud), wrong (the valid id with another secret), revoked (fraud, revoked)."""
    settings = deployment.settings
    with redis.Redis.from_url(settings.require_redis_url()) as client:
        store = CredentialStore(client, settings.pepper)
        valid = store.issue("fraud")
        revoked = store.issue("fraud")
        store.revoke(revoked.id)
    wrong = f"fpt_{valid.id}_{'Wq3' * 15}"
    return {"valid": valid.token, "wrong": wrong, "revoked": revoked.token}


def _traffic(http: httpx.Client, tokens: dict[str, str]) -> Iterator[httpx.Response]:
    """Requests that put each token everywhere a client might put it."""
    good = {"features": ["account_stats:txn_count_24h"], "entities": {"account_id": [1]}}
    json_type = {"Content-Type": "application/json"}
    valid = tokens["valid"]
    for token in tokens.values():
        as_bearer = {"Authorization": f"Bearer {token}"} | json_type
        basic = base64.b64encode(f"fraud:{token}".encode()).decode()
        # Authorization, right and wrong.
        yield http.post(FEATURES, json=good, headers=as_bearer)
        for header in (f"Token {token}", token, f"Basic {basic}", f"Bearer {token} {token}"):
            yield http.post(FEATURES, json=good, headers={"Authorization": header})
        # Wrong headers, with and without a valid Authorization.
        for name in ("X-Api-Key", "Proxy-Authorization", "X-Auth-Token", "Cookie"):
            value = f"token={token}" if name == "Cookie" else token
            yield http.post(FEATURES, json=good, headers={name: value} | json_type)
            yield http.post(FEATURES, json=good, headers={name: value} | _bearer(valid))
        yield http.post(FEATURES, json=good, headers={"X-Request-ID": token} | _bearer(valid))
        yield http.post(FEATURES, json=good, headers={"X-Request-ID": token})
        # The query string.
        params = {"token": token, "access_token": token, "api_key": token}
        yield http.post(FEATURES, json=good, params=params)
        yield http.post(FEATURES, json=good, params=params, headers=_bearer(valid))
        for path in ("/metrics", "/ready", "/health", "/docs", f"/{token}", f"/x?token={token}"):
            yield http.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
        # The body: as a field, a feature ref, a service, a project, a join key, a key value,
        # raw in broken JSON; with a valid token (errors quote what was sent) and without.
        for body in (
            good | {"token": token},
            {"features": [token], "entities": {"account_id": [1]}},
            {"features": [f"{token}:x"], "entities": {"account_id": [1]}},
            {"features": [f"account_stats:{token}"], "entities": {"account_id": [1]}},
            {"feature_service": token, "entities": {"account_id": [1]}},
            good | {"project": token},
            {"features": good["features"], "entities": {token: [1]}},
            {"features": good["features"], "entities": {"account_id": [token]}},
            {"features": good["features"], "entities": {"account_id": 1}, "x": token},
        ):
            yield http.post(FEATURES, json=body, headers=_bearer(valid))
            yield http.post(FEATURES, json=body, headers=as_bearer)
        broken = b'{"features": [%b], "entities": {"account_id": [1]}}' % token.encode()
        yield http.post(FEATURES, content=broken, headers=_bearer(valid))
        yield http.post(FEATURES, content=token.encode(), headers=_bearer(valid))
        yield http.post(
            FEATURES,
            content=orjson.dumps(good),
            headers={"Authorization": f"Bearer {valid}", "Content-Type": f"text/plain; {token}"},
        )
        yield http.put(FEATURES, json=good, headers=as_bearer)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def test_tokens_never_reach_logs_metrics_or_answers(
    deployment: Deployment, gateway: GatewayProcess, tokens: dict[str, str]
) -> None:
    everything = [*tokens.values(), *deployment.tokens.values()]
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=gateway.base, timeout=10) as http:
        for resp in _traffic(http, tokens):
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
            where = (
                f"the answer to {resp.request.method} {resp.request.url.path} ({resp.status_code})"
            )
            assert_no_secret(resp.text, everything, where)
            assert_no_secret(str(resp.headers), everything, f"the headers of {where}")
        time.sleep(FLUSH_SECONDS * 5)  # every worker flushes its buffered metrics
        scrape = http.get("/metrics").text
    # The traffic covered what it should: data, 401, 400/422, 404, 405 and 415 answers.
    assert {200, 401, 400, 404, 405, 415} <= set(statuses), statuses
    assert_no_secret(scrape, everything, "/metrics")
    log = gateway.log.read_text(errors="replace")
    assert '"status": 401' in log or '"status":401' in log  # the access log saw the traffic
    assert_no_secret(log, everything, f"the gateway log {gateway.log}")
    assert deployment.settings.pepper.decode() not in log


def test_error_bodies_quote_requests_with_tokens_masked(
    gateway: GatewayProcess, tokens: dict[str, str]
) -> None:
    """A token pasted where a feature ref goes is masked, the rest of the message kept."""
    valid = tokens["valid"]
    body = {"features": [tokens["wrong"]], "entities": {"account_id": [1]}}
    resp = httpx.post(f"{gateway.base}{FEATURES}", json=body, headers=_bearer(valid), timeout=10)
    assert resp.status_code == 400
    message = resp.json()["error"]["message"]
    assert "feature_view:feature" in message
    assert "fpt_" in message
    assert "***" in message
    assert_no_secret(message, [tokens["wrong"]], "the message")


def test_request_ids_that_are_tokens_are_replaced(
    gateway: GatewayProcess, tokens: dict[str, str]
) -> None:
    headers = {"X-Request-ID": tokens["valid"]}
    resp = httpx.get(f"{gateway.base}/health", headers=headers, timeout=10)
    assert resp.headers["X-Request-ID"] != tokens["valid"]
    resp = httpx.get(f"{gateway.base}/health", headers={"X-Request-ID": "abc-123"}, timeout=10)
    assert resp.headers["X-Request-ID"] == "abc-123"


# -- the registry server ---------------------------------------------------------------------


def test_registry_server_logs_no_tokens(platform: Platform) -> None:
    from feast import Entity, ValueType
    from feast.errors import FeastPermissionError

    valid = platform.tokens["fraud"]
    revoked = platform.credentials.issue("fraud")
    platform.credentials.revoke(revoked.id)
    wrong = f"fpt_{valid.split('_')[1]}_{'Wq3' * 15}"
    assert remote_registry(platform, valid).list_projects() is not None
    planted = Entity(name="planted", join_keys=["planted_id"], value_type=ValueType.INT64)
    with pytest.raises(FeastPermissionError):  # a denial, which Feast logs
        remote_registry(platform, valid).apply_entity(planted, "recsys", commit=True)
    import grpc  # type: ignore[import-untyped]

    for token in (revoked.token, wrong, "not-a-token-" + "Wq3" * 15):
        with pytest.raises(grpc.RpcError):
            remote_registry(platform, token).list_projects()
    logs = sorted(platform.settings.data_path.glob("registry-server-*.log"))
    assert logs, f"no registry server log under {platform.settings.data_path}"
    text = "".join(p.read_text(errors="replace") for p in logs)
    assert text  # the server wrote something (start-up, the denial)
    assert_no_secret(text, [valid, revoked.token, wrong, *platform.tokens.values()], "its log")


# -- settings -------------------------------------------------------------------------------------


def _cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATUREPLANE_")}
    return (
        env
        | {
            "FEATUREPLANE_DATA_DIR": str(tmp_path),
            "FEATUREPLANE_TENANTS_DIR": str(ROOT / "tenants"),
            "FEATUREPLANE_FEATURE_REPO_DIR": str(ROOT / "feature_repo"),
            "FEATUREPLANE_REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0",
            "FEATUREPLANE_REGISTRY": f"postgresql://fp:{PG_PASSWORD}@127.0.0.1:{free_port()}/registry",
            "FEATUREPLANE_GATEWAY_PORT": str(free_port()),
        }
        | extra
    )


@pytest.mark.parametrize(
    ("pepper", "expected"),
    [
        (None, "FEATUREPLANE_TOKEN_PEPPER must be set"),
        ("", "FEATUREPLANE_TOKEN_PEPPER must be"),  # an empty variable counts as unset
        ("   ", "at least 16 characters"),
        ("short", "at least 16 characters"),
        ("featureplane-development-pepper-not-a-secret", "not the public development value"),
    ],
)
def test_production_refuses_to_start_without_a_real_pepper(
    tmp_path: Path, pepper: str | None, expected: str
) -> None:
    extra = {"FEATUREPLANE_ENVIRONMENT": "production"}
    if pepper is not None:
        extra["FEATUREPLANE_TOKEN_PEPPER"] = pepper
    env = _cli_env(tmp_path, **extra)
    commands = [["serve"], ["registry-server"], ["tenants", "issue-token", "fraud"]]
    for args in commands if pepper is None else commands[:1]:
        done = run_cli(*args, env=env, timeout=60)
        output = done.stdout + done.stderr
        assert done.returncode == 1, (args, output)
        assert "error: configuration" in output, output
        assert expected in output, output
        assert "Traceback" not in output, output
        for secret in (REDIS_PASSWORD, PG_PASSWORD):
            assert secret not in output
        if pepper and len(pepper.strip()) > 3:
            assert pepper not in output.replace(expected, "")


def test_development_and_a_real_pepper_start() -> None:
    assert Settings(environment="development").pepper  # the public development default
    real = Settings(environment="production", token_pepper=PEPPER)  # type: ignore[arg-type]
    assert real.pepper == PEPPER.encode()


def test_settings_repr_and_errors_hide_secrets() -> None:
    settings = Settings(
        environment="production",
        token_pepper=PEPPER,  # type: ignore[arg-type]
        redis_url=f"redis://default:{REDIS_PASSWORD}@redis:6379/0",
        registry=f"postgresql://fp:{PG_PASSWORD}@db:5432/registry",
    )
    for text in (repr(settings), str(settings), f"{settings!r}"):
        for secret in (REDIS_PASSWORD, PG_PASSWORD, PEPPER):
            assert secret not in text, text
        assert "redis://default:***@redis:6379/0" in text
        assert "postgresql://fp:***@db:5432/registry" in text
    # The values themselves are intact for use.
    assert settings.require_redis_url().endswith(f"{REDIS_PASSWORD}@redis:6379/0")
    assert PG_PASSWORD in settings.registry_url
    # A validation error about another field does not quote the URLs.
    with pytest.raises(ValueError, match="gateway_port") as caught:
        Settings(
            redis_url=f"redis://:{REDIS_PASSWORD}@redis:6379/0",
            gateway_port="not-a-port",  # type: ignore[arg-type]
        )
    assert REDIS_PASSWORD not in str(caught.value)


def test_connection_errors_name_no_password() -> None:
    from featureplane.online.connection import SharedConnection

    for url in (
        f"http://:{REDIS_PASSWORD}@redis:6379/0",
        f"redis://:{REDIS_PASSWORD}@redis:6379/not-a-db",
    ):
        with pytest.raises(ConfigError) as caught:
            SharedConnection.from_url(url)
        assert REDIS_PASSWORD not in str(caught.value)


def test_cli_errors_mask_urls_with_passwords(tmp_path: Path) -> None:
    """`cost report` against an unreachable Redis names it, password masked."""
    env = _cli_env(tmp_path)
    done = run_cli("cost", "report", "--gateway", "http://127.0.0.1:9", env=env, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert REDIS_PASSWORD not in output
    assert "redis://:***@127.0.0.1" in output


def test_gateway_start_failure_logs_no_password(tmp_path: Path) -> None:
    """`serve` with an unreachable PostgreSQL registry and Redis, both with passwords: it
    fails to start and its output names neither password."""
    env = _cli_env(tmp_path, FEATUREPLANE_REGISTRY_CONNECT_TIMEOUT_SECONDS="2")
    try:
        done = run_cli("serve", "--workers", "1", env=env, timeout=90)
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:  # still retrying: what it logged so far counts
        output = (exc.stdout or b"").decode() + (exc.stderr or b"").decode()
    assert "unreachable" in output
    for secret in (REDIS_PASSWORD, PG_PASSWORD):
        assert secret not in output, output[-3000:]


def test_gateway_without_its_store_answers_and_logs_no_password(tmp_path: Path) -> None:
    """The gateway up (SQLite registry) while its Redis, which has a password, is down: /ready,
    /metrics and the feature route answer 503s, and neither they nor the log name the password."""
    env = _cli_env(tmp_path)
    env.pop("FEATUREPLANE_REGISTRY")
    port = env["FEATUREPLANE_GATEWAY_PORT"]
    token = f"fpt_0123456789ab_{'Wq3' * 15}"
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "featureplane.cli", "serve", "--workers", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    answers: list[httpx.Response] = []
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        body = {"features": ["account_stats:txn_count_24h"], "entities": {"account_id": [1]}}
        answers.append(httpx.get(f"{base}/ready", timeout=10))
        answers.append(httpx.get(f"{base}/metrics", timeout=10))
        answers.append(httpx.post(f"{base}{FEATURES}", json=body, headers=_bearer(token)))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert [a.status_code for a in answers] == [503, 200, 503]
    for text in [*(a.text for a in answers), log.read_text(errors="replace")]:
        assert REDIS_PASSWORD not in text
        assert_no_secret(text, [token], "the answers and log")


@pytest.mark.parametrize(
    ("text", "hidden", "kept"),
    [
        ("redis://:pw1234@h:6379/0", "pw1234", "redis://:***@h:6379/0"),
        ("rediss://default:p@ss/w0rd@h/1", "ss/w0rd", "rediss://default:***@h/1"),
        ("postgresql+psycopg://u:pw1234@db/x", "pw1234", "postgresql+psycopg://u:***@db/x"),
        ("h:6379,db=0,password=pw1234,ssl=true", "pw1234", "password=***,ssl=true"),
        (f"ref 'fpt_0123456789ab_{'s' * 43}' bad", "s" * 43, "ref 'fpt_0123456789ab_***' bad"),
        ("no secret: http://host/x a@b", "", "no secret: http://host/x a@b"),
    ],
)
def test_redact(text: str, hidden: str, kept: str) -> None:
    assert kept in redact(text)
    if hidden:
        assert hidden not in redact(text)
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
