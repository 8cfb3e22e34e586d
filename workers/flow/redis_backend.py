"""Flow control on Redis: the Lua scripts beside this module, registered once per client."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script

from pmsq.workers.flow.backend import Admission, DueIntegrations, Held, Pace, Paced, Usage
from pmsq.workers.flow.keys import KNOWN_INTEGRATIONS, READY, IntegrationKeys, claim_member
from pmsq.workers.flow.limits import Limits

#: Response headers a PMS uses to tell its own limits; kept for the rate-limits endpoint.
PMS_LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


#: Integrations whose admit.lua keys are kept made (a few hundred bytes each).
ADMIT_KEYS_CACHED = 4096

#: pace.lua's answers.
_PACE_STATES = {1: Pace.GO, 0: Pace.WAIT, -1: Pace.NO_LIMITS, -2: Pace.FENCED}


def _load(name: str) -> str:
    return resources.files("pmsq.workers.flow").joinpath(name).read_text()


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisFlowControl:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._admit = client.register_script(_load("admit.lua"))
        self._pace = client.register_script(_load("pace.lua"))
        self._enqueue = client.register_script(_load("enqueue.lua"))
        self._release = client.register_script(_load("release.lua"))
        self._hold = client.register_script(_load("hold.lua"))
        self._renew = client.register_script(_load("renew.lua"))
        self._reclaim = client.register_script(_load("reclaim.lua"))
        self._enqueue_orphan = client.register_script(_load("enqueue_orphan.lua"))
        self._set_limits = client.register_script(_load("set_limits.lua"))
        self._give_back = client.register_script(_load("give_back.lua"))
        self._pause = client.register_script(_load("pause.lua"))
        self._claim_due = client.register_script(_load("claim_due.lua"))
        self._reschedule = client.register_script(_load("reschedule.lua"))

    def set_limits(self, integration_id: str, limits: Limits) -> None:
        """Write the limits unless Redis holds a newer version of them."""
        self._call(
            self._set_limits,
            [IntegrationKeys(integration_id).limits],
            [
                limits.version_us,
                limits.interval_us,
                limits.tolerance_us,
                limits.concurrency,
            ],
        )

    def limits_versions(self, integration_ids: Sequence[str]) -> list[int | None]:
        pipe = self._redis.pipeline(transaction=False)
        for integration_id in integration_ids:
            pipe.hget(IntegrationKeys(integration_id).limits, "version_us")
        return [None if v is None else int(_text(v)) for v in pipe.execute()]

    def known_integrations(self) -> list[str]:
        return sorted(_text(i) for i in self._redis.smembers(KNOWN_INTEGRATIONS))

    def enqueue(self, integration_id: str, job_ids: Sequence[str], delay_s: float = 0.0) -> None:
        """One round trip for jobs due now; a delayed batch takes a second for its wake time."""
        if not job_ids:
            return
        if delay_s <= 0:
            self.enqueue_many({integration_id: job_ids})
            return
        keys = IntegrationKeys(integration_id)

        def build() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.execute_command(  # type: ignore[no-untyped-call]
                    "EVALSHA", self._enqueue.sha, 1, keys.backlog, job_id, _us(delay_s)
                )
            pipe.sadd(KNOWN_INTEGRATIONS, integration_id)
            return pipe

        results = self._execute_with_scripts(build, self._enqueue)
        earliest = min(int(float(r)) for r in results[: len(job_ids)])
        self._redis.zadd(READY, {integration_id: earliest}, lt=True)

    def enqueue_many(self, batches: Mapping[str, Sequence[str]], *, ahead: bool = False) -> None:
        """Jobs due now, of any number of integrations, in one round trip."""
        delay = "ahead" if ahead else 0

        def build() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            for integration_id, job_ids in batches.items():
                backlog = IntegrationKeys(integration_id).backlog
                for job_id in job_ids:
                    pipe.execute_command(  # type: ignore[no-untyped-call]
                        "EVALSHA", self._enqueue.sha, 1, backlog, job_id, delay
                    )
            if batches:
                pipe.sadd(KNOWN_INTEGRATIONS, *batches)
                # Due at once: a score of 0 ("long due") wakes each integration; LT keeps any
                # earlier time and reschedule.lua sets the real next time after admission.
                pipe.zadd(READY, dict.fromkeys(batches, 0), lt=True)
            return pipe

        if any(batches.values()):
            self._execute_with_scripts(build, self._enqueue)

    def _execute_with_scripts(self, build: Callable[[], Any], script: Script) -> list[Any]:
        """Run a pipeline of EVALSHAs of `script`, loading it once if Redis does not have it
        (a restarted or failed-over Redis). Every command of the pipeline must be safe to run
        twice: the first attempt may have run those that did not need the script.

        (redis-py's own script pipelining asks SCRIPT EXISTS on every execute: one more round
        trip per call on the hot path. EVALSHA goes through `execute_command` because a Redis
        Cluster pipeline refuses its `evalsha` method, though it routes the command by key.)"""
        try:
            return list(build().execute())
        except redis.exceptions.NoScriptError:
            self._redis.script_load(script.script)
            return list(build().execute())

    def _call(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One EVALSHA of `script`, loading it first if Redis does not have it (a restarted or
        failed-over Redis): what calling the `Script` does, without what that call redoes every
        time (an import, a check whether the client is a pipeline, the arguments copied into a
        tuple twice), on every flow-control call of every job."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return self._redis.execute_command(*command)  # type: ignore[no-untyped-call]
        except redis.exceptions.NoScriptError:
            self._redis.script_load(script.script)
            return self._redis.execute_command(*command)  # type: ignore[no-untyped-call]

    def admit(
        self, integration_id: str, max_jobs: int, lease_s: float, *, claimed: bool = False
    ) -> Admission:
        mode = "claim" if claimed else "wake"
        return self._admit_after(integration_id, max_jobs, lease_s, [mode, *_NO_PRELUDE])

    def submit(
        self,
        integration_id: str,
        job_ids: Sequence[str],
        max_jobs: int,
        lease_s: float,
        *,
        delay_s: float = 0.0,
        ahead: bool = False,
    ) -> Admission:
        """One round trip: admit.lua puts the jobs in the backlog and admits in the same step,
        and the integration joins the known set in the same pipeline."""
        delay = "ahead" if ahead else _us(max(0.0, delay_s))
        prelude = ["wake", *_prelude("", [(job_id, delay) for job_id in job_ids], {})]
        keys = _admit_keys(integration_id)

        def build() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            pipe.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", self._admit.sha, len(keys), *keys, max_jobs, _us(lease_s), *prelude
            )
            pipe.sadd(KNOWN_INTEGRATIONS, integration_id)
            return pipe

        return _admission(self._execute_with_scripts(build, self._admit)[0])

    def finish(
        self,
        integration_id: str,
        member: str,
        max_jobs: int,
        lease_s: float,
        *,
        requeue: Sequence[tuple[str, float]] = (),
        pms_headers: Mapping[str, str] | None = None,
    ) -> Admission:
        """One round trip: admit.lua releases `member`, enqueues `requeue` (job id, delay s),
        stores the PMS's limit headers and admits, in one atomic step."""
        seen = {k: v for k, v in (pms_headers or {}).items() if k.lower() in PMS_LIMIT_HEADERS}
        jobs = [(job_id, _us(max(0.0, delay_s))) for job_id, delay_s in requeue]
        prelude = ["wake", *_prelude(member, jobs, seen)]
        return self._admit_after(integration_id, max_jobs, lease_s, prelude)

    def _admit_after(
        self, integration_id: str, max_jobs: int, lease_s: float, prelude: list[Any]
    ) -> Admission:
        raw = self._call(
            self._admit, _admit_keys(integration_id), [max_jobs, _us(lease_s), *prelude]
        )
        return _admission(raw)

    def release(self, integration_id: str, member: str) -> int:
        keys = IntegrationKeys(integration_id)
        return int(self._call(self._release, [keys.leases, keys.backlog], [member]))

    def hold(
        self,
        integration_id: str,
        job_id: str,
        delivery: int,
        lease_s: float,
        pace_first: bool = False,
    ) -> Held:
        keys = IntegrationKeys(integration_id)
        script_keys = [keys.leases, keys.limits]
        if pace_first:
            script_keys += [keys.request_tat, keys.paused_until]
        raw = self._call(self._hold, script_keys, [job_id, delivery, _us(lease_s)])
        slot = (int(_text(raw[2])), int(_text(raw[3]))) if len(raw) > 2 else None
        return Held(bool(int(raw[0])), int(_text(raw[1])), slot)

    def renew(self, integration_id: str, job_id: str, delivery: int, lease_s: float) -> Held:
        keys = IntegrationKeys(integration_id)
        member = claim_member(job_id, delivery)
        held, now_us = self._call(self._renew, [keys.leases], [member, _us(lease_s)])
        return Held(bool(int(held)), int(_text(now_us)))

    def reclaim(self, integration_id: str, job_id: str, delivery: int) -> bool:
        keys = IntegrationKeys(integration_id)
        reclaimed, _now = self._call(self._reclaim, [keys.leases], [claim_member(job_id, delivery)])
        return bool(int(reclaimed))

    def pace(self, integration_id: str, job_id: str, delivery: int) -> Paced:
        keys = IntegrationKeys(integration_id)
        raw = self._call(
            self._pace,
            [keys.request_tat, keys.paused_until, keys.limits, keys.leases],
            [claim_member(job_id, delivery)],
        )
        decision = _PACE_STATES[int(raw[0])]
        slot = (int(_text(raw[2])), int(_text(raw[3]))) if len(raw) > 2 else None
        return Paced(decision, int(_text(raw[1])) / 1_000_000, slot)

    def give_back(self, integration_id: str, slot: tuple[int, int]) -> bool:
        granted_us, next_us = slot
        keys = IntegrationKeys(integration_id)
        return bool(int(self._call(self._give_back, [keys.request_tat], [next_us, granted_us])))

    def admission_live(self, integration_id: str, job_id: str) -> bool:
        expiry = self._redis.zscore(IntegrationKeys(integration_id).leases, job_id)
        return expiry is not None and int(expiry) > self.now_us()

    def enqueue_orphan(self, integration_id: str, job_id: str) -> bool:
        keys = IntegrationKeys(integration_id)
        added = bool(int(self._call(self._enqueue_orphan, [keys.backlog, keys.leases], [job_id])))
        if added:
            self._redis.sadd(KNOWN_INTEGRATIONS, integration_id)
        return added

    def now_us(self) -> int:
        seconds, micros = self._redis.time()
        return int(seconds) * 1_000_000 + int(micros)

    def repair_ready(self) -> int:
        """Known integrations whose backlog is not empty but which are missing from the ready
        set (lost with a Redis node, say) are put back, due at their backlog's head.

        Not atomic across keys (the ready set lives in its own cluster slot), and it need not
        be: an entry is only ever added (NX), never moved later, so a racing dispatcher's
        reschedule still wins."""
        known = self.known_integrations()
        if not known:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for integration_id in known:
            pipe.zrange(IntegrationKeys(integration_id).backlog, 0, 0, withscores=True)
            pipe.zscore(READY, integration_id)
        answers = pipe.execute()
        missing: dict[Any, Any] = {}
        for n, integration_id in enumerate(known):
            head, ready = answers[2 * n], answers[2 * n + 1]
            if head and ready is None:
                missing[integration_id] = int(head[0][1])
        if missing:
            self._redis.zadd(READY, missing, nx=True)
        return len(missing)

    def pause(self, integration_id: str, seconds: float) -> int:
        keys = IntegrationKeys(integration_id)
        until_us = int(_text(self._call(self._pause, [keys.paused_until], [_us(seconds)])))
        self._redis.zadd(READY, {integration_id: until_us}, gt=True, xx=True)
        return until_us

    def claim_due(self, max_integrations: int, claim_s: float) -> DueIntegrations:
        raw = self._call(self._claim_due, [READY], [max_integrations, _us(claim_s)])
        next_us = int(_text(raw[2]))
        return DueIntegrations(
            now_us=int(_text(raw[0])),
            claim_us=int(_text(raw[1])),
            next_us=None if next_us < 0 else next_us,
            integration_ids=[_text(i) for i in raw[3:]],
        )

    def reschedule(self, integration_id: str, claim_us: int, next_us: int | None) -> None:
        self._call(
            self._reschedule,
            [READY],
            [integration_id, claim_us, -1 if next_us is None else next_us],
        )

    def record_pms_limits(self, integration_id: str, headers: dict[str, str]) -> None:
        seen: dict[Any, Any] = {k: v for k, v in headers.items() if k.lower() in PMS_LIMIT_HEADERS}
        if seen:
            self._redis.hset(IntegrationKeys(integration_id).pms_limits, mapping=seen)

    def usage(self, integration_id: str) -> Usage:
        keys = IntegrationKeys(integration_id)
        now_s, now_frac_us = self._redis.time()
        now_us = now_s * 1_000_000 + now_frac_us
        pipe = self._redis.pipeline(transaction=False)
        pipe.zcount(keys.leases, now_us, "+inf")
        pipe.zcard(keys.backlog)
        pipe.zscore(READY, integration_id)
        pipe.get(keys.paused_until)
        pipe.hgetall(keys.limits)
        pipe.hgetall(keys.pms_limits)
        in_flight, backlog, ready, paused, limits, reported = pipe.execute()
        paused_us = int(_text(paused)) if paused else None
        return Usage(
            in_flight=int(in_flight),
            backlog=int(backlog),
            next_admission_us=int(ready) if ready is not None and backlog else None,
            paused_until_us=paused_us if paused_us and paused_us > now_us else None,
            limits=_limits_of(limits) if limits else None,
            pms_reported={_text(k): _text(v) for k, v in reported.items()},
            now_us=now_us,
        )

    def in_backlog(self, integration_id: str, job_ids: Sequence[str]) -> list[bool]:
        key = IntegrationKeys(integration_id).backlog
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.zscore(key, job_id)
        return [score is not None for score in pipe.execute()]


