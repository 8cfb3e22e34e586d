"""One write, one trace, across real processes: the API and a Celery worker export their spans
over OTLP/HTTP (the `pmsq[otel]` exporter, switched on by the standard `OTEL_*` variables) to a
collector this test runs on loopback, and the spans they send form one trace: the API request,
the admission, the job's task on the worker (its parent carried in the Celery message's
headers) and the PMS request, with the job ids as attributes and no credential anywhere.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from support.processes import wait_until
from support.services import RedisServer, free_port
from support.stack import Stack

from pmsq.workers.publisher import RUN_JOB_TASK

#: Redis database of this module's broker (the other e2e modules use 5).
TRACING_REDIS_DB = 6


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


class Collector:
    """An OTLP/HTTP trace receiver: keeps every span posted to /v1/traces."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.receive(body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    spans.append(
                        ReceivedSpan(
                            resource.get("service.name", ""),
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            attributes,
                        )
                    )
        with self._lock:
            self.bodies.append(body)
            self.spans.extend(spans)

    def received(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    collector = Collector()
    collector.thread.start()
    try:
        yield collector
    finally:
        collector.server.shutdown()
        collector.server.server_close()


@pytest.fixture(scope="module")
def traced_stack(
    database_url: str, redis_server: RedisServer, collector: Collector
) -> Iterator[Stack]:
    url = redis_server.url.rsplit("/", 1)[0] + f"/{TRACING_REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    env = {
        "OTEL_TRACES_EXPORTER": "otlp_proto_http",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    stack = Stack(database_url, url, env)
    try:
        yield stack.start()
    finally:
        stack.stop()


def test_one_write_is_one_trace_across_the_api_and_a_worker(
    traced_stack: Stack, collector: Collector
) -> None:
    stack = traced_stack
    headers = stack.token("acme")
    tenant = f"tr{uuid.uuid4().hex[:8]}"
    integration_id = stack.integration(headers, "SANDBOX", tenant)
    accepted = stack.write(
        headers, "residents", {"integration_id": integration_id, "last_name": "Traced"}
    )
    assert accepted.status_code == 200, accepted.text
    job_id = accepted.json()["job_id"]
    assert stack.wait_final(headers, job_id)["write_status"] == "SUCCESS"

    def write_spans() -> list[ReceivedSpan] | None:
        spans = collector.received()
        traces = {s.trace_id for s in spans if s.attributes.get("pmsq.job_id") == job_id}
        if len(traces) != 1:
            return None
        [trace_id] = traces
        in_trace = [s for s in spans if s.trace_id == trace_id]
        names = {s.name for s in in_trace}
        wanted = {"POST /v1/{model}/", "pmsq.admit", RUN_JOB_TASK, "PMS POST"}
        return in_trace if wanted <= names else None

    spans = wait_until(
        write_spans, 30, 0.2, message="the write's spans reach the collector", details=stack.logs
    )
    by_id = {s.span_id: s for s in spans}

    def chain(span: ReceivedSpan) -> list[tuple[str, str]]:
        names = [(span.service, span.name)]
        while span.parent_id and span.parent_id in by_id:
            span = by_id[span.parent_id]
            names.insert(0, (span.service, span.name))
        return names

    [pms_request] = [s for s in spans if s.name == "PMS POST"]
    assert chain(pms_request) == [
        ("pmsq-api", "POST /v1/{model}/"),
        ("pmsq-api", "fastapi.endpoint"),
        ("pmsq-api", "pmsq.admit"),
        ("pmsq-worker", RUN_JOB_TASK),
        ("pmsq-worker", "PMS POST"),
    ]
    [task] = [s for s in spans if s.name == RUN_JOB_TASK]
    for span in (task, pms_request):
        assert span.attributes["pmsq.job_id"] == job_id
        assert span.attributes["pmsq.root_job_id"] == job_id
        assert span.attributes["pmsq.integration_id"] == integration_id
    assert pms_request.attributes["http.response.status_code"] == 201
    assert pms_request.attributes["server.address"] == "127.0.0.1"

    # No credential was exported: not the PMS key, not the API token, not the PMS URL.
    token = headers["Authorization"].split()[1]
    for body in collector.bodies:
        assert f"key-of-{tenant}".encode() not in body
        assert token.encode() not in body
        assert f"/t/{tenant}".encode() not in body
