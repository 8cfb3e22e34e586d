"""The flow-control Lua scripts, run by fakeredis through `RedisFlowControl`.

Every script reads Redis's own clock (`TIME`), which fakeredis takes from the wall clock. No test
here depends on how fast that clock runs: time limits are either already past (a lease of 0 us)
or far away (an hour), and exact arithmetic is checked on the values the scripts store.
"""

from __future__ import annotations

import fakeredis
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.judge import max_in_window

from pmsq.models.enums import CADENCE_SECONDS, Cadence
from pmsq.workers.flow.backend import Pace
from pmsq.workers.flow.keys import KNOWN_INTEGRATIONS, READY, IntegrationKeys
from pmsq.workers.flow.limits import MAX_TOLERANCE_US, Limits
from pmsq.workers.flow.redis_backend import RedisFlowControl

HOUR_US = 3_600_000_000
#: No rate limit worth the name: an interval of 1 us and a tolerance of a day.
UNPACED = {"interval_us": 1, "tolerance_us": 86_400_000_000}
IID = "integration-1"


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def flow(client: fakeredis.FakeRedis) -> RedisFlowControl:
    return RedisFlowControl(client)


@pytest.fixture
def keys() -> IntegrationKeys:
    return IntegrationKeys(IID)


def now_us(client: fakeredis.FakeRedis) -> int:
    seconds, micros = client.time()
    return seconds * 1_000_000 + micros


def members(client: fakeredis.FakeRedis, key: str) -> set[str]:
    return {m.decode() if isinstance(m, bytes) else str(m) for m in client.zrange(key, 0, -1)}


def score(client: fakeredis.FakeRedis, key: str, member: str) -> int | None:
    value = client.zscore(key, member)
    return None if value is None else int(value)


# --- admit ---------------------------------------------------------------------------------------


def test_admit_without_limits_asks_for_them_and_admits_nothing(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.enqueue(IID, ["a"])

    admission = flow.admit(IID, 10, 60)

    assert (admission.status, admission.next_us, tuple(admission.job_ids)) == (
        "nolimits",
        None,
        (),
    )
    assert members(client, keys.backlog) == {"a"}
    assert client.zcard(keys.leases) == 0


def test_admit_respects_concurrency_with_leases(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=3))
    flow.enqueue(IID, ["a", "b", "c", "d", "e"])

    before = now_us(client)
    first = flow.admit(IID, 10, 3600)
    after = now_us(client)

    assert first.status == "ok"
    assert len(first.job_ids) == 3
    assert members(client, keys.leases) == set(first.job_ids)
    assert client.zcard(keys.backlog) == 2
    for job_id in first.job_ids:
        lease = score(client, keys.leases, job_id)
        assert lease is not None and before + HOUR_US <= lease <= after + HOUR_US
    # Full: the next admission may happen when the oldest lease expires.
    assert first.next_us is not None and before + HOUR_US <= first.next_us <= after + HOUR_US
    again = flow.admit(IID, 10, 3600)
    assert (again.status, tuple(again.job_ids)) == ("ok", ())
    assert again.next_us == first.next_us

    # A release frees exactly one slot.
    assert flow.release(IID, first.job_ids[0]) == 2
    third = flow.admit(IID, 10, 3600)
    assert len(third.job_ids) == 1
    assert client.zcard(keys.leases) == 3


def test_admit_admits_at_most_max_jobs_per_call(flow: RedisFlowControl) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=10))
    flow.enqueue(IID, ["a", "b", "c"])

    assert len(flow.admit(IID, 2, 60).job_ids) == 2
    assert len(flow.admit(IID, 2, 60).job_ids) == 1


def test_expired_leases_stop_counting(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=1))
    flow.enqueue(IID, ["lost", "next", "blocked"])

    assert flow.admit(IID, 1, 0).job_ids == ("lost",)  # a lease of 0 us has already expired
    assert flow.admit(IID, 1, 3600).job_ids == ("next",)  # so its slot comes back
    assert members(client, keys.leases) == {"next"}  # and the dead lease was pruned
    assert flow.admit(IID, 1, 3600).job_ids == ()  # a lease of an hour has not expired


