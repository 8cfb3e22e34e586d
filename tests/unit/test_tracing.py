"""One trace per write: the API request, the admission, each job's Celery task and each PMS
request, in order, with the job ids as attributes and no secret anywhere in them.

The write runs through the real app (FastAPI, SQLite, flow control in fakeredis), the real
`CeleryPublisher` (its `send_task` captured: the message's headers are what a worker receives),
the real task (run eagerly with those headers) and the real runner and HTTP connector, whose
PMS answers from an in-process transport behind `TracedTransport`. Spans go to the SDK's
in-memory exporter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import fakeredis
import httpx
import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy.orm import Session, sessionmaker
from support.outbound import TEST_OUTBOUND_SETTINGS, StubDns
from support.processes import wait_until

from pmsq import tracing
from pmsq.api.app import create_app
from pmsq.api.auth import create_token
from pmsq.crypto import CredentialCipher
from pmsq.outbound import DestinationPolicy
from pmsq.settings import Settings
from pmsq.workers import tasks
from pmsq.workers.connectors import ConnectorFactory
from pmsq.workers.dispatch import Dispatcher
from pmsq.workers.flow.redis_backend import RedisFlowControl
from pmsq.workers.publisher import RUN_JOB_TASK, CeleryPublisher, WriteTraces
from pmsq.workers.runner import JobRunner

API_KEY = "secret-api-key-0123456789"
PMS_URL = "http://127.0.0.1:9/t/acme"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """The process's tracer provider, set once (OpenTelemetry allows no second one)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    assert trace.get_tracer_provider() is provider, "another test set a tracer provider first"
    return exporter


@dataclass
class Message:
    args: list[Any]
    kwargs: dict[str, Any]
    headers: dict[str, str]


@dataclass
class CapturingCelery:
    """Stands in for the Celery app's broker side: keeps each message `send_task` sends."""

    sent: list[Message] = field(default_factory=list)
    #: What the publisher makes its producers of: stand-ins, as `send_task` sends nothing.
    amqp: Any = field(
        default_factory=lambda: SimpleNamespace(Producer=lambda connection, auto_declare: None)
    )

    def connection_for_write(self) -> None:
        return None

    def send_task(self, name: str, **options: Any) -> None:
        assert name == RUN_JOB_TASK
        self.sent.append(Message(options["args"], options["kwargs"], options["headers"]))


class Pms:
    """The PMS: validates, creates applicants and contacts; records every request."""

    def __init__(
        self, fail_with: tuple[int, str] | None = None, fail_first: int | None = None
    ) -> None:
        """`fail_with` answers every request; `fail_first` (a status) only the first."""
        self.requests: list[httpx.Request] = []
        self.fail_with = fail_with
        self.fail_first = fail_first

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail_with is not None:
            status, message = self.fail_with
            return httpx.Response(status, json={"error": message})
        if self.fail_first is not None and len(self.requests) == 1:
            return httpx.Response(self.fail_first, json={"error": "try again"})
        if request.url.path.endswith("/validate"):
            return httpx.Response(200, json={"valid": True})
        body = json.loads(request.content)
        return httpx.Response(201, json={"id": f"r{len(self.requests)}", **body})


@dataclass
class World:
    client: TestClient
    celery: CapturingCelery
    session_factory: sessionmaker[Session]
    settings: Settings
    flow: RedisFlowControl
    redis: fakeredis.FakeRedis
    headers: dict[str, str]

    def integration(self, vendor: str) -> str:
        body = {
            "name": "acme",
            "integration_vendor": vendor,
            "base_url": PMS_URL,
            "credentials": {"api_key": API_KEY},
            "max_request_frequency": 1000,
            "max_job_concurrency": 10,
            "active": True,
        }
        response = self.client.post("/v1/admin/integrations/", json=body, headers=self.headers)
        assert response.status_code == 200, response.text
        return str(response.json()["result"]["id"])

    def dispatcher(self) -> Dispatcher:
        """A worker's dispatcher: publishes through a `CeleryPublisher` like the API's."""
        publisher = CeleryPublisher(self.celery, "q", WriteTraces(self.redis))  # type: ignore[arg-type]
        return Dispatcher(self.session_factory, publisher, self.flow, self.settings)

    def run_worker(self, pms: Pms) -> int:
        """Runs every message sent (and those their jobs send) as a worker would."""
        http = httpx.Client(transport=tracing.TracedTransport(httpx.MockTransport(pms), "PMS"))
        dispatcher = self.dispatcher()
        connectors = ConnectorFactory(CredentialCipher(self.settings.fernet_keys), http)
        runner = JobRunner(self.session_factory, connectors, dispatcher, self.settings)
        tasks.JobTask._context = SimpleNamespace(  # type: ignore[assignment]
            runner=runner, session_factory=self.session_factory
        )
        ran = 0
        try:
            while self.celery.sent:
                message = self.celery.sent.pop(0)
                tasks.run_job.apply(message.args, message.kwargs, headers=message.headers)
                ran += 1
        finally:
            tasks.JobTask._context = None
        return ran


