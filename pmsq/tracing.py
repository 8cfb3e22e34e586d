"""OpenTelemetry traces: one trace per write, from the API request through admission, the job's
Celery task and every PMS request it sends.

Off by default. `configure` switches it on when the standard `OTEL_TRACES_EXPORTER` names an
exporter (`console`, or `otlp_proto_http` with the `pmsq[otel]` extra); the other standard
variables apply as the OpenTelemetry SDK reads them (`OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_EXPORTER_OTLP_*`, `OTEL_SDK_DISABLED`).
Off, every hook here is the OpenTelemetry API's no-op.

The spans of a write: `POST /v1/{model}/` (the API request: FastAPI's own server span, which
continues a caller's W3C `traceparent`) > `pmsq.admit` (flow control admitting jobs) >
`pmsq.run_job` (the job's task on a worker: its parent travels in the Celery message's headers
as W3C trace context) > `PMS POST` (each request to the PMS). Child spans are only made under a
current span, so the dispatcher's own ticks and the webhook pump's passes start no traces of
their own. A job a dispatcher admits later (a retry when it is due, a job that waited in its
backlog) joins its write's trace through the context the write was first admitted under,
which the publisher keeps in Redis (`pmsq.workers.publisher.WriteTraces`).

Every span started inside `pmsq.logs.log_context` carries the job id, root job id and
integration id it sets (as `pmsq.job_id`, `pmsq.root_job_id`, `pmsq.integration_id`). Secrets
never reach a span: no headers, no bodies, no URLs (an account's `base_url` or query may carry
credentials) and no exception messages except a job's own recorded error; a PMS request span
holds the method, the host, the port and the status code.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any, ParamSpec, TypeVar

import httpx
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from pmsq.errors import PmsqError
from pmsq.logs import current_ids, span_attributes

logger = logging.getLogger(__name__)

#: The instrumentation scope of every pmsq span.
TRACER_NAME = "pmsq"
#: Entry-point group the OpenTelemetry SDK registers its span exporters under.
EXPORTER_GROUP = "opentelemetry_traces_exporter"

P = ParamSpec("P")
R = TypeVar("R")


def _tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def exporter_names(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The exporters `OTEL_TRACES_EXPORTER` names; none when unset, `none` or the SDK is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    return [n for n in names if n and n != "none"]


def configure(service_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Install the tracer provider of this process from the `OTEL_*` environment; returns
    whether tracing is on. `service_name` is the default of `OTEL_SERVICE_NAME`.

    Exporters are found by name as the SDK's own auto-configuration finds them. An exporter
    that cannot be loaded, or a missing SDK, is logged and leaves tracing off: tracing never
    stops a process from serving."""
    names = exporter_names(environ)
    if not names:
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporters = [_load_exporter(name)() for name in names]
    except Exception as exc:
        logger.warning("tracing stays off: %s (%s)", exc, type(exc).__name__)
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    for exporter in exporters:
        # Batched off the request path; its thread is restarted in forked pool processes.
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    logger.info("tracing on: %s exporting to %s", service_name, ", ".join(names))
    return True


def _load_exporter(name: str) -> Callable[[], Any]:
    found = entry_points(group=EXPORTER_GROUP, name=name)
    if not found:
        raise LookupError(f"no span exporter named '{name}' is installed")
    loaded: Callable[[], Any] = next(iter(found)).load()
    return loaded


def _start(name: str, kind: SpanKind, attributes: Mapping[str, Any] | None = None) -> Any:
    """Start a span as the current one, stamped with the job ids of the log context."""
    return _tracer().start_as_current_span(
        name,
        kind=kind,
        attributes={**span_attributes(current_ids()), **(attributes or {})},
        record_exception=False,
        set_status_on_exception=False,
    )


def _fail(span: Span, exc: BaseException) -> None:
    """Mark the span failed, naming the exception's type only: a message may carry secrets."""
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))


def tracing_on() -> bool:
    """Whether a tracer provider is installed (by `configure`, or by a test)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _in_trace() -> bool:
    return trace.get_current_span().get_span_context().is_valid


@contextmanager
def child_span(name: str, **attributes: Any) -> Iterator[None]:
    """A span of `name` under the current one; nothing when no span is current."""
    if not _in_trace():
        yield
        return
    with _start(name, SpanKind.INTERNAL, attributes) as span:
        try:
            yield
        except Exception as exc:
            _fail(span, exc)
            raise


def traced(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorates a function to run in a `child_span` of `name`."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with child_span(name):
                return function(*args, **kwargs)

        return wrapper

    return decorate


def headers_to_send() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`, `tracestate`), to carry in a
    message; empty outside a trace or with tracing off."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


class _RequestGetter(Getter[Any]):
    """Reads W3C headers from a Celery task request: custom message headers are attributes of
    the request in a worker, and sit in `request.headers` when the task runs eagerly."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = getattr(carrier, key, None)
        if value is None:
            headers = getattr(carrier, "headers", None) or {}
            value = headers.get(key)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Any) -> list[str]:
        return list(getattr(carrier, "headers", None) or {})


_REQUEST_GETTER = _RequestGetter()


def _carries_context(request: Any) -> bool:
    """Whether a task request holds any field the installed propagators read (W3C trace
    context, baggage): then a worker with tracing off still passes the context on."""
    return any(_REQUEST_GETTER.get(request, key) for key in propagate.get_global_textmap().fields)


@contextmanager
def task_span(request: Any, name: str, **ids: str | None) -> Iterator[None]:
    """The span of a task run, continuing the trace whose context its message carries.

    A `PmsqError` (a failed job's `JobFailed`) marks it failed with its message, the job's
    recorded error; any other exception only with its type.

    With tracing off and no trace context in the message there is no span to make and no
    context to pass on, so nothing is done: every job's task runs this, and extracting an
    empty context and starting a no-op span cost more than the rest of the task's wrapper."""
    if not tracing_on() and not _carries_context(request):
        yield
        return
    parent = propagate.extract(request, getter=_REQUEST_GETTER)
    token = otel_context.attach(parent)
    try:
        with _start(name, SpanKind.CONSUMER, span_attributes(ids)) as span:
            try:
                yield
            except PmsqError as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR, exc.message))
                raise
            except BaseException as exc:
                _fail(span, exc)
                raise
    finally:
        otel_context.detach(token)


class TracedTransport(httpx.BaseTransport):
    """Wraps an httpx transport: each request sent under a current span gets a client span
    (`PMS POST`) with its method, host, port and status code, and nothing else."""

    def __init__(self, inner: httpx.BaseTransport, name: str = "PMS") -> None:
        self._inner = inner
        self._name = name

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not _in_trace():
            return self._inner.handle_request(request)
        attributes = {
            "http.request.method": request.method,
            "server.address": request.url.host,
            "server.port": request.url.port or (443 if request.url.scheme == "https" else 80),
        }
        with _start(f"{self._name} {request.method}", SpanKind.CLIENT, attributes) as span:
            try:
                response = self._inner.handle_request(request)
            except Exception as exc:
                _fail(span, exc)
                raise
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_attribute("error.type", str(response.status_code))
                span.set_status(Status(StatusCode.ERROR))
            return response

    def close(self) -> None:
        self._inner.close()