def test_admissions_are_spaced_by_the_gcra(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    limits = Limits(interval_us=HOUR_US, tolerance_us=50_000, concurrency=10)
    flow.set_limits(IID, limits)
    flow.enqueue(IID, ["a", "b", "c"])

    before = now_us(client)
    admission = flow.admit(IID, 10, 60)
    after = now_us(client)

    assert admission.job_ids == ("a",)
    spacing = limits.interval_us - limits.tolerance_us
    assert admission.next_us is not None
    assert before + spacing <= admission.next_us <= after + spacing
    tat = client.get(keys.admit_tat)
    assert tat is not None and before + HOUR_US <= int(tat) <= after + HOUR_US
    assert client.pttl(keys.admit_tat) > 0  # the token state expires on its own
    # Asking again changes nothing: same next time, nothing admitted, the backlog intact.
    again = flow.admit(IID, 10, 60)
    assert (again.job_ids, again.next_us) == ((), admission.next_us)
    assert client.zcard(keys.backlog) == 2


def test_a_paused_integration_admits_nothing_until_the_pause_ends(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=10))
    flow.enqueue(IID, ["a"])

    until = flow.pause(IID, 3600)
    admission = flow.admit(IID, 10, 60)

    assert (admission.status, admission.next_us, tuple(admission.job_ids)) == (
        "paused",
        until,
        (),
    )
    assert members(client, keys.backlog) == {"a"}
    assert flow.usage(IID).paused_until_us == until


def test_a_pause_only_ever_grows(flow: RedisFlowControl, client: fakeredis.FakeRedis) -> None:
    before = now_us(client)
    long_until = flow.pause(IID, 3600)
    assert long_until >= before + HOUR_US

    assert flow.pause(IID, 1) == long_until  # a shorter Retry-After received later
    assert flow.pause(IID, 7200) > long_until


def test_a_pause_of_zero_seconds_is_already_over(flow: RedisFlowControl) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=10))
    flow.enqueue(IID, ["a"])

    flow.pause(IID, 0)  # a 429 without Retry-After

    assert flow.admit(IID, 10, 60).job_ids == ("a",)


def test_pause_moves_a_ready_integration_to_the_pause_end(
    flow: RedisFlowControl, client: fakeredis.FakeRedis
) -> None:
    flow.enqueue(IID, ["a"])
    until = flow.pause(IID, 3600)
    assert score(client, READY, IID) == until

    flow.pause("not-ready", 3600)
    assert client.zscore(READY, "not-ready") is None  # pause does not make anything ready


# --- enqueue -------------------------------------------------------------------------------------


def test_enqueue_keeps_the_first_due_time(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    before = now_us(client)
    flow.enqueue(IID, ["a"], delay_s=3600)
    after = now_us(client)
    due = score(client, keys.backlog, "a")
    assert due is not None and before + HOUR_US <= due <= after + HOUR_US

    flow.enqueue(IID, ["a"], delay_s=0)  # already waiting: keeps its place

    assert score(client, keys.backlog, "a") == due
    # An enqueue of due-now work wakes the integration at once (score 0 in one round trip);
    # admission finds nothing due and reschedules it to the job's time.
    ready = score(client, READY, IID)
    assert ready is not None and ready <= due
    assert client.sismember(KNOWN_INTEGRATIONS, IID)


def test_enqueue_makes_the_integration_ready_at_its_earliest_due_time(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.enqueue(IID, ["later"], delay_s=3600)
    flow.enqueue(IID, ["sooner"], delay_s=60)

    assert score(client, READY, IID) == score(client, keys.backlog, "sooner")
    flow.enqueue(IID, ["latest"], delay_s=7200)
    assert score(client, READY, IID) == score(client, keys.backlog, "sooner")


def test_delayed_jobs_are_not_admitted_before_they_are_due(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=10))
    flow.enqueue(IID, ["later"], delay_s=3600)

    admission = flow.admit(IID, 10, 60)

    assert (admission.status, tuple(admission.job_ids)) == ("ok", ())
    assert admission.next_us == score(client, keys.backlog, "later")
    flow.enqueue(IID, ["now"])
    assert flow.admit(IID, 10, 60).job_ids == ("now",)
    assert members(client, keys.backlog) == {"later"}


def test_admitting_the_whole_backlog_reports_no_next_time(flow: RedisFlowControl) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=10))
    flow.enqueue(IID, ["a", "b"])

    admission = flow.admit(IID, 10, 60)

    assert (set(admission.job_ids), admission.next_us) == ({"a", "b"}, None)


