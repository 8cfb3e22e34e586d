"""In-process API for contract tests: the real app on a real database, a recording publisher."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import fakeredis
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from pmsq.api.app import create_app
from pmsq.api.auth import create_token
from pmsq.api.services.admission import Submitter
from pmsq.models.base import utcnow
from pmsq.outbound import DestinationPolicy, Resolver
from pmsq.settings import Settings
from pmsq.workers.dispatch import Dispatcher
from pmsq.workers.flow.redis_backend import RedisFlowControl
from pmsq.workers.publisher import AdmittedJob
from support.outbound import TEST_OUTBOUND_SETTINGS, StubDns


@dataclass
class RecordingPublisher:
    """Stands in for the broker: remembers what was published."""

    published: list[AdmittedJob] = field(default_factory=list)

    def publish(self, job: AdmittedJob) -> None:
        self.published.append(job)


@dataclass
class ApiHarness:
    client: TestClient
    publisher: RecordingPublisher
    session_factory: sessionmaker[Session]
    flow: RedisFlowControl

    def token(self, account: str) -> dict[str, str]:
        with self.session_factory.begin() as session:
            return {"Authorization": f"Bearer {create_token(session, account)}"}


@contextmanager
def api_harness(
    database_url: str,
    session_factory: sessionmaker[Session],
    *,
    clock: Callable[[], datetime] = utcnow,
    resolver: Resolver | None = None,
    submitter: Callable[[Dispatcher], Submitter] | None = None,
    **settings: object,
) -> Iterator[ApiHarness]:
    """The API with loopback allowed (tests' servers live there) unless `settings` say
    otherwise; names resolve through `resolver`, by default none (no real DNS in tests).
    Writes are admitted by `submitter` (made from the API's dispatcher), by default the
    dispatcher itself, in the request."""
    publisher = RecordingPublisher()
    flow = RedisFlowControl(fakeredis.FakeRedis())
    config = Settings(database_url=database_url, **{**TEST_OUTBOUND_SETTINGS, **settings})  # type: ignore[arg-type]
    destinations = DestinationPolicy.from_settings(config, resolver or StubDns())
    # Writes are admitted in their request, so a test sees a write QUEUED and published as
    # soon as it is answered (`pmsq api` admits on threads of its own: test_admissions.py).
    app = create_app(
        config,
        session_factory,
        publisher,
        flow,
        clock=clock,
        destinations=destinations,
        submitter=submitter or (lambda dispatcher: dispatcher),
    )
    with TestClient(app) as client:
        yield ApiHarness(client, publisher, session_factory, flow)
