"""Webhooks without a network: signatures, backoff, the outbox rows `finish_job` and the sync
runner write (SQLite), and the deliverer against an in-process HTTP transport."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from support.metrics import CountingMetrics
from support.outbound import counting_server

from pmsq.crypto import CredentialCipher
from pmsq.metrics import MetricsRecorder
from pmsq.models.account import Account
from pmsq.models.base import new_id
from pmsq.models.enums import JobStatus, Vendor
from pmsq.models.integration import Integration
from pmsq.models.job import Job
from pmsq.models.sync import SyncExecution, SyncStatus
from pmsq.models.webhook import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from pmsq.outbound import DestinationPolicy, outbound_client, parse_networks
from pmsq.pms.connector import ChildSpec
from pmsq.settings import DEV_SECRET_KEY, Settings
from pmsq.workers.aggregator import finish_job
from pmsq.workers.sync_runner import mark_failed
from pmsq.workers.webhooks import signing
from pmsq.workers.webhooks.deliverer import Claimed, WebhookDeliverer

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SECRET = "whsec-test-0123456789"
CIPHER = CredentialCipher([DEV_SECRET_KEY])


# -- signatures and backoff ----------------------------------------------------------------


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"trigger":"JOB_FAILURE"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signing.signature(SECRET, 1_700_000_000, body) == f"v1={expected}"


def test_verify_refuses_tampering_other_secrets_and_stale_timestamps() -> None:
    body = b'{"a":1}'
    header = signing.signature(SECRET, 1000, body)
    assert signing.verify(SECRET, header, 1000, body)
    assert not signing.verify(SECRET, header, 1000, b'{"a":2}')
    assert not signing.verify(SECRET, header, 1001, body)
    assert not signing.verify("another-secret-xyz", header, 1000, body)
    assert signing.verify(SECRET, header, 1000, body, now_s=1100)
    assert not signing.verify(SECRET, header, 1000, body, now_s=2000)


def test_retry_delays_grow_with_jitter_and_are_capped() -> None:
    settings = Settings(webhook_retry_base_s=2.0, webhook_retry_max_s=60.0)
    deliverer = WebhookDeliverer(
        None,  # type: ignore[arg-type]
        CIPHER,
        httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))),
        settings,
        rng=random.Random(7),
    )
    for attempt in range(1, 12):
        step = min(60.0, 2.0 * 2 ** (attempt - 1))
        delays = {deliverer.retry_delay_s(attempt) for _ in range(20)}
        assert all(step / 2 <= d <= step for d in delays), (attempt, delays)
        assert len(delays) > 1, "jittered"


# -- the outbox, on SQLite -----------------------------------------------------------------


@dataclass
class World:
    session_factory: sessionmaker[Session]
    account_id: str = ""
    integration_id: str = ""
    endpoints: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        with self.session_factory.begin() as session:
            account = Account(name="acme")
            session.add(account)
            session.flush()
            integration = Integration(
                account_id=account.id, name="pms", integration_vendor=Vendor.SANDBOX.value
            )
            session.add(integration)
            session.flush()
            self.account_id, self.integration_id = account.id, integration.id

    def endpoint(
        self, events: list[WebhookEvent], account_id: str | None = None, url: str = "http://x/h"
    ) -> str:
        with self.session_factory.begin() as session:
            endpoint = WebhookEndpoint(
                account_id=account_id or self.account_id,
                url=url,
                events=[e.value for e in events],
                secret_encrypted=CIPHER.encrypt({"secret": SECRET}),
            )
            session.add(endpoint)
            session.flush()
            return endpoint.id

    def other_account(self) -> str:
        with self.session_factory.begin() as session:
            account = Account(name="globex")
            session.add(account)
            session.flush()
            return account.id

    def root(self, action: str = "CREATE") -> str:
        job_id = new_id()
        with self.session_factory.begin() as session:
            session.add(
                Job(
                    id=job_id,
                    root_job_id=job_id,
                    account_id=self.account_id,
                    integration_id=self.integration_id,
                    model="residents",
                    action=action,
                    status=JobStatus.RUNNING.value,
                    attempts=1,
                )
            )
        return job_id

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        *,
        error: str | None = None,
        created: str | None = None,
        children: tuple[ChildSpec, ...] = (),
    ) -> list[str]:
        with self.session_factory.begin() as session:
            job = session.get(Job, job_id)
            assert job is not None
            spawned = finish_job(
                session, job, status, T0, max_jobs_per_tree=100, error=error,
                created_record_id=created, children=children,
            )  # fmt: skip
            ids = [c.id for c in spawned]
            for child in spawned:
                child.status = JobStatus.RUNNING.value
        return ids

    def deliveries(self) -> list[WebhookDelivery]:
        with self.session_factory() as session:
            return list(
                session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.event)).all()
            )


@pytest.fixture
def world(session_factory: sessionmaker[Session]) -> World:
    return World(session_factory)


def test_a_failed_write_emits_job_failure_and_write_operation_failure(world: World) -> None:
    endpoint = world.endpoint(list(WebhookEvent))
    root = world.root()
    world.finish(root, JobStatus.FAILURE, error="last_name is required")
    by_event = {d.event: d for d in world.deliveries()}
    assert set(by_event) == {"JOB_FAILURE", "WRITE_OPERATION_FAILURE"}
    for delivery in by_event.values():
        assert (delivery.endpoint_id, delivery.status, delivery.attempts) == (
            endpoint, DeliveryStatus.PENDING.value, 0,
        )  # fmt: skip
        assert delivery.next_attempt_at == T0
    write = by_event["WRITE_OPERATION_FAILURE"].payload
    assert write["trigger"] == "WRITE_OPERATION_FAILURE"
    assert write["timestamp"] == "2026-03-01T09:00:00Z"
    assert write["data"] == {
        "event": "WRITE_OPERATION_FAILURE",
        "job_id": root,
        "root_job_id": root,
        "integration_id": world.integration_id,
        "job_type": "CREATE",
        "vendor": "SANDBOX",
        "object": "residents",
        "write_status": "FAILURE",
        "errors": ["last_name is required"],
        "created_record_id": None,
    }
    assert write["meta"] == {"object": "residents", "integration_id": world.integration_id}
    job = by_event["JOB_FAILURE"].payload["data"]
    assert (job["job_id"], job["error"], job["attempts"]) == (root, "last_name is required", 1)


def test_success_event_waits_for_the_whole_tree(world: World) -> None:
    world.endpoint([WebhookEvent.WRITE_OPERATION_SUCCESS, WebhookEvent.WRITE_OPERATION_FAILURE])
    root = world.root()
    child_spec = ChildSpec(model="contacts", action="CREATE", target_id=None, payload={})
    (child,) = world.finish(root, JobStatus.SUCCESS, created="r-1", children=(child_spec,))
    assert world.deliveries() == [], "the tree is not complete while its child runs"
    world.finish(child, JobStatus.SUCCESS, created="c-1")
    (delivery,) = world.deliveries()
    assert delivery.event == "WRITE_OPERATION_SUCCESS"
    data = delivery.payload["data"]
    assert (data["write_status"], data["errors"], data["created_record_id"]) == (
        "SUCCESS", [], "r-1",
    )  # fmt: skip


def test_partial_success_is_a_write_operation_failure(world: World) -> None:
    world.endpoint([WebhookEvent.WRITE_OPERATION_FAILURE, WebhookEvent.WRITE_OPERATION_SUCCESS])
    root = world.root()
    specs = tuple(
        ChildSpec(model="contacts", action="CREATE", target_id=None, payload={}) for _ in range(2)
    )
    ok, bad = world.finish(root, JobStatus.SUCCESS, created="r-1", children=specs)
    world.finish(ok, JobStatus.SUCCESS)
    assert world.deliveries() == []
    world.finish(bad, JobStatus.FAILURE, error="bad phone")
    (delivery,) = world.deliveries()
    assert delivery.event == "WRITE_OPERATION_FAILURE"
    assert delivery.payload["data"]["write_status"] == "PARTIAL_SUCCESS"
    assert delivery.payload["data"]["errors"] == ["bad phone"]


def test_only_subscribed_endpoints_of_the_jobs_account_get_rows(world: World) -> None:
    subscribed = world.endpoint([WebhookEvent.JOB_FAILURE])
    world.endpoint([WebhookEvent.SYNC_COMPLETE])
    world.endpoint(list(WebhookEvent), account_id=world.other_account())
    deleted = world.endpoint([WebhookEvent.JOB_FAILURE])
    with world.session_factory.begin() as session:
        row = session.get(WebhookEndpoint, deleted)
        assert row is not None
        row.deleted_at = T0
    world.finish(world.root(), JobStatus.FAILURE, error="x")
    assert [(d.endpoint_id, d.event) for d in world.deliveries()] == [(subscribed, "JOB_FAILURE")]


def test_sync_jobs_get_job_failure_but_no_write_events(world: World) -> None:
    world.endpoint(list(WebhookEvent))
    world.finish(world.root(action="SYNC"), JobStatus.FAILURE, error="PMS down")
    assert [d.event for d in world.deliveries()] == ["JOB_FAILURE"]


def test_a_rolled_back_outcome_leaves_no_event(world: World) -> None:
    world.endpoint(list(WebhookEvent))
    root = world.root()
    with pytest.raises(RuntimeError), world.session_factory.begin() as session:
        job = session.get(Job, root)
        assert job is not None
        finish_job(session, job, JobStatus.FAILURE, T0, max_jobs_per_tree=10, error="x")
        session.flush()
        raise RuntimeError("the transaction fails after the outcome was recorded")
    assert world.deliveries() == []


def test_a_failed_sync_emits_sync_complete_with_counts(world: World) -> None:
    world.endpoint([WebhookEvent.SYNC_COMPLETE])
    with world.session_factory.begin() as session:
        # Not the integration's first sync (that one sends FIRST_SYNC_COMPLETE instead).
        session.add(
            SyncExecution(
                integration_id=world.integration_id,
                type="SCHEDULED",
                status=SyncStatus.SUCCESS.value,
                completed_at=T0 - timedelta(days=1),
            )
        )
        execution = SyncExecution(
            integration_id=world.integration_id,
            type="MANUAL",
            status=SyncStatus.RUNNING.value,
            models=["residents", "units"],
            insert_count=3,
            total_count=5,
        )
        session.add(execution)
        session.flush()
        execution_id = execution.id
    with world.session_factory.begin() as session:
        mark_failed(session, execution_id, "gave up", T0)
    (delivery,) = world.deliveries()
    data = delivery.payload["data"]
    assert delivery.payload["trigger"] == "SYNC_COMPLETE"
    assert data["execution_id"] == execution_id
    assert (data["status"], data["is_sync_finished"], data["vendor"]) == (
        "FAILURE", True, "SANDBOX",
    )  # fmt: skip
    assert data["counts"] == {
        "insert": 3, "update": 0, "delete": 0, "error": 1, "warnings": 0, "total": 5,
    }  # fmt: skip
    assert (data["successful_job_count"], data["failed_job_count"]) == (1, 1)
    assert data["errors"] == ["gave up"]


# -- delivery ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Receiver:
    """An in-process endpoint answering from a script of status codes (then 200)."""

    statuses: list[int] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.statuses.pop(0) if self.statuses else 200, text="nope")


def make_deliverer(
    world: World,
    receiver: Receiver,
    clock: Clock,
    metrics: MetricsRecorder | None = None,
    **settings: object,
) -> WebhookDeliverer:
    config = Settings(webhook_retry_base_s=10, webhook_retry_max_s=100, **settings)  # type: ignore[arg-type]
    http = httpx.Client(transport=httpx.MockTransport(receiver))
    return WebhookDeliverer(
        world.session_factory, CIPHER, http, config, clock, random.Random(1), metrics
    )


def test_delivery_is_signed_and_recorded(world: World) -> None:
    world.endpoint([WebhookEvent.JOB_FAILURE], url="http://receiver.test/hook")
    world.finish(world.root(), JobStatus.FAILURE, error="boom")
    receiver, clock, metrics = Receiver(), Clock(), CountingMetrics()
    assert make_deliverer(world, receiver, clock, metrics).deliver_due() == 1
    assert metrics.counts == {("pmsq_webhook_attempts", (("outcome", "success"),)): 1}
    (request,) = receiver.requests
    (delivery,) = world.deliveries()
    timestamp = int(request.headers["X-Pmsq-Timestamp"])
    assert timestamp == int(T0.timestamp())
    assert request.headers["X-Pmsq-Event"] == "JOB_FAILURE"
    assert request.headers["X-Pmsq-Delivery"] == delivery.id
    assert signing.verify(SECRET, request.headers["X-Pmsq-Signature"], timestamp, request.content)
    assert json.loads(request.content) == delivery.payload
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("SUCCESS", 1, 200)
    assert delivery.delivered_at == T0


def test_failures_are_retried_with_backoff_then_given_up(world: World) -> None:
    world.endpoint([WebhookEvent.JOB_FAILURE])
    world.finish(world.root(), JobStatus.FAILURE, error="boom")
    receiver, clock, metrics = Receiver(statuses=[500, 503, 500]), Clock(), CountingMetrics()
    deliverer = make_deliverer(world, receiver, clock, metrics, webhook_max_attempts=3)
    assert deliverer.deliver_due() == 1
    (delivery,) = world.deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("PENDING", 1, 500)
    assert delivery.next_attempt_at is not None
    assert T0 + timedelta(seconds=5) <= delivery.next_attempt_at <= T0 + timedelta(seconds=10)
    assert deliverer.deliver_due() == 0, "not due before its backoff"
    clock.now = delivery.next_attempt_at
    assert deliverer.deliver_due() == 1
    clock.now += timedelta(seconds=100)
    assert deliverer.deliver_due() == 1
    (delivery,) = world.deliveries()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILURE.value, 3)
    with world.session_factory() as session:
        log = session.scalars(select(WebhookAttempt).order_by(WebhookAttempt.attempt)).all()
        assert [(a.attempt, a.status_code) for a in log] == [(1, 500), (2, 503), (3, 500)]
        assert log[0].error is not None and log[0].error.startswith("HTTP 500")
    assert metrics.total("pmsq_webhook_attempts", outcome="retry") == 2
    assert metrics.total("pmsq_webhook_attempts", outcome="failure") == 1
    clock.now += timedelta(days=1)
    assert deliverer.deliver_due() == 0


def test_connection_errors_are_logged_and_retried(world: World) -> None:
    world.endpoint([WebhookEvent.JOB_FAILURE])
    world.finish(world.root(), JobStatus.FAILURE, error="boom")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    deliverer = WebhookDeliverer(
        world.session_factory, CIPHER, httpx.Client(transport=httpx.MockTransport(refuse)),
        Settings(), Clock(),
    )  # fmt: skip
    assert deliverer.deliver_due() == 1
    (delivery,) = world.deliveries()
    assert delivery.status == "PENDING" and delivery.last_status_code is None
    assert delivery.last_error is not None and "connection refused" in delivery.last_error


def test_a_claimed_delivery_cannot_be_claimed_again_until_its_lease_passes(world: World) -> None:
    world.endpoint([WebhookEvent.JOB_FAILURE])
    world.finish(world.root(), JobStatus.FAILURE, error="boom")
    (delivery,) = world.deliveries()
    clock = Clock()
    one = make_deliverer(world, Receiver(), clock, webhook_claim_s=30)
    two = make_deliverer(world, Receiver(), clock, webhook_claim_s=30)
    first = one.claim(delivery.id)
    assert isinstance(first, Claimed) and first.attempt == 1
    assert SECRET not in repr(first)
    assert two.claim(delivery.id) is None
    clock.now += timedelta(seconds=31)  # the first sender died: its lease lapsed
    second = two.claim(delivery.id)
    assert second is not None and second.attempt == 2
    late = one.send(first)
    assert one.record(first, late) is None, "the stale attempt is logged, not applied"
    assert two.record(second, two.send(second)) == DeliveryStatus.SUCCESS
    with world.session_factory() as session:
        assert len(session.scalars(select(WebhookAttempt)).all()) == 2


def test_deliveries_of_a_deleted_endpoint_fail_without_a_request(world: World) -> None:
    endpoint = world.endpoint([WebhookEvent.JOB_FAILURE])
    world.finish(world.root(), JobStatus.FAILURE, error="boom")
    with world.session_factory.begin() as session:
        row = session.get(WebhookEndpoint, endpoint)
        assert row is not None
        row.deleted_at, row.active = T0, False
    receiver = Receiver()
    assert make_deliverer(world, receiver, Clock()).deliver_due() == 0
    assert receiver.requests == []
    (delivery,) = world.deliveries()
    assert delivery.status == "FAILURE"


# -- the outbound policy -------------------------------------------------------------------


def test_a_refused_destination_fails_the_delivery_at_once_and_sends_nothing(world: World) -> None:
    with counting_server() as server:
        world.endpoint([WebhookEvent.JOB_FAILURE], url=server.url("/hook"))
        world.finish(world.root(), JobStatus.FAILURE, error="boom")
        http = outbound_client(DestinationPolicy(), timeout_s=5)
        deliverer = WebhookDeliverer(world.session_factory, CIPHER, http, Settings(), Clock())
        assert deliverer.deliver_due() == 1
        assert server.connections == []
    (delivery,) = world.deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("FAILURE", 1, None)
    assert delivery.last_error is not None and "127.0.0.1 is loopback" in delivery.last_error
    assert delivery.next_attempt_at is None, "final: not retried"
    with world.session_factory() as session:
        (attempt,) = session.scalars(select(WebhookAttempt)).all()
        assert attempt.status_code is None and attempt.error == delivery.last_error


def test_an_allowed_destination_is_delivered_through_the_outbound_client(world: World) -> None:
    """The control of the test above: the same delivery with loopback allowed arrives."""
    with counting_server() as server:
        world.endpoint([WebhookEvent.JOB_FAILURE], url=server.url("/hook"))
        world.finish(world.root(), JobStatus.FAILURE, error="boom")
        policy = DestinationPolicy(parse_networks("127.0.0.0/8"))
        http = outbound_client(policy, timeout_s=5)
        deliverer = WebhookDeliverer(world.session_factory, CIPHER, http, Settings(), Clock())
        assert deliverer.deliver_due() == 1
        assert server.requests == [("POST", "/hook")]
    (delivery,) = world.deliveries()
    assert (delivery.status, delivery.last_status_code) == ("SUCCESS", 200)


def test_a_webhook_redirect_is_a_failed_attempt_not_a_hop(world: World) -> None:
    with counting_server("127.0.0.2") as target:
        location = {"Location": target.url("/metadata")}
        with counting_server(status=302, headers=location) as origin:
            world.endpoint([WebhookEvent.JOB_FAILURE], url=origin.url("/hook"))
            world.finish(world.root(), JobStatus.FAILURE, error="boom")
            policy = DestinationPolicy(parse_networks("127.0.0.1/32"))
            http = outbound_client(policy, timeout_s=5)
            deliverer = WebhookDeliverer(world.session_factory, CIPHER, http, Settings(), Clock())
            assert deliverer.deliver_due() == 1
            assert origin.requests == [("POST", "/hook")]
        assert target.connections == []
    (delivery,) = world.deliveries()
    assert (delivery.status, delivery.last_status_code) == ("PENDING", 302)