# --- submit and finish: admission folded into the calls a job makes anyway --------------------


def test_submit_enqueues_and_admits_in_one_step_in_order(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=2))
    jobs = ["z", "m", "a", "q"]  # not in sorted order: the batch's own order is kept

    admission = flow.submit(IID, jobs, 10, 3600)

    assert admission.job_ids == ("z", "m")
    assert admission.next_us is not None  # two wait for a slot
    assert [m.decode() for m in client.zrange(keys.backlog, 0, -1)] == ["a", "q"]
    assert members(client, keys.leases) == {"z", "m"}
    assert client.sismember(KNOWN_INTEGRATIONS, IID)
    assert client.zscore(READY, IID) is None  # waking a dispatcher is the caller's call


def test_submit_without_limits_keeps_the_jobs_for_the_next_admission(
    flow: RedisFlowControl, keys: IntegrationKeys
) -> None:
    assert flow.submit(IID, ["a"], 10, 3600).status == "nolimits"
    flow.set_limits(IID, Limits(**UNPACED, concurrency=1))
    assert flow.admit(IID, 10, 3600).job_ids == ("a",)


def test_submit_ahead_puts_interrupted_jobs_before_the_waiting_ones(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=1))
    flow.enqueue(IID, ["waiting"])
    client.zadd(keys.leases, {"busy:1": now_us(client) + HOUR_US})  # the only slot is taken

    assert flow.submit(IID, ["interrupted"], 10, 3600, ahead=True).job_ids == ()
    assert [m.decode() for m in client.zrange(keys.backlog, 0, -1)] == ["interrupted", "waiting"]


def test_finish_releases_its_claim_and_admits_the_next_job(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=1))
    assert flow.submit(IID, ["a", "b", "c"], 10, 3600).job_ids == ("a",)
    assert flow.hold(IID, "a", 1, 3600).held

    admission = flow.finish(IID, "a:1", 10, 3600)

    assert admission.job_ids == ("b",)  # into the slot "a:1" gave back
    assert members(client, keys.leases) == {"b"}
    assert admission.next_us is not None  # "c" still waits
    assert flow.finish(IID, "a:1", 10, 3600).job_ids == ()  # finishing twice frees nothing


def test_finish_of_a_stale_claim_never_frees_the_newer_deliverys_slot(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=1))
    flow.submit(IID, ["a", "b"], 10, 3600)
    assert flow.hold(IID, "a", 2, 3600).held  # delivery 2 holds the job now

    assert flow.finish(IID, "a:1", 10, 3600).job_ids == ()
    assert members(client, keys.leases) == {"a:2"}


def test_finish_requeues_its_retry_and_children_and_keeps_the_pms_limits(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=1))
    flow.submit(IID, ["parent"], 10, 3600)
    assert flow.hold(IID, "parent", 1, 3600).held
    before = now_us(client)
    headers = {"X-RateLimit-Remaining": "7", "Content-Type": "application/json"}

    admission = flow.finish(
        IID, "parent:1", 10, 3600, requeue=[("retry", 3600.0), ("child", 0.0)], pms_headers=headers
    )

    assert admission.job_ids == ("child",)
    retry_due = score(client, keys.backlog, "retry")
    assert retry_due is not None and retry_due >= before + HOUR_US
    assert admission.next_us == retry_due  # a dispatcher comes back when it is due
    assert client.hgetall(keys.pms_limits) == {b"X-RateLimit-Remaining": b"7"}


