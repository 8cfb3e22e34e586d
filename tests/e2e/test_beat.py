"""Two real beat processes against one database and Redis: every scheduled sync fires exactly
once, the survivor takes over within the leader lease when the leader is SIGKILLed, and an API
change to a schedule is followed within a tick."""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from support.processes import ManagedProcess, wait_until
from support.stack import Stack

from pmsq.models.sync import SyncExecution

PERIOD_S = 2
INTEGRATIONS = 30


@pytest.fixture(scope="module")
def beat_stack(stack: Stack) -> Stack:
    # Beat is under test, not the syncs: without workers the fired jobs simply wait.
    for worker in stack.workers:
        worker.stop()
    stack.workers.clear()
    return stack


def executions(stack: Stack) -> list[SyncExecution]:
    with stack.session_factory() as session:
        return list(session.scalars(select(SyncExecution)).all())


def count(stack: Stack) -> int:
    with stack.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(SyncExecution)) or 0)


def leader(beats: list[ManagedProcess]) -> ManagedProcess:
    def find() -> ManagedProcess | None:
        holders = [b for b in beats if "beat took leadership" in b.log_text()]
        return holders[0] if len(holders) == 1 else None

    return wait_until(find, 30, message="one beat leads")


def test_two_beats_fire_each_sync_once_and_fail_over(beat_stack: Stack) -> None:
    stack = beat_stack
    headers = stack.token("acme")
    for _ in range(INTEGRATIONS):
        stack.integration(
            headers, "SANDBOX", f"b{uuid.uuid4().hex[:8]}",
            sync_frequency=PERIOD_S, sync_cadence="SECOND",
        )  # fmt: skip
    beats = [stack.start_beat(), stack.start_beat()]
    first = leader(beats)
    wait_until(lambda: count(stack) >= 100, 60, message="100 syncs fired", details=stack.logs)
    first.kill()
    killed_at = datetime.now(UTC)
    survivor = next(b for b in beats if b is not first)
    wait_until(lambda: count(stack) >= 300, 90, message="300 syncs fired", details=stack.logs)
    assert "beat took leadership" in survivor.log_text()

    rows = executions(stack)
    by_schedule: dict[str | None, list[datetime]] = defaultdict(list)
    for row in rows:
        assert row.scheduled_for is not None and row.type == "SCHEDULED"
        by_schedule[row.schedule_id].append(row.scheduled_for)
    assert len(by_schedule) == INTEGRATIONS
    for times in by_schedule.values():
        times.sort()
        # Never twice for one scheduled time, never two fires closer than the cadence.
        assert all(b - a >= timedelta(seconds=PERIOD_S) for a, b in itertools.pairwise(times))
    fired_after_kill = sorted(r.created_at for r in rows if r.created_at > killed_at)
    ttl_s = 3.0  # PMSQ_BEAT_LEADER_TTL_S default
    assert (
        fired_after_kill
        and (fired_after_kill[0] - killed_at).total_seconds() < ttl_s + PERIOD_S + 2
    )


def test_a_schedule_change_is_followed_within_a_tick(beat_stack: Stack) -> None:
    stack = beat_stack
    if not any(b.is_running() for b in stack.beats):
        stack.start_beat()
    headers = stack.token("acme")
    integration_id = stack.integration(
        headers, "SANDBOX", f"c{uuid.uuid4().hex[:8]}", sync_frequency=1, sync_cadence="DAY"
    )

    def fired() -> list[SyncExecution]:
        return [r for r in executions(stack) if r.integration_id == integration_id]

    assert fired() == []
    changed_at = datetime.now(UTC)
    response = stack.http.put(
        f"{stack.api_url}/v1/admin/integrations/{integration_id}/",
        json={"sync_frequency": 1, "sync_cadence": "SECOND"},
        headers=headers,
    )
    assert response.status_code == 200
    first = wait_until(fired, 30, message="a sync after the change", details=stack.logs)
    # Due one period after the change; beat's longest tick is one second.
    assert (min(r.created_at for r in first) - changed_at).total_seconds() < 1 + 1 + 1.5