@pytest.fixture
def world(
    session_factory: sessionmaker[Session], exporter: InMemorySpanExporter
) -> Iterator[World]:
    # Retries due at once: a 5xx's retry waits at least the PMS timeout.
    quick = {"retry_base_s": 0.001, "retry_max_s": 0.001, "pms_timeout_s": 0.001}
    settings = Settings(database_url="sqlite://", **TEST_OUTBOUND_SETTINGS, **quick)  # type: ignore[arg-type]
    celery = CapturingCelery()
    client = fakeredis.FakeRedis()
    flow = RedisFlowControl(client)
    app = create_app(
        settings,
        session_factory,
        CeleryPublisher(celery, settings.job_queue, WriteTraces(client)),  # type: ignore[arg-type]
        flow,
        destinations=DestinationPolicy.from_settings(settings, StubDns()),
    )
    with session_factory.begin() as session:
        headers = {"Authorization": f"Bearer {create_token(session, 'acme')}"}
    with TestClient(app) as http:
        exporter.clear()
        yield World(http, celery, session_factory, settings, flow, client, headers)


def by_id(spans: tuple[ReadableSpan, ...]) -> dict[int, ReadableSpan]:
    return {span.context.span_id: span for span in spans}


def ancestry(span: ReadableSpan, spans: dict[int, ReadableSpan]) -> list[str]:
    """Names from the root of the span's trace down to the span."""
    names = [span.name]
    while span.parent is not None:
        span = spans[span.parent.span_id]
        names.insert(0, span.name)
    return names


def texts_of(span: ReadableSpan) -> list[str]:
    """Everything a span carries that could leak: attribute values, events, status."""
    texts = [span.name, str(span.status.description)]
    texts += [str(value) for value in (span.attributes or {}).values()]
    for event in span.events:
        texts += [event.name, *(str(v) for v in (event.attributes or {}).values())]
    return texts


def test_one_write_is_one_trace_from_the_api_through_each_pms_request(
    world: World, exporter: InMemorySpanExporter
) -> None:
    integration_id = world.integration("RENT_MANAGER")
    exporter.clear()
    body = {
        "integration_id": integration_id,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "contacts": [{"email_1": "ada@example.com"}],
    }
    accepted = world.client.post("/v1/applicants/", json=body, headers=world.headers)
    assert accepted.status_code == 200, accepted.text
    root_job_id = accepted.json()["job_id"]
    [message] = world.celery.sent
    assert set(message.headers) >= {"traceparent"}

    pms = Pms()
    assert world.run_worker(pms) == 3  # validate, then create, then the contact
    assert [(r.method, r.url.path) for r in pms.requests] == [
        ("POST", "/t/acme/applicants/validate"),
        ("POST", "/t/acme/applicants"),
        ("POST", "/t/acme/contacts"),
    ]

    spans = exporter.get_finished_spans()
    assert len({span.context.trace_id for span in spans}) == 1, "one trace"
    tree = by_id(spans)
    [api] = [span for span in spans if span.kind is SpanKind.SERVER]
    assert api.name == "POST /v1/{model}/"
    assert api.parent is None
    task_spans = sorted(
        (span for span in spans if span.name == RUN_JOB_TASK), key=lambda s: s.start_time or 0
    )
    pms_spans = sorted(
        (span for span in spans if span.name == "PMS POST"), key=lambda s: s.start_time or 0
    )
    assert len(task_spans) == 3 and len(pms_spans) == 3
    # The root job's run: request > admission > task > PMS request; each child job's task was
    # admitted by its parent's task, so its chain runs through it.
    request = ["POST /v1/{model}/", "fastapi.endpoint"]  # FastAPI's own spans
    job = ["pmsq.admit", RUN_JOB_TASK]
    assert ancestry(pms_spans[0], tree) == [*request, *job, "PMS POST"]
    assert ancestry(pms_spans[1], tree) == [*request, *job, *job, "PMS POST"]
    assert ancestry(pms_spans[2], tree) == [*request, *job, *job, *job, "PMS POST"]
    for pms_span, task_span in zip(pms_spans, task_spans, strict=True):
        assert pms_span.parent is not None and pms_span.parent.span_id == task_span.context.span_id
        assert pms_span.kind is SpanKind.CLIENT
        assert (pms_span.attributes or {})["http.response.status_code"] in (200, 201)
        assert (pms_span.attributes or {})["server.address"] == "127.0.0.1"
    # In order: each span starts after its parent.
    for span in spans:
        if span.parent is not None:
            assert (tree[span.parent.span_id].start_time or 0) <= (span.start_time or 0)

    # The ids, as attributes: on the request's handler, each task and each PMS request.
    [endpoint] = [span for span in spans if span.name == "fastapi.endpoint"]
    attributes = endpoint.attributes or {}
    assert attributes["pmsq.job_id"] == root_job_id
    assert attributes["pmsq.root_job_id"] == root_job_id
    assert attributes["pmsq.integration_id"] == integration_id
    job_ids = []
    for span in [*task_spans, *pms_spans]:
        attributes = span.attributes or {}
        assert attributes["pmsq.root_job_id"] == root_job_id
        assert attributes["pmsq.integration_id"] == integration_id
        job_ids.append(attributes["pmsq.job_id"])
    assert job_ids[0] == job_ids[3] == root_job_id
    assert len(set(job_ids[:3])) == 3 and job_ids[:3] == job_ids[3:]

    # No secret in any span: not the PMS credentials, not the API token, no header, no URL.
    token = world.headers["Authorization"].split()[1]
    for span in spans:
        for text in texts_of(span):
            assert API_KEY not in text and token not in text, (span.name, text)
            assert "/t/acme" not in text, (span.name, text)