def test_only_an_admission_needing_an_earlier_ready_time_asks_for_a_write(
    flow: RedisFlowControl, client: fakeredis.FakeRedis
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=1))
    assert flow.submit(IID, ["a"], 10, 3600).next_us is None  # admitted: nothing to wake

    waiting = flow.submit(IID, ["b"], 10, 3600)
    assert waiting.next_us is not None and waiting.wake  # "a"'s lease ends: come back then
    again = flow.submit(IID, ["c"], 10, 3600)
    assert again.next_us == waiting.next_us and not again.wake  # asked for already

    client.zadd(IntegrationKeys(IID).leases, {"a": now_us(client) + 60_000_000})  # ends sooner
    sooner = flow.admit(IID, 10, 3600)
    assert sooner.next_us is not None and sooner.next_us < waiting.next_us and sooner.wake


def test_a_claimed_admission_forgets_the_ready_time_its_dispatcher_reschedules(
    flow: RedisFlowControl,
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=1))
    flow.submit(IID, ["a", "b"], 10, 3600)
    assert not flow.submit(IID, ["c"], 10, 3600).wake  # the first submit asked already

    # A dispatcher's claimed admission: its reschedule may remove the ready entry (it saw
    # nothing to admit before this submit), so the next admission must write again.
    flow.admit(IID, 10, 3600, claimed=True)
    assert flow.submit(IID, ["d"], 10, 3600).wake


# --- leases and their fencing: release, hold, renew, reclaim -----------------------------------


def test_release_frees_the_lease_and_returns_the_backlog_size(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=1))
    flow.enqueue(IID, ["a", "b", "c"])
    [admitted] = flow.admit(IID, 10, 3600).job_ids

    assert flow.release(IID, admitted) == 2
    assert client.zcard(keys.leases) == 0
    assert flow.release(IID, admitted) == 2  # releasing twice is harmless
    assert flow.release("empty", "x") == 0


def test_hold_hands_the_admission_slot_to_the_claim(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=1))
    flow.enqueue(IID, ["a", "b"])
    assert flow.admit(IID, 1, 60).job_ids == ("a",)

    before = now_us(client)
    held = flow.hold(IID, "a", 1, 3600)

    assert held.held is True and held.now_us >= before
    assert members(client, keys.leases) == {"a:1"}  # the admission member became the claim's
    lease = score(client, keys.leases, "a:1")
    assert lease is not None and lease >= before + HOUR_US
    assert flow.admit(IID, 1, 60).job_ids == ()  # still one slot taken, not two


def test_hold_after_a_lapsed_admission_takes_a_free_slot_only(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=1))
    flow.enqueue(IID, ["late", "heir"])
    flow.admit(IID, 1, 0)  # the admission lease of "late" lapses at once
    assert flow.hold(IID, "late", 1, 3600).held is True  # the slot was free: taken again

    flow.enqueue(IID, ["other"])
    assert flow.release(IID, "late:1") == 2
    assert flow.admit(IID, 1, 0).job_ids == ("heir",)  # lapses at once too
    assert flow.admit(IID, 1, 3600).job_ids == ("other",)  # took the only slot
    assert flow.hold(IID, "heir", 1, 3600).held is False  # none free: it must not run
    assert members(client, keys.leases) == {"other"}


def test_hold_with_pace_first_takes_the_first_request_slot_in_the_same_step(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(interval_us=HOUR_US, tolerance_us=50_000, concurrency=2))

    before = now_us(client)
    first = flow.hold(IID, "a", 1, 3600, pace_first=True)
    after = now_us(client)

    assert first.held is True and first.slot is not None
    granted_us, next_us = first.slot
    assert before <= granted_us <= after and next_us == granted_us + HOUR_US
    assert int(client.get(keys.request_tat) or 0) == next_us  # as pace.lua would have set it
    # The next claim holds its lease but gets no slot: the interval has not passed. Its
    # request is paced as usual (and waits), nothing was reserved for it.
    second = flow.hold(IID, "b", 1, 3600, pace_first=True)
    assert second.held is True and second.slot is None
    assert int(client.get(keys.request_tat) or 0) == next_us
    assert flow.pace(IID, "b", 1).decision is Pace.WAIT
    # A slot given back (the request did not leave) is free again.
    assert flow.give_back(IID, first.slot)
    assert flow.pace(IID, "b", 1).decision is Pace.GO


