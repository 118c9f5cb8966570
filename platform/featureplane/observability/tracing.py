"""OpenTelemetry tracing of the request path, exported over OTLP when configured.

Off by default and then free: :func:`span` returns a shared ``nullcontext`` without touching
OpenTelemetry. On when ``FEATUREPLANE_OTLP_ENDPOINT`` (or the standard
``OTEL_EXPORTER_OTLP_ENDPOINT``) is set, or when a test hands :func:`configure_tracing` an
exporter (e.g. ``InMemorySpanExporter``). The server span continues the caller's W3C
``traceparent``; children cover auth, quota, store read and encode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_tracer: trace.Tracer | None = None
_NULL = contextlib.nullcontext()
_PROPAGATOR = TraceContextTextMapPropagator()


def configure_tracing(
    service_name: str,
    endpoint: str | None = None,
    exporter: SpanExporter | None = None,
) -> bool:
    """Turn tracing on if there is somewhere to send spans; returns whether it is on."""
    global _tracer
    if exporter is None and endpoint is None:
        _tracer = None
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        url = endpoint.rstrip("/") + "/v1/traces" if endpoint else None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    _tracer = provider.get_tracer("featureplane.gateway")
    return True


def enabled() -> bool:
    return _tracer is not None


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A child span of the current one, or nothing at all when tracing is off."""
    if _tracer is None:
        return _NULL
    return _tracer.start_as_current_span(name, attributes=attributes)


@contextlib.contextmanager
def server_span(name: str, headers: Mapping[str, str], **attributes: Any) -> Iterator[Any]:
    """The request's root span, continuing the caller's ``traceparent`` if it sent one."""
    if _tracer is None:
        yield None
        return
    parent = _PROPAGATOR.extract(carrier=dict(headers))
    token = otel_context.attach(parent)
    try:
        with _tracer.start_as_current_span(
            name, kind=trace.SpanKind.SERVER, attributes=attributes
        ) as current:
            yield current
    finally:
        otel_context.detach(token)
