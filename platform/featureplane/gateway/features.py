"""``POST /get-online-features``: Feast's feature-server route, for every tenant.

This is the hot path, so it is a plain ASGI app that the gateway app calls before FastAPI's
middleware, routing and dependency injection (which cost more than the rest of a request);
:data:`documented_route` describes it in the OpenAPI schema.

Order matters for cheap rejection: authenticate (locally once a token is known), refuse a
declared body over ``max_body_bytes`` (413), take the rate/concurrency quota (429), and only then
read and parse the body. The feature reads and the token's recheck leave in one pipelined round
trip; the data is answered only if the recheck still vouches for the token, and a 4xx that
carries no read rechecks the token first, so a revoked token never learns more than 401.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, cast

import orjson
from fastapi import Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from featureplane.errors import (
    AuthenticationError,
    BadRequestError,
    GatewayError,
    InvalidRequestError,
    UnsupportedMediaTypeError,
)
from featureplane.gateway.auth import require_scope
from featureplane.gateway.lookup import FeatureRequest, Tally, prepare
from featureplane.gateway.models import (
    ErrorResponse,
    GetOnlineFeaturesRequest,
    GetOnlineFeaturesResponse,
)
from featureplane.gateway.quotas import too_large
from featureplane.gateway.state import GatewayState
from featureplane.observability.metrics import (
    ENTITY_ROWS,
    FEATURE_STATUS,
    QUOTA_INFLIGHT,
    REQUEST_ERRORS,
    STORE_READ_DURATION,
    UNAUTHENTICATED,
    buffered_counter,
    buffered_histogram,
)
from featureplane.observability.tracing import span
from featureplane.redact import redact
from featureplane.tenancy.spec import TenantSpec

PATH = "/get-online-features"
log = logging.getLogger("featureplane.gateway")

_ERRORS = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Unknown feature view, feature or service; missing or mistyped join keys; a body "
        "that is not JSON (empty, invalid UTF-8, NaN/Infinity, nested over 1024 levels).",
        401: "No, unknown, expired or revoked bearer token.",
        403: "The feature view or service belongs to a tenant that has not shared it with you, "
        "or the token may not read (its scopes lack read).",
        405: "Not a POST.",
        413: "Body (declared or streamed), entity rows or features over the tenant's size quota.",
        415: "A Content-Type that is not JSON (none at all is read as JSON, as Feast does).",
        422: "JSON, but not a get-online-features request.",
        429: "Rate or concurrency quota spent; see Retry-After.",
        500: "An on-demand feature view raised, ran out of memory or its worker exited.",
        503: "The online store is unavailable, or every transform worker of the tenant is busy.",
        504: "An on-demand feature view did not answer within the tenant's time limit.",
    }.items()
}


async def _documented() -> GetOnlineFeaturesResponse:
    """Feature values for entity rows, in the shape of Feast's feature server. The tenant is
    the bearer token's: a featureplane tenant token, or a Kubernetes service-account token."""
    raise NotImplementedError  # never routed: FeaturesEndpoint serves this path


documented_route = APIRoute(
    PATH,
    _documented,
    methods=["POST"],
    summary="Get online features",
    operation_id="get_online_features",
    dependencies=[Security(HTTPBearer(description="A tenant's token."))],  # documents auth
    response_model=GetOnlineFeaturesResponse,
    responses=_ERRORS,  # type: ignore[arg-type]
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": GetOnlineFeaturesRequest.model_json_schema()}
            },
        }
    },
)


def _body_too_large(tenant: TenantSpec, size: int) -> Exception:
    limit = tenant.quotas.max_body_bytes
    return too_large(
        tenant.name, "max_body_bytes", limit, f"body of {size} bytes; the limit is {limit}"
    )