def test_hold_with_pace_first_grants_nothing_paused_without_limits_or_without_a_lease(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    no_limits = flow.hold(IID, "a", 1, 3600, pace_first=True)
    assert no_limits.held is True and no_limits.slot is None  # the pacer reloads them
    assert client.get(keys.request_tat) is None

    flow.set_limits(IID, Limits(interval_us=1000, tolerance_us=1000, concurrency=2))
    flow.pause(IID, 3600)
    paused = flow.hold(IID, "b", 1, 3600, pace_first=True)
    assert paused.held is True and paused.slot is None
    assert client.get(keys.request_tat) is None

    full = flow.hold(IID, "c", 1, 3600, pace_first=True)  # both slots taken
    assert full.held is False and full.slot is None
    assert client.get(keys.request_tat) is None


def test_renew_extends_a_live_claim_and_never_revives_a_lapsed_one(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=2))
    flow.hold(IID, "a", 1, 60)
    flow.hold(IID, "dead", 1, 0)  # its lease lapses at once (its worker froze)

    before = now_us(client)
    assert flow.renew(IID, "a", 1, 3600).held is True
    lease = score(client, keys.leases, "a:1")
    assert lease is not None and lease >= before + HOUR_US

    assert flow.renew(IID, "dead", 1, 3600).held is False
    assert flow.renew(IID, "a", 2, 3600).held is False  # another delivery's claim
    assert flow.renew(IID, "never-claimed", 1, 3600).held is False
    assert "a:2" not in members(client, keys.leases)


def test_a_newer_delivery_fences_the_older_one_out(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=1))
    assert flow.hold(IID, "a", 1, 0).held is True  # delivery 1, then its worker froze
    assert flow.reclaim(IID, "a", 1) is True  # lapsed on Redis's clock: taken away
    assert flow.hold(IID, "a", 2, 3600).held is True

    assert flow.pace(IID, "a", 1)[0] is Pace.FENCED
    assert flow.renew(IID, "a", 1, 3600).held is False
    assert flow.pace(IID, "a", 2)[0] is Pace.GO
    assert members(client, keys.leases) == {"a:2"}
    # The stale worker releasing its claim frees nothing of the newer one's.
    flow.release(IID, "a:1")
    assert members(client, keys.leases) == {"a:2"}


def test_reclaim_leaves_a_live_claim_alone(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=1))
    flow.hold(IID, "a", 1, 3600)

    assert flow.reclaim(IID, "a", 1) is False
    assert members(client, keys.leases) == {"a:1"}
    assert flow.pace(IID, "a", 1)[0] is Pace.GO


def test_a_lapsed_claim_is_fenced_even_before_anyone_reclaims_it(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=1))
    flow.hold(IID, "a", 1, 0)

    assert flow.pace(IID, "a", 1)[:2] == (Pace.FENCED, 0.0)
    assert client.get(keys.request_tat) is None  # no request slot taken


def test_admit_drops_a_duplicate_of_an_admitted_job(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=5))
    flow.enqueue(IID, ["a"])
    assert flow.admit(IID, 10, 3600).job_ids == ("a",)
    flow.enqueue(IID, ["a", "b"])  # a stale sweep put "a" back

    assert flow.admit(IID, 10, 3600).job_ids == ("b",)
    assert client.zcard(keys.backlog) == 0


def test_enqueue_orphan_skips_a_job_in_the_backlog_or_admitted(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(**UNPACED, concurrency=5))
    flow.enqueue(IID, ["waiting", "admitted"])
    assert flow.admit(IID, 1, 3600).job_ids == ("waiting",)
    flow.enqueue(IID, ["lapsed"])
    flow.admit(IID, 0, 0)

    assert flow.enqueue_orphan(IID, "admitted") is False  # still in the backlog
    assert flow.enqueue_orphan(IID, "waiting") is False  # admitted, lease live
    assert flow.enqueue_orphan(IID, "lost") is True
    assert members(client, keys.backlog) == {"admitted", "lapsed", "lost"}


