"""``POST /get-online-features``: Feast's feature-server route, for every tenant.

Order matters for cheap rejection: authenticate (one hash read), refuse a declared body over
``max_body_bytes`` (413), take the rate/concurrency quota (429), and only then read and parse
the body and touch feature data.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from featureplane.errors import BadRequestError, InvalidRequestError, UnsupportedMediaTypeError
from featureplane.gateway.lookup import lookup
from featureplane.gateway.models import (
    ErrorResponse,
    GetOnlineFeaturesRequest,
    GetOnlineFeaturesResponse,
)
from featureplane.gateway.quotas import admitted, too_large
from featureplane.gateway.state import StateDep, TenantDep
from featureplane.observability.metrics import ENTITY_ROWS
from featureplane.observability.tracing import span
from featureplane.tenancy.spec import TenantSpec

router = APIRouter()

_ERRORS = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Unknown feature view, feature or service; missing or mistyped join keys.",
        401: "No, unknown, expired or revoked bearer token.",
        403: "The feature view or service belongs to a tenant that has not shared it with you.",
        413: "Body, entity rows or features over the tenant's size quota.",
        415: "The body is not JSON.",
        422: "JSON, but not a get-online-features request.",
        429: "Rate or concurrency quota spent; see Retry-After.",
        503: "The online store is unavailable.",
    }.items()
}


def _body_too_large(tenant: TenantSpec, size: int) -> Exception:
    limit = tenant.quotas.max_body_bytes
    return too_large(
        tenant.name, "max_body_bytes", limit, f"body of {size} bytes; the limit is {limit}"
    )


def _check_declared_length(request: Request, tenant: TenantSpec) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > tenant.quotas.max_body_bytes:
        raise _body_too_large(tenant, int(declared))


async def _read_body(request: Request, tenant: TenantSpec) -> bytes:
    """The body, refusing to buffer more than the quota even without a Content-Length."""
    limit = tenant.quotas.max_body_bytes
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _body_too_large(tenant, size)
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes, content_type: str | None) -> GetOnlineFeaturesRequest:
    if content_type and "json" not in content_type.split(";", 1)[0].lower():
        raise UnsupportedMediaTypeError(
            f"expected Content-Type application/json, got {content_type!r}"
        )
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"the body is not valid JSON: {exc}") from None
    try:
        return GetOnlineFeaturesRequest.model_validate(payload)
    except ValidationError as exc:
        details: list[dict[str, object]] = [
            {"field": ".".join(str(p) for p in e["loc"]) or "<body>", "problem": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5])
        raise InvalidRequestError(
            f"not a get-online-features request: {summary}", details
        ) from None


@router.post(
    "/get-online-features",
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
async def get_online_features(request: Request, tenant: TenantDep, state: StateDep) -> Response:
    """Feature values for entity rows, in the shape of Feast's feature server."""
    _check_declared_length(request, tenant)
    async with admitted(state.quotas, tenant.name, tenant.quotas):
        body = await _read_body(request, tenant)
        parsed = _parse(body, request.headers.get("content-type"))
        payload = await lookup(state.catalog, state.reader, tenant, parsed)
    ENTITY_ROWS.labels(tenant.name).inc(len(payload["results"][0]["values"]))
    with span("encode"):
        body = orjson.dumps(payload)
    return Response(body, media_type="application/json")