def test_a_failed_job_fails_its_task_span_with_the_job_error_only(
    world: World, exporter: InMemorySpanExporter
) -> None:
    integration_id = world.integration("SANDBOX")
    body = {"integration_id": integration_id, "first_name": "Ada"}
    assert world.client.post("/v1/residents/", json=body, headers=world.headers).status_code == 200
    pms = Pms(fail_with=(422, f"last_name is required (key {API_KEY})"))
    exporter.clear()
    assert world.run_worker(pms) == 1

    spans = exporter.get_finished_spans()
    [task] = [span for span in spans if span.name == RUN_JOB_TASK]
    [request] = [span for span in spans if span.name == "PMS POST"]
    assert task.status.status_code is StatusCode.ERROR
    assert "PMS answered 422: last_name is required" in str(task.status.description)
    assert (task.attributes or {})["error.type"] == "JobFailed"
    assert request.status.status_code is StatusCode.ERROR
    assert (request.attributes or {})["http.response.status_code"] == 422
    for span in spans:
        for text in texts_of(span):
            assert API_KEY not in text, (span.name, text)


def test_a_retry_a_dispatcher_admits_later_joins_its_write_trace(
    world: World, exporter: InMemorySpanExporter
) -> None:
    integration_id = world.integration("SANDBOX")
    exporter.clear()
    body = {"integration_id": integration_id, "last_name": "Lovelace"}
    accepted = world.client.post("/v1/residents/", json=body, headers=world.headers)
    job_id = accepted.json()["job_id"]
    pms = Pms(fail_first=503)
    assert world.run_worker(pms) == 1  # the 503: the job waits for its retry
    assert world.celery.sent == []

    # A worker's dispatcher admits the retry when it is due, in no trace of its own.
    dispatcher = world.dispatcher()
    assert not trace.get_current_span().get_span_context().is_valid
    wait_until(lambda: dispatcher.tick() >= 0 and world.celery.sent, 10, 0.01)
    [retry] = world.celery.sent
    assert "traceparent" in retry.headers
    assert world.run_worker(pms) == 1
    assert len(pms.requests) == 2

    spans = exporter.get_finished_spans()
    runs = [span for span in spans if span.name == RUN_JOB_TASK]
    requests = [span for span in spans if span.name == "PMS POST"]
    assert len(runs) == 2 and len(requests) == 2
    assert len({span.context.trace_id for span in spans}) == 1, "the retry is in the write's trace"
    tree = by_id(spans)
    for run in runs:  # each run hangs off the write's admission in the API request
        assert run.parent is not None
        assert tree[run.parent.span_id].name == "pmsq.admit"
        assert (run.attributes or {})["pmsq.job_id"] == job_id
    assert [(r.attributes or {})["http.response.status_code"] for r in requests] == [503, 201]


def test_no_span_is_made_outside_a_trace(exporter: InMemorySpanExporter) -> None:
    """The dispatcher's ticks and the webhook pump start no traces of their own."""
    exporter.clear()
    client = httpx.Client(
        transport=tracing.TracedTransport(httpx.MockTransport(lambda r: httpx.Response(204)))
    )
    assert client.get("http://127.0.0.1:9/x").status_code == 204
    with tracing.child_span("pmsq.admit"):
        pass
    assert exporter.get_finished_spans() == ()


def test_a_worker_with_tracing_off_passes_its_messages_trace_on(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task skips its span when tracing is off, but not when its message carries a trace:
    the trace context still reaches what the task publishes."""
    monkeypatch.setattr(tracing, "tracing_on", lambda: False)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traced = SimpleNamespace(traceparent=f"00-{trace_id}-00f067aa0ba902b7-01", headers=None)
    with tracing.task_span(traced, RUN_JOB_TASK, job_id="j1"):
        passed_on = tracing.headers_to_send()
    assert passed_on["traceparent"].split("-")[1] == trace_id
    with tracing.task_span(SimpleNamespace(headers=None), RUN_JOB_TASK, job_id="j2"):
        assert tracing.headers_to_send() == {}


def test_tracing_is_off_unless_an_exporter_is_named() -> None:
    assert tracing.exporter_names({}) == []
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "console"}) == ["console"]
    disabled = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}
    assert tracing.exporter_names(disabled) == []
    assert tracing.configure("pmsq-test", {}) is False


def test_an_exporter_that_is_not_installed_leaves_tracing_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {"OTEL_TRACES_EXPORTER": "no-such-exporter"}
    assert tracing.configure("pmsq-test", environ) is False
    assert "no span exporter named 'no-such-exporter'" in caplog.text
