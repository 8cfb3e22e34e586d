"""In-process API for contract tests: the real app on a real database, a recording publisher."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.auth import create_token
from pmsq.settings import Settings
from workers.publisher import AdmittedJob


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

    def token(self, account: str) -> dict[str, str]:
        with self.session_factory.begin() as session:
            return {"Authorization": f"Bearer {create_token(session, account)}"}


@contextmanager
def api_harness(
    database_url: str, session_factory: sessionmaker[Session], **settings: object
) -> Iterator[ApiHarness]:
    publisher = RecordingPublisher()
    app = create_app(Settings(database_url=database_url, **settings), session_factory, publisher)  # type: ignore[arg-type]
    with TestClient(app) as client:
        yield ApiHarness(client, publisher, session_factory)
