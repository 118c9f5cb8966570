"""Bad input thrown at the real gateway's ``POST /get-online-features``, table-driven.

Every row must get its documented status with a JSON error body whose message names the
problem; the wire-compatible cases (missing Content-Type, unknown fields, duplicate JSON keys,
unicode ids, repeated entities) must be served exactly as Feast's feature server serves them.
Afterwards the gateway must still be healthy: no worker died or restarted, nothing was logged
as an unhandled error, and an ordinary read still answers.

Decisions, and why:
- No Content-Type is read as JSON: Feast's server (FastAPI) does the same, and clients rely on
  it. A Content-Type that is not JSON (``text/plain``, ``multipart/form-data``, a form) is 415.
- Unknown top-level fields are ignored and a key given twice keeps its last value, as Feast's
  pydantic request model and Python's JSON parser do.
- ``NaN``/``Infinity`` are not JSON (RFC 8259): 400 naming the literal. orjson refuses bodies
  nested over 1024 levels: 400 saying so (never a RecursionError, never a 500).
- JSON integers beyond 64 bits arrive as floats (orjson): an int64 key says so in its 400.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from featureplane.embedded.gateway import GatewayProcess
from tests.support.deployment import Deployment
from tests.support.gateway import bearer

PATH = "/get-online-features"
FRAUD = b'"features":["account_stats:txn_count_24h"]'  # int64 key account_id; 64 KiB body limit
RECSYS = b'"features":["user_profile:favourite_genre"]'  # string key user_id; 1 MiB body limit


def obj(*members: bytes) -> bytes:
    return b"{" + b",".join(members) + b"}"


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@dataclass(frozen=True)
class Bad:
    id: str
    tenant: str
    body: bytes
    status: int
    names: str  # the error message must contain this (the field or problem at fault)
    content_type: str | None = "application/json"
    chunked: bool = False
    quota: str | None = None  # 413: the quota named in the error body


def _chunks(body: bytes, size: int = 8192) -> Iterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


BIG = 70_000  # over fraud's max_body_bytes (65536)
BAD: list[Bad] = [
    # -- size
    Bad("body over max_body_bytes (Content-Length)", "fraud",
        obj(FRAUD, b'"entities":{"account_id":[1]},"pad":"' + b"x" * BIG + b'"'),
        413, "the limit is 65536", quota="max_body_bytes"),
    Bad("body over max_body_bytes (chunked, no Content-Length)", "fraud",
        obj(FRAUD, b'"entities":{"account_id":[1]},"pad":"' + b"x" * BIG + b'"'),
        413, "the limit is 65536", chunked=True, quota="max_body_bytes"),
    Bad("100k nested arrays over max_body_bytes", "fraud", nested(100_000),
        413, "the limit is 65536", quota="max_body_bytes"),
    Bad("100k nested arrays", "recsys", nested(100_000), 400, "1024 levels"),
    Bad("100k nested arrays, chunked", "recsys", nested(100_000), 400, "1024 levels",
        chunked=True),
    Bad("1000-deep array as an entity value", "recsys",
        obj(RECSYS, b'"entities":{"user_id":[' + nested(1000) + b"]}"),
        400, "entity 'user_id': expected string, got array"),
    Bad("1000-deep array as an entity column", "recsys",
        obj(RECSYS, b'"entities":{"user_id":' + nested(1000) + b"}"),
        400, "entity 'user_id': expected string, got array"),
    Bad("1000-deep array as features", "recsys",
        obj(b'"features":' + nested(1000), b'"entities":{"user_id":["u1"]}'),
        422, "features.0"),
    Bad("entity rows over max_entities_per_request", "fraud",
        obj(FRAUD, b'"entities":{"account_id":' + orjson.dumps(list(range(101))) + b"}"),
        413, "101 entity rows; the limit is 100", quota="max_entities_per_request"),
    Bad("features over max_features_per_request", "fraud",
        obj(b'"features":' + orjson.dumps(["account_stats:txn_count_24h"] * 51),
            b'"entities":{"account_id":[1]}'),
        413, "51 features; the limit is 50", quota="max_features_per_request"),
    # -- numbers JSON has not
    Bad("NaN", "fraud", obj(FRAUD, b'"entities":{"account_id":[NaN]}'), 400, "NaN"),
    Bad("Infinity", "fraud", obj(FRAUD, b'"entities":{"account_id":[Infinity]}'),
        400, "Infinity"),
    Bad("-Infinity", "fraud", obj(FRAUD, b'"entities":{"account_id":[-Infinity]}'),
        400, "-Infinity"),
    Bad("1e400 overflows a double", "fraud", obj(FRAUD, b'"entities":{"account_id":[1e400]}'),
        400, "infinity"),
    # -- integer keys
    Bad("int64 + 1", "fraud", obj(FRAUD, b'"entities":{"account_id":[9223372036854775808]}'),
        400, "entity 'account_id': integer 9223372036854775808 is out of range for int64"),
    Bad("2**64 (a float to orjson)", "fraud",
        obj(FRAUD, b'"entities":{"account_id":[18446744073709551616]}'),
        400, "beyond 64 bits"),
    Bad("int64 min - 1", "fraud",
        obj(FRAUD, b'"entities":{"account_id":[-9223372036854775809]}'), 400, "beyond 64 bits"),
    Bad("5000-digit integer", "fraud", obj(FRAUD, b'"entities":{"account_id":[' + b"9" * 5000
        + b"]}"), 400, "infinity"),
    Bad("5000-digit integer as a string", "fraud",
        obj(FRAUD, b'"entities":{"account_id":["' + b"9" * 5000 + b'"]}'),
        400, "entity 'account_id': expected int64, got string '9999"),
    Bad("float for an int key", "fraud", obj(FRAUD, b'"entities":{"account_id":[1.5]}'),
        400, "entity 'account_id': expected int64, got number 1.5"),
    Bad("integral float for an int key", "fraud",
        obj(FRAUD, b'"entities":{"account_id":[1.0]}'), 400, "got number 1.0"),
    Bad("boolean for an int key", "fraud", obj(FRAUD, b'"entities":{"account_id":[true]}'),
        400, "got boolean True"),
    Bad("null for an int key", "fraud", obj(FRAUD, b'"entities":{"account_id":[null]}'),
        400, "got null"),
    Bad("object for an int key", "fraud",
        obj(FRAUD, b'"entities":{"account_id":[{"id":1}]}'), 400, "got object"),
    Bad("number for a string key", "recsys", obj(RECSYS, b'"entities":{"user_id":[4.5]}'),
        400, "entity 'user_id': expected string, got number 4.5"),
    # -- bytes that are not JSON text
    Bad("invalid UTF-8 inside a string", "recsys",
        obj(RECSYS, b'"entities":{"user_id":["\xff\xfe"]}'), 400, "UTF-8"),
    Bad("lone surrogate escape", "recsys", obj(RECSYS, b'"entities":{"user_id":["\\ud800"]}'),
        400, "surrogate"),
    Bad("binary garbage", "recsys", bytes(range(256)), 400, "not valid"),
    Bad("empty body", "recsys", b"", 400, "the body is empty"),
    Bad("whitespace body", "recsys", b" \n\t", 400, "the body is empty"),
    Bad("truncated JSON", "recsys", obj(RECSYS)[:-1], 400, "not valid JSON"),
    # -- JSON, but not a request
    Bad("a JSON array", "recsys", b"[1,2]", 422, "<body>: Input should be a valid dictionary"),
    Bad("a JSON string", "recsys", b'"features"', 422, "<body>"),
    Bad("a JSON number", "recsys", b"42", 422, "<body>"),
    Bad("JSON null", "recsys", b"null", 422, "<body>"),
    Bad("no entities", "recsys", obj(RECSYS), 422, "entities: Field required"),
    Bad("features not a list", "recsys",
        obj(b'"features":"user_profile:favourite_genre"', b'"entities":{"user_id":["u1"]}'),
        422, "features: Input should be a valid list"),
    Bad("entities not an object", "recsys", obj(RECSYS, b'"entities":["u1"]'),
        422, "entities: Input should be a valid dictionary"),
    Bad("full_feature_names null", "recsys",
        obj(RECSYS, b'"entities":{"user_id":["u1"]},"full_feature_names":null'),
        422, "full_feature_names"),
    Bad("no rows", "recsys", obj(RECSYS, b'"entities":{"user_id":[]}'), 400, "no values"),
    Bad("join key columns of different lengths", "pricing",
        obj(b'"features":["product_price:price"]',
            b'"entities":{"store_id":[1,2],"sku":["sku-00001"]}'),
        400, "same number of values"),
    Bad("missing join key", "recsys", obj(RECSYS, b'"entities":{"account_id":[1]}'),
        400, "missing join key values for 'user_id'"),
    Bad("malformed feature reference", "recsys",
        obj(b'"features":["user_profile"]', b'"entities":{"user_id":["u1"]}'),
        400, "'user_profile' is not of the form 'feature_view:feature'"),
    # -- content types
    Bad("text/plain", "recsys", obj(RECSYS, b'"entities":{"user_id":["u1"]}'),
        415, "'text/plain'", content_type="text/plain"),
    Bad("multipart/form-data", "recsys",
        b'--x\r\nContent-Disposition: form-data; name="features"\r\n\r\nuser_profile:'
        b"favourite_genre\r\n--x--\r\n",
        415, "multipart/form-data", content_type="multipart/form-data; boundary=x"),
    Bad("form-urlencoded", "recsys", b"features=user_profile%3Afavourite_genre&user_id=u1",
        415, "application/x-www-form-urlencoded",
        content_type="application/x-www-form-urlencoded"),
]  # fmt: skip


def _post(http: httpx.Client, token: str, bad: Bad) -> httpx.Response:
    headers = bearer(token)
    if bad.content_type is not None:
        headers["Content-Type"] = bad.content_type
    content: bytes | Iterator[bytes] = _chunks(bad.body) if bad.chunked else bad.body
    return http.post(PATH, content=content, headers=headers)


@dataclass
class Watch:
    """The gateway's log from where the module started."""

    gateway: GatewayProcess
    start: int = field(default=0)

    def new_lines(self) -> str:
        with self.gateway.log.open("rb") as log:
            log.seek(self.start)
            return log.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def watch(gateway: GatewayProcess) -> Watch:
    return Watch(gateway, gateway.log.stat().st_size)