async def _read_body(receive: Receive, tenant: TenantSpec) -> bytes:
    """The body, refusing to buffer more than the quota even without a Content-Length."""
    limit = tenant.quotas.max_body_bytes
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequestError("the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _body_too_large(tenant, size)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_PLAIN_FIELDS = {"features", "entities", "full_feature_names"}


def _is_str_list(value: Any) -> bool:
    return type(value) is list and all(type(v) is str for v in value)


# What clients send for non-finite floats (Python's json.dumps writes NaN, Infinity, -Infinity).
_NON_FINITE = re.compile(r"-?(?:NaN|nan|Infinity|infinity|Inf|inf)")


def _json_problem(body: bytes, exc: orjson.JSONDecodeError) -> str:
    """What is wrong with a body orjson refused, in words a client can act on."""
    if not body.strip():
        return "the body is empty: expected a JSON get-online-features request"
    if "UTF-8" in exc.msg or "surrogate" in exc.msg:
        return f"the body is not valid UTF-8 JSON: {exc}"
    if "depth limit" in exc.msg:
        return f"the body is not valid JSON: it nests arrays/objects over 1024 levels deep ({exc})"
    text = body.decode("utf-8", "replace")
    start = exc.pos - 1 if text[exc.pos - 1 : exc.pos] == "-" else exc.pos  # orjson: after "-"
    literal = _NON_FINITE.match(text, max(start, 0))
    if literal is not None:
        return (
            f"the body is not valid JSON: {literal[0]} (at character {literal.start()}) is not a "
            "JSON number; JSON has no NaN or Infinity, send null instead"
        )
    return f"the body is not valid JSON: {exc}"


def _parse(body: bytes, content_type: str | None) -> FeatureRequest:
    if content_type and "json" not in content_type.split(";", 1)[0].lower():
        raise UnsupportedMediaTypeError(
            f"expected Content-Type application/json, got {content_type!r}"
        )
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(_json_problem(body, exc)) from None
    # The usual request needs no validation beyond these checks; anything else goes through
    # the model, which names the problem.
    if type(payload) is dict and payload.keys() <= _PLAIN_FIELDS:
        entities, features = payload.get("entities"), payload.get("features", [])
        full_names = payload.get("full_feature_names", False)
        if (
            type(entities) is dict
            and _is_str_list(features)
            and type(full_names) is bool
            and all(type(k) is str and type(v) is list for k, v in entities.items())
        ):
            return FeatureRequest(entities, features, full_feature_names=full_names)
    try:
        model = GetOnlineFeaturesRequest.model_validate(payload)
    except ValidationError as exc:
        details: list[dict[str, object]] = [
            {"field": ".".join(str(p) for p in e["loc"]) or "<body>", "problem": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5])
        raise InvalidRequestError(
            f"not a get-online-features request: {summary}", details
        ) from None
    return FeatureRequest(
        model.entities,
        model.features,
        model.feature_service,
        model.project,
        model.full_feature_names,
    )


def _headers(scope: Scope) -> tuple[str | None, str | None, str | None]:
    """Authorization, Content-Length and Content-Type."""
    authorization = length = content_type = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"content-length":
            length = value.decode("latin-1")
        elif name == b"content-type":
            content_type = value.decode("latin-1")
    return authorization, length, content_type


def error_body(exc: GatewayError) -> bytes:
    """``exc`` as its JSON body. Messages quote what the client sent (a feature ref, a JSON
    fragment): a bearer token or password pasted there is masked, so it never comes back."""
    body = exc.to_dict()
    error = cast(dict[str, object], body["error"])
    error["message"] = redact(exc.message)
    return orjson.dumps(body)


class FeaturesEndpoint:
    """The ASGI app of ``POST /get-online-features``."""

    def __init__(self, state: Any) -> None:
        self._app_state = state  # the app's State; ``gateway`` appears when the lifespan runs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = documented_route  # the route label of metrics and logs
        extra: dict[str, str] = {}
        try:
            if scope["method"] != "POST":
                extra = {"Allow": "POST"}
                body, status = b'{"error":{"code":"method_not_allowed","message":"use POST"}}', 405
            else:
                body, status = await self._serve(scope, receive, self._app_state.gateway), 200
        except GatewayError as exc:
            tenant = scope["state"].get("tenant", UNAUTHENTICATED)
            REQUEST_ERRORS.labels(tenant, PATH, exc.code).inc()
            body, status, extra = error_body(exc), exc.status_code, exc.headers
        except Exception:
            log.exception("unhandled error on %s", PATH)
            body = b'{"error":{"code":"internal_error","message":"internal error; see the gateway log"}}'  # noqa: E501
            status = 500
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _serve(self, scope: Scope, receive: Receive, state: GatewayState) -> bytes:
        authorization, length, content_type = _headers(scope)
        with span("auth"):
            identity = await state.authenticator.authenticate(authorization)
        tenant = state.plans.tenant(identity.tenant)
        if tenant is None:
            raise AuthenticationError("the token's tenant no longer exists")
        scope["state"]["tenant"] = tenant.name  # the telemetry middleware labels with it
        if "read" not in identity.scopes:
            await state.authenticator.recheck(identity)  # a revoked token learns only 401
            require_scope(identity, "read")
        if length is not None and length.isdigit() and int(length) > tenant.quotas.max_body_bytes:
            await state.authenticator.recheck(identity)  # as for every 4xx carrying no read
            raise _body_too_large(tenant, int(length))
        with span("quota"):
            lease = await state.quotas.admit(tenant.name, tenant.quotas)
        inflight = buffered_counter(QUOTA_INFLIGHT, tenant.name)
        inflight.inc()
        try:
            try:
                body = await _read_body(receive, tenant)
                request = _parse(body, content_type)
                prepared = prepare(state.plans, tenant, request)
            except GatewayError:
                await state.authenticator.recheck(identity)  # a revoked token learns only 401
                raise
            commands = prepared.commands
            if identity.recheck is not None:
                commands = [identity.recheck, *commands]
            replies: list[list[bytes | None]] = []
            if commands:  # none when only request data feeds on-demand views
                with span("store.read", commands=len(commands)):
                    started = time.perf_counter()
                    replies = await state.reader.read(commands)
                    elapsed = time.perf_counter() - started
                    buffered_histogram(STORE_READ_DURATION, tenant.name).observe(elapsed)
            if identity.recheck is not None:
                state.authenticator.confirm(identity, replies[0])
                replies = replies[1:]
            computed = []
            for computation in prepared.computations(replies) if prepared.transforms else ():
                with span("transform", project=computation.project):
                    computed.append((computation, await state.compute(computation)))
            tally: Tally = []
            payload = prepared.answer(replies, computed, tally)
        finally:
            inflight.dec()
            await state.quotas.release(lease)
        buffered_counter(ENTITY_ROWS, tenant.name).inc(prepared.rows)
        for view, status, rows in tally:
            buffered_counter(FEATURE_STATUS, tenant.name, view, status).inc(rows)
        with span("encode"):
            encoded = orjson.dumps(payload)
        if request.feature_service:  # the body and answer bytes, kept if the service logs
            rid = scope["state"].get("request_id")
            state.feature_log.offer(
                state.plans, prepared, request.feature_service, body, encoded, rid
            )
        return encoded
