"""The healer's checks that read every known integration go round in pages: a pass checks the
limits of one page and the ready set is repaired once a round, so an idle worker's pass costs
the same with 10 or 10,000 integrations; jobs found missing from Redis trigger a full check."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import fakeredis
import pytest
from sqlalchemy.orm import Session, sessionmaker
from support.store import add_root_job

from pmsq.models.account import Account
from pmsq.models.enums import Vendor
from pmsq.models.integration import Integration
from pmsq.settings import Settings
from pmsq.workers import healing
from pmsq.workers.dispatch import Dispatcher
from pmsq.workers.flow.keys import KNOWN_INTEGRATIONS, READY
from pmsq.workers.flow.redis_backend import RedisFlowControl
from pmsq.workers.healing import Healer
from pmsq.workers.publisher import AdmittedJob

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PAGE = 3
KNOWN = 7
#: Passes in one round of checks: ceil(KNOWN / PAGE).
ROUND = 3


class Publisher:
    def __init__(self) -> None:
        self.ids: list[str] = []

    def publish(self, job: AdmittedJob) -> None:
        self.ids.append(job.job_id)


class World:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory
        self.redis = fakeredis.FakeRedis()
        self.flow = RedisFlowControl(self.redis)
        self.publisher = Publisher()
        settings = Settings(database_url=str(session_factory.kw["bind"].url))
        dispatcher = Dispatcher(session_factory, self.publisher, self.flow, settings, lambda: T0)
        self.healer = Healer(session_factory, dispatcher, settings, lambda: T0)
        with session_factory.begin() as session:
            account = Account(name="acme")
            session.add(account)
            session.flush()
            self.account_id = account.id
            rows = [
                Integration(
                    account_id=account.id, name=f"i{k}", integration_vendor=Vendor.SANDBOX.value
                )
                for k in range(KNOWN)
            ]
            session.add_all(rows)
            session.flush()
            self.integration_ids = [row.id for row in rows]
        # Known to flow control (each had work once), their limits not in Redis: all stale.
        self.redis.sadd(KNOWN_INTEGRATIONS, *self.integration_ids)

    def loaded(self) -> int:
        """How many of the integrations have limits in Redis."""
        versions = self.flow.limits_versions(self.integration_ids)
        return sum(v is not None for v in versions)

    def add_job(self, integration_id: str, due_at: datetime) -> str:
        return add_root_job(
            self.session_factory, self.account_id, integration_id, due_at, payload={}
        )


@pytest.fixture
def world(session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setattr(healing, "CHECK_PAGE", PAGE)
    return World(session_factory)


def passes(world: World, count: int) -> Sequence[int]:
    """Run `count` healing passes; how many integrations have limits after each."""
    out = []
    for _ in range(count):
        world.healer.heal()
        out.append(world.loaded())
    return out


def test_each_pass_checks_one_page_and_a_round_checks_every_integration(world: World) -> None:
    assert passes(world, ROUND) == [PAGE, 2 * PAGE, KNOWN]


def test_a_lost_ready_set_is_repaired_within_a_round(world: World) -> None:
    integration_id = world.integration_ids[0]
    world.flow.enqueue(
        integration_id, [world.add_job(integration_id, T0 + timedelta(hours=1))], 3600
    )
    world.healer.heal()
    world.redis.delete(READY)  # lost just after a round started
    passes(world, ROUND)
    assert world.redis.zscore(READY, integration_id) is not None


def test_jobs_missing_from_redis_make_the_pass_check_everything(world: World) -> None:
    integration_id = world.integration_ids[0]
    # PENDING, long due, and not in its backlog: Redis lost it.
    world.add_job(integration_id, T0 - timedelta(seconds=healing.ORPHAN_AGE_S + 1))
    assert passes(world, 1) == [KNOWN]
