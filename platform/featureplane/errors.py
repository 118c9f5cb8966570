"""Exceptions raised by featureplane.

::

    FeatureplaneError                 anything featureplane raises on purpose
    ├── ConfigError                   settings or feature_store.yaml template unusable
    │   └── SuiteError                an expectation suite file is invalid (names file and entry)
    ├── TenantSpecError               a tenant.yaml is invalid (names the file and field)
    ├── RegistryError                 the Feast registry cannot be read or written
    │   ├── ApplyError                `feast apply` for a tenant failed
    │   └── PlanError                 a tenant's plan cannot be computed, or its gate refused it
    ├── MaterializationError          a materialization run failed
    └── GatewayError                  answered to an HTTP client with ``status_code``
        ├── AuthenticationError       401: no or unknown bearer token
        ├── PermissionDeniedError     403: the tenant may not read that object
        │   └── ScopeError            403: the credential lacks the route's scope (read, write)
        ├── QuotaError                a quota refused the request (names it and its limit)
        │   ├── QuotaExceededError    429: rate or concurrency quota spent (Retry-After)
        │   └── PayloadTooLargeError  413: body, entity rows or features over a size quota
        ├── BadRequestError           400: malformed request, unknown feature or entity
        ├── UnsupportedMediaTypeError 415: a body that is not JSON by its Content-Type
        ├── InvalidRequestError       422: JSON, but not the request's shape
        ├── StoreUnavailableError     503: the online store did not answer
        └── TransformError            a tenant's on-demand transformation failed (names the view)
            ├── TransformFailedError  500: it raised, ran out of memory, or its worker exited
            ├── TransformBusyError    503: no worker free in time, or the queue is full
            └── TransformTimeoutError 504: over the tenant's per-call time limit

Every ``GatewayError`` renders as ``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

from pathlib import Path


class FeatureplaneError(Exception):
    """Base of every exception featureplane raises on purpose."""


class ConfigError(FeatureplaneError):
    """Settings or the shared feature_store.yaml template are unusable."""


class SuiteError(ConfigError):
    """An expectation suite file is invalid; ``problems`` lists ``(entry, message)`` pairs."""

    def __init__(self, path: Path, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {entry}: {message}" for entry, message in problems))


class TenantSpecError(FeatureplaneError):
    """A tenant.yaml failed validation; ``problems`` lists ``(field, message)`` pairs."""

    def __init__(self, path: Path, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = [f"{path}: {field}: {message}" for field, message in problems]
        super().__init__("\n".join(lines))


class RegistryError(FeatureplaneError):
    """The Feast registry cannot be read or written."""


class ApplyError(RegistryError):
    """`feast apply` failed for a tenant."""


class PlanError(RegistryError):
    """A tenant's plan could not be computed (its repo does not parse), or its gate refused it."""


class MaterializationError(FeatureplaneError):
    """A materialization run failed."""


class GatewayError(FeatureplaneError):
    """An error the gateway answers with ``status_code`` and a JSON body."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def to_dict(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message}}


class AuthenticationError(GatewayError):
    status_code = 401
    code = "unauthenticated"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="featureplane"'})


class PermissionDeniedError(GatewayError):
    status_code = 403
    code = "forbidden"


class ScopeError(PermissionDeniedError):
    """The caller's credential lacks the scope (``read``, ``write``) the route needs."""

    code = "insufficient_scope"


class BadRequestError(GatewayError):
    status_code = 400
    code = "bad_request"


class StoreUnavailableError(GatewayError):
    status_code = 503
    code = "store_unavailable"


class InvalidRequestError(GatewayError):
    """422: the body is JSON but not a get-online-features request; ``details`` lists why."""

    status_code = 422
    code = "invalid_request"

    def __init__(self, message: str, details: list[dict[str, object]]) -> None:
        super().__init__(message)
        self.details = details

    def to_dict(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class UnsupportedMediaTypeError(GatewayError):
    status_code = 415
    code = "unsupported_media_type"


class QuotaError(GatewayError):
    """A quota refused the request: which one and its limit are in the body."""

    def __init__(
        self, quota: str, limit: float, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, headers=headers)
        self.quota = quota
        self.limit = limit

    def to_dict(self) -> dict[str, object]:
        error = {
            "code": self.code,
            "message": self.message,
            "quota": self.quota,
            "limit": self.limit,
        }
        return {"error": error}


class QuotaExceededError(QuotaError):
    """429: a rate or concurrency quota is spent; retry after ``Retry-After`` seconds."""

    status_code = 429
    code = "quota_exceeded"

    def __init__(self, quota: str, limit: float, retry_after: int, message: str) -> None:
        super().__init__(quota, limit, message, headers={"Retry-After": str(retry_after)})


class PayloadTooLargeError(QuotaError):
    """413: the request is larger than a size quota allows (bytes, entity rows, features);
    retrying the same request cannot help, so no ``Retry-After``."""

    status_code = 413
    code = "payload_too_large"


class TransformError(GatewayError):
    """A tenant's on-demand transformation did not answer; the message names the view."""


class TransformFailedError(TransformError):
    status_code = 500
    code = "transform_failed"


class TransformBusyError(TransformError):
    """503: every worker of the tenant is busy (or restarting) and the wait or queue is full."""

    status_code = 503
    code = "transform_busy"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class TransformTimeoutError(TransformError):
    status_code = 504
    code = "transform_timeout"