def test_older_limits_never_replace_newer_ones(flow: RedisFlowControl) -> None:
    newer = Limits(**UNPACED, concurrency=3, version_us=2_000)
    flow.set_limits(IID, newer)

    flow.set_limits(IID, Limits(**UNPACED, concurrency=1, version_us=1_000))  # arrives late

    assert flow.usage(IID).limits == newer
    assert flow.limits_versions([IID, "none"]) == [2_000, None]


def test_repair_ready_puts_back_integrations_with_a_backlog(
    flow: RedisFlowControl, client: fakeredis.FakeRedis
) -> None:
    flow.enqueue(IID, ["a"], delay_s=3600)
    flow.enqueue("idle", ["b"])
    client.zrem(READY, "idle")
    client.delete(IntegrationKeys("idle").backlog)
    due = score(client, READY, IID)
    client.delete(READY)

    assert flow.repair_ready() == 1
    assert score(client, READY, IID) == due
    assert score(client, READY, "idle") is None
    assert flow.repair_ready() == 0


# --- pace ----------------------------------------------------------------------------------------


def test_pace_lets_one_request_leave_per_interval(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(interval_us=HOUR_US, tolerance_us=50_000, concurrency=1))
    flow.hold(IID, "j", 1, 3600)

    before = now_us(client)
    allowed, first_wait, _ = flow.pace(IID, "j", 1)
    first_tat = int(client.get(keys.request_tat) or 0)
    allowed_2, second_wait, _ = flow.pace(IID, "j", 1)
    after = now_us(client)

    assert (allowed, first_wait) == (Pace.GO, 0.0)  # the first request leaves now
    assert before + HOUR_US <= first_tat <= after + HOUR_US
    # The second must wait for the interval, and nothing is reserved for it meanwhile.
    assert allowed_2 is Pace.WAIT
    elapsed_s = (after - before) / 1_000_000
    assert 3600 - elapsed_s - 1e-6 <= second_wait <= 3600
    assert int(client.get(keys.request_tat) or 0) == first_tat