@pytest.mark.parametrize("bad", BAD, ids=[b.id for b in BAD])
def test_bad_input_is_refused_by_name(
    watch: Watch, http: httpx.Client, deployment: Deployment, bad: Bad
) -> None:
    response = _post(http, deployment.tokens[bad.tenant], bad)
    assert response.status_code == bad.status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) >= {"code", "message"}
    assert bad.names in error["message"], error
    if bad.quota is not None:
        assert error["quota"] == bad.quota, error
    if bad.status == 422:
        assert error["details"], error


def _answer(
    http: httpx.Client, token: str, body: bytes, content_type: str | None = "application/json"
) -> dict[str, Any]:
    headers = bearer(token)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = http.post(PATH, content=body, headers=headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


UNICODE_IDS = [
    "😀🚀",  # astral-plane emoji (4-byte UTF-8)
    "שלום עולם",  # right-to-left
    "\u202eevil\u202c",  # RTL override control characters
    "a\x00b",  # NUL inside a string
    "e\u0301",  # combining accent: not the same key as "é"
    "é",
    "\ufeffbom",
    "",  # the empty string is a valid string key
]


def test_unicode_ids_are_keys_like_any_other(http: httpx.Client, deployment: Deployment) -> None:
    body = orjson.dumps(
        {"features": ["user_profile:favourite_genre"], "entities": {"user_id": UNICODE_IDS}}
    )
    answer = _answer(http, deployment.tokens["recsys"], body)
    ids, genre = answer["results"]
    assert ids["values"] == UNICODE_IDS  # echoed byte for byte, in order
    assert genre["statuses"] == ["NOT_FOUND"] * len(UNICODE_IDS)


def test_duplicated_ids_are_answered_per_row_in_order(
    http: httpx.Client, deployment: Deployment
) -> None:
    body = orjson.dumps(
        {
            "features": ["account_stats:txn_count_24h", "account_stats:is_flagged"],
            "entities": {"account_id": [2, 1, 2, 10**12, 2, "1"]},  # "1": a decimal string
        }
    )
    answer = _answer(http, deployment.tokens["fraud"], body)
    assert answer["metadata"]["feature_names"] == ["account_id", "txn_count_24h", "is_flagged"]
    ids, count, flagged = answer["results"]
    assert ids["values"] == [2, 1, 2, 10**12, 2, 1]
    for column in (count, flagged):
        rows = list(
            zip(column["values"], column["statuses"], column["event_timestamps"], strict=True)
        )
        assert rows[0] == rows[2] == rows[4]
        assert rows[1] == rows[5]
        assert column["statuses"][3] == "NOT_FOUND"
        assert column["statuses"][0] == "PRESENT"


def test_wire_compatible_leniency(http: httpx.Client, deployment: Deployment) -> None:
    """What Feast's own server accepts, the gateway accepts, with the same answer."""
    token = deployment.tokens["recsys"]
    plain = obj(RECSYS, b'"entities":{"user_id":["u000004"]}')
    expected = _answer(http, token, plain)
    assert expected["results"][1]["statuses"] == ["PRESENT"]
    # No Content-Type at all (FastAPI, hence Feast, reads it as JSON); a JSON one with params.
    assert _answer(http, token, plain, content_type=None) == expected
    assert _answer(http, token, plain, "application/json; charset=utf-8") == expected
    # Unknown fields are ignored, deep ones included (within orjson's 1024 levels).
    extra = obj(RECSYS, b'"entities":{"user_id":["u000004"]},"x":' + nested(1000), b'"y":null')
    assert _answer(http, token, extra) == expected
    # A key given twice keeps its last value.
    twice = obj(RECSYS, b'"entities":{"user_id":["nobody"]}', b'"entities":{"user_id":["u000004"]}')
    assert _answer(http, token, twice) == expected


def test_still_serving_after_the_table(
    watch: Watch, http: httpx.Client, deployment: Deployment
) -> None:
    """Runs after the table (pytest keeps file order): no worker died, nothing unhandled."""
    assert http.get("/health").json() == {"status": "ok"}
    answer = _answer(http, deployment.tokens["fraud"], obj(FRAUD, b'"entities":{"account_id":[1]}'))
    assert answer["results"][1]["statuses"] == ["PRESENT"]
    log = watch.new_lines()
    for sign in ("unhandled error", "internal_error", "Traceback", "died", "Started server"):
        assert sign not in log, f"{sign!r} in the gateway log:\n{log[-3000:]}"


def test_unauthenticated_bad_input_learns_only_401(http: httpx.Client) -> None:
    """Size and shape are judged only for a known tenant: without one, everything is 401."""
    by_id = {b.id: b for b in BAD}
    for name in (
        "body over max_body_bytes (Content-Length)",
        "100k nested arrays",
        "NaN",
        "text/plain",
    ):
        bad = by_id[name]
        headers = {} if bad.content_type is None else {"Content-Type": bad.content_type}
        response = http.post(PATH, content=bad.body, headers=headers)
        assert response.status_code == 401, (bad.id, response.text)
        assert response.json()["error"]["code"] == "unauthenticated"