#: admit.lua's ARGV[4..] when it has nothing to do before admitting.
_NO_PRELUDE = ["", 0]


def _prelude(
    member: str, jobs: Sequence[tuple[str, int | str]], headers: Mapping[str, str]
) -> list[Any]:
    """admit.lua's ARGV[4..]: the member to release, the jobs to enqueue, the headers."""
    args: list[Any] = [member, len(jobs)]
    for job_id, delay in jobs:
        args += [job_id, delay]
    for name, value in headers.items():
        args += [name, value]
    return args


@functools.lru_cache(maxsize=ADMIT_KEYS_CACHED)
def _admit_keys(integration_id: str) -> tuple[str, ...]:
    """admit.lua's KEYS of an integration, made once per integration while it stays among
    the most recently admitted: every submit and finish of a job passes them."""
    keys = IntegrationKeys(integration_id)
    return (
        keys.backlog,
        keys.leases,
        keys.admit_tat,
        keys.paused_until,
        keys.limits,
        keys.pms_limits,
        keys.wake_at,
    )


def _admission(raw: Any) -> Admission:
    status, next_us, wake = _text(raw[0]), int(_text(raw[1])), bool(int(raw[2]))
    job_ids = tuple(_text(j) for j in raw[3:])
    return Admission(status, None if next_us < 0 else next_us, job_ids, wake)


def _limits_of(stored: dict[Any, Any]) -> Limits:
    """The limits hash as `Limits`; fields an older version wrote and no longer uses are
    ignored."""
    values = {_text(k): int(_text(v)) for k, v in stored.items()}
    return Limits(**{name: values[name] for name in Limits.__dataclass_fields__ if name in values})