def test_a_late_request_wins_nothing_back(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    limits = Limits.from_values(1, Cadence.HOUR, 1, margin_ms=20.0)  # as an integration's
    flow.set_limits(IID, limits)
    flow.hold(IID, "j", 1, 3600)
    # A request due 5 ms ago leaves now: the next may leave a whole interval after it, never
    # earlier (winning the lateness back would put two requests closer than an interval).
    client.set(keys.request_tat, now_us(client) - 5_000)
    before = now_us(client)
    assert flow.pace(IID, "j", 1)[0] is Pace.GO
    after = now_us(client)
    next_tat = int(client.get(keys.request_tat) or 0)
    assert before + limits.interval_us <= next_tat <= after + limits.interval_us


def test_a_stale_slot_given_back_lets_the_next_pass_go_at_once(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(HOUR_US, 50_000, 1))
    flow.hold(IID, "j", 1, 3600)
    stale = flow.pace(IID, "j", 1)
    assert stale.decision is Pace.GO and stale.slot is not None

    assert flow.give_back(IID, stale.slot) is True
    assert int(client.get(keys.request_tat) or 0) == stale.slot[0]  # back to its grant time
    fresh = flow.pace(IID, "j", 1)
    assert fresh.decision is Pace.GO and fresh.slot is not None
    assert fresh.slot[0] >= stale.slot[0]  # still an interval after any earlier request
    # A slot another pass was granted after is never given back.
    assert flow.give_back(IID, stale.slot) is False
    assert int(client.get(keys.request_tat) or 0) == fresh.slot[1]


def test_pace_without_limits_asks_for_them(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.hold(IID, "j", 1, 3600)
    assert flow.pace(IID, "j", 1)[:2] == (Pace.NO_LIMITS, 0.0)
    assert client.get(keys.request_tat) is None


def test_pace_while_paused_reserves_nothing(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.set_limits(IID, Limits(interval_us=1000, tolerance_us=1000, concurrency=1))
    flow.hold(IID, "j", 1, 3600)
    until = flow.pause(IID, 3600)

    before = now_us(client)
    allowed, wait_s, _ = flow.pace(IID, "j", 1)

    assert allowed is Pace.WAIT
    assert wait_s * 1_000_000 == pytest.approx(until - before, abs=1_000_000)
    assert client.get(keys.request_tat) is None


# --- claim_due and reschedule --------------------------------------------------------------------


def test_claim_due_takes_due_integrations_oldest_first_and_hides_them(
    flow: RedisFlowControl, client: fakeredis.FakeRedis
) -> None:
    flow.enqueue("first", ["a"])
    flow.enqueue("second", ["b"])
    flow.enqueue("third", ["c"])
    flow.enqueue("later", ["d"], delay_s=3600)
    later_due = score(client, READY, "later")

    due = flow.claim_due(2, 5.0)

    assert list(due.integration_ids) == ["first", "second"]
    assert due.claim_us == due.now_us + 5_000_000
    assert score(client, READY, "first") == score(client, READY, "second") == due.claim_us
    assert due.next_us == score(client, READY, "third")  # the earliest left
    rest = flow.claim_due(10, 5.0)
    assert list(rest.integration_ids) == ["third"]
    assert rest.next_us == due.claim_us  # the first claims are the earliest left
    assert score(client, READY, "later") == later_due  # not due: untouched
    assert list(flow.claim_due(10, 5.0).integration_ids) == []


def test_claim_due_on_an_empty_set(flow: RedisFlowControl) -> None:
    due = flow.claim_due(10, 5.0)
    assert (list(due.integration_ids), due.next_us) == ([], None)


def test_reschedule_sets_the_next_time_of_an_untouched_claim(
    flow: RedisFlowControl, client: fakeredis.FakeRedis
) -> None:
    flow.enqueue(IID, ["a"])
    due = flow.claim_due(10, 5.0)

    flow.reschedule(IID, due.claim_us, due.now_us + HOUR_US)

    assert score(client, READY, IID) == due.now_us + HOUR_US


def test_reschedule_to_nothing_removes_only_an_untouched_claim(
    flow: RedisFlowControl, client: fakeredis.FakeRedis
) -> None:
    flow.enqueue(IID, ["a"])
    flow.enqueue("touched", ["b"])
    due = flow.claim_due(10, 5.0)
    assert set(due.integration_ids) == {IID, "touched"}
    # Made due now meanwhile, as a release or an enqueue does.
    client.zadd(READY, {"touched": now_us(client)}, lt=True)

    flow.reschedule(IID, due.claim_us, None)
    flow.reschedule("touched", due.claim_us, None)

    assert client.zscore(READY, IID) is None
    touched = score(client, READY, "touched")
    assert touched is not None and touched < due.claim_us


def test_an_enqueue_after_the_claim_wins_over_a_later_reschedule(
    flow: RedisFlowControl, client: fakeredis.FakeRedis, keys: IntegrationKeys
) -> None:
    flow.enqueue(IID, ["a"])
    due = flow.claim_due(10, 5.0)

    flow.enqueue(IID, ["b"])  # arrives while the dispatcher works on the claim
    enqueued_due = score(client, keys.backlog, "b")
    flow.reschedule(IID, due.claim_us, due.now_us + HOUR_US)

    assert enqueued_due is not None and enqueued_due < due.claim_us
    ready_after_enqueue = score(client, READY, IID)
    assert ready_after_enqueue is not None and ready_after_enqueue <= enqueued_due


def test_a_reschedule_without_a_claim_only_moves_earlier(
    flow: RedisFlowControl, client: fakeredis.FakeRedis
) -> None:
    flow.enqueue(IID, ["a"], delay_s=60)
    ready = score(client, READY, IID)
    assert ready is not None

    flow.reschedule(IID, -1, ready + HOUR_US)
    assert score(client, READY, IID) == ready
    flow.reschedule(IID, -1, ready - 1)
    assert score(client, READY, IID) == ready - 1
    flow.reschedule(IID, -1, None)
    assert score(client, READY, IID) == ready - 1


# --- usage and in_backlog ------------------------------------------------------------------------


def test_usage_and_in_backlog_report_the_live_state(flow: RedisFlowControl) -> None:
    limits = Limits(**UNPACED, concurrency=1)
    flow.set_limits(IID, limits)
    flow.enqueue(IID, ["a", "b"])
    flow.admit(IID, 10, 3600)
    flow.record_pms_limits(IID, {"X-RateLimit-Remaining": "7", "Content-Type": "json"})

    usage = flow.usage(IID)

    assert (usage.in_flight, usage.backlog, usage.limits) == (1, 1, limits)
    assert usage.paused_until_us is None
    assert usage.pms_reported == {"X-RateLimit-Remaining": "7"}
    assert flow.in_backlog(IID, ["a", "b", "zzz"]) == [False, True, False]


# --- Limits --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frequency", "cadence", "margin_ms", "interval_us", "tolerance_us"),
    [
        (10, Cadence.SECOND, 20.0, 102_000, MAX_TOLERANCE_US),  # (1 s + 20 ms) / 10
        (1000, Cadence.SECOND, 0.0, 1000, 1000),  # tolerance capped by one interval
        (3, Cadence.SECOND, 0.0, 333_334, MAX_TOLERANCE_US),  # rounded up, never down
        (1, Cadence.MINUTE, 20.0, 60_020_000, MAX_TOLERANCE_US),
        (1.5, Cadence.SECOND, 0.0, 1_000_000, MAX_TOLERANCE_US),  # fractions round down
        (2_000_000, Cadence.SECOND, 0.0, 1, 1),  # never below 1 us
    ],
)
def test_limits_from_values(
    frequency: float,
    cadence: Cadence,
    margin_ms: float,
    interval_us: int,
    tolerance_us: int,
) -> None:
    limits = Limits.from_values(frequency, cadence, 4, margin_ms)
    assert limits == Limits(interval_us, tolerance_us, 4)


_MIN_PER_S = 1 / 60


@given(
    frequency=st.floats(min_value=1, max_value=1e7, allow_nan=False, allow_infinity=False),
    cadence=st.sampled_from(list(Cadence)),
    margin_ms=st.floats(min_value=0, max_value=10_000, allow_nan=False),
)
def test_a_window_never_holds_more_than_frequency_slots(
    frequency: float, cadence: Cadence, margin_ms: float
) -> None:
    if frequency / CADENCE_SECONDS[cadence] < _MIN_PER_S:
        return  # below the minimum rate the API accepts
    limits = Limits.from_values(frequency, cadence, 1, margin_ms)
    window_us = CADENCE_SECONDS[cadence] * 1_000_000 + margin_ms * 1000

    assert limits.interval_us >= 1
    assert limits.interval_us * frequency >= window_us
    assert limits.tolerance_us == min(limits.interval_us, MAX_TOLERANCE_US)


@given(
    frequency=st.integers(min_value=1, max_value=50),
    margin_us=st.integers(min_value=1, max_value=100_000),
    data=st.data(),
)
def test_the_margin_holds_the_limit_at_the_pms(
    frequency: int, margin_us: int, data: st.DataObject
) -> None:
    """pace.lua lets requests leave at least one interval apart (and no catch-up); if each
    request's delay from that decision to its arrival varies by less than the margin, no
    one-second window at the PMS holds more than `frequency` requests."""
    interval_us = Limits.from_values(frequency, Cadence.SECOND, 1, margin_us / 1000).interval_us
    count = data.draw(st.integers(min_value=frequency + 1, max_value=4 * frequency + 2))
    extra = data.draw(st.lists(st.integers(0, interval_us), min_size=count, max_size=count))
    delay = data.draw(st.lists(st.integers(0, margin_us - 1), min_size=count, max_size=count))
    decided, at = [], 0
    for late_us in extra:
        at += interval_us + late_us
        decided.append(at)
    arrivals = [t + d for t, d in zip(decided, delay, strict=True)]

    assert max_in_window(arrivals, 1_000_000) <= frequency
