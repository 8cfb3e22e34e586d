"""pmsq's beat tick against Celery's PersistentScheduler and celery-redbeat, side by side.

`python -m bench.schedule [--sizes 1000,10000,100000] [--database sqlite|postgresql]` prints one
table; nothing is asserted. For each size N, in one run:

- **pmsq**: N integrations (70% default cadences, 30% custom WEEK_BASED schedules in five time
  zones) with their `sync_schedules` rows, bulk-inserted with SQLAlchemy core into a fresh
  database, every `next_run_at` computed by `next_sync_time` at least an hour ahead. Measured:
  `SyncFirer.fire_due()` (the tick's work; a real `Dispatcher` with `RedisFlowControl` on a real
  redis-server and a stub publisher) and `DatabaseScheduler.tick()` itself (the leader lease
  included, its real `CeleryPublisher` sending to the same redis-server), each (a) with nothing
  due and (b) with exactly `DUE` due: before each measured tick, `DUE` schedules that have not
  fired yet get a `next_run_at` in the past, so every due tick starts fresh syncs (fire keys,
  executions, jobs, admission and publish included) for integrations with free slots.
- **PersistentScheduler** (Celery's default): N entries in its shelve file (12-hour `schedule`s
  and one `crontab` in every 1,000, all run just now), nothing due; `tick()` timed.
- **RedBeatScheduler** (celery-redbeat, bench only): N `RedBeatSchedulerEntry`s of the same
  shapes saved to another database of the same redis-server, nothing due, its Redis lock held;
  `tick()` timed (it extends the lock, as pmsq's tick renews its lease), in turn with pmsq's
  empty `DatabaseScheduler.tick()` (the first of the pair alternates), so both see the same load.

Figures are medians of `EMPTY_REPEATS` empty ticks and `DUE_REPEATS` due ticks, after one warm-up
tick. Both peers run on a throwaway Celery app each (not `pmsq.workers.app`). Everything started
here is stopped on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import redis
from celery import Celery
from celery.beat import PersistentScheduler
from celery.schedules import crontab, schedule
from sqlalchemy import Engine, func, insert, select, update

from pmsq.models.account import Account
from pmsq.models.base import new_id
from pmsq.models.db import make_engine, make_session_factory
from pmsq.models.integration import Integration
from pmsq.models.migrate import upgrade
from pmsq.models.sync import SyncExecution, SyncSchedule
from pmsq.scheduler.beat import DatabaseScheduler
from pmsq.scheduler.cadence import next_sync_time
from pmsq.scheduler.changes import signal
from pmsq.scheduler.firing import SyncFirer
from pmsq.scheduler.leader import LEADER_KEY
from pmsq.scheduler.schedules import ACTIVE, cadence_signature
from pmsq.settings import get_settings
from pmsq.workers.flow.keys import IntegrationKeys
from pmsq.workers.flow.redis_backend import RedisFlowControl

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
from support.services import PostgresServer, RedisServer  # noqa: E402

#: Redis databases, one per system so none sees another's keys.
PMSQ_DB, BROKER_DB, REDBEAT_DB = 1, 2, 3
DEFAULT_SIZES = (1_000, 10_000, 100_000)
#: Measured ticks per figure (the median is reported).
EMPTY_REPEATS = 50
DUE_REPEATS = 5
#: Schedules due in a "due" tick.
DUE = 100
#: Every schedule's first run is at least this far ahead, so no empty tick finds one due.
HORIZON = timedelta(hours=1)
#: Integrations per account.
PER_ACCOUNT = 100
#: Rows per bulk INSERT statement.
INSERT_CHUNK = 5_000
#: Share of integrations with a custom WEEK_BASED schedule (out of 10).
CUSTOM_TENTHS = 3
#: Default cadences (sync_frequency, sync_cadence), used in turn.
DEFAULT_CADENCES = ((12, "HOUR"), (6, "HOUR"), (2, "HOUR"), (1, "DAY"), (1, "WEEK"), (1, "MONTH"))
TIME_ZONES = (
    "America/New_York",
    "America/Los_Angeles",
    "Europe/London",
    "Australia/Sydney",
    "Asia/Tokyo",
)
#: The peers' entries: every 12 hours, and a daily crontab in every `CRONTAB_EVERY`.
PEER_EVERY = timedelta(hours=12)
CRONTAB_EVERY = 1_000
#: Task name the peers' entries would send (never sent: nothing is due).
PEER_TASK = "bench.sync"


# -- data -------------------------------------------------------------------------------------


def slot(start: str, end: str, frequency: int, cadence: str) -> dict[str, Any]:
    return {"start": start, "end": end, "sync_frequency": frequency, "sync_cadence": cadence}


def custom_schedules() -> list[dict[str, Any]]:
    """WEEK_BASED schedule shapes, one per time zone and shape."""
    business = {"slots": [slot("09:00", "17:00", 30, "MINUTE")]}
    weekend = {"slots": [slot("03:00", "04:00", 1, "DAY")]}
    all_day = {"slots": [slot("00:00", "24:00", 4, "HOUR")]}
    shapes = [
        {day: business for day in ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY")}
        | {"SATURDAY": weekend, "SUNDAY": weekend},
        {"MONDAY": all_day, "WEDNESDAY": all_day, "FRIDAY": business},
    ]
    return [
        {"type": "WEEK_BASED", "timezone": zone, "interval": shape}
        for zone, shape in itertools.product(TIME_ZONES, shapes)
    ]


@dataclass(frozen=True)
class Cadence:
    """One integration's cadence fields, as the API stores them."""

    sync_frequency: int
    sync_cadence: str
    use_custom_sync_schedule: bool
    custom_sync_schedule: dict[str, Any] | None


def cadences(n: int) -> list[Cadence]:
    """N cadences: `CUSTOM_TENTHS` in 10 custom, the rest default ones in turn."""
    customs = custom_schedules()
    out = []
    for i in range(n):
        if i % 10 < CUSTOM_TENTHS:
            out.append(Cadence(12, "HOUR", True, customs[i % len(customs)]))
        else:
            frequency, unit = DEFAULT_CADENCES[i % len(DEFAULT_CADENCES)]
            out.append(Cadence(frequency, unit, False, None))
    return out


def populate(engine: Engine, n: int, start: datetime) -> list[tuple[str, str]]:
    """Insert N integrations with their schedules; returns (schedule id, integration id)s.

    Default cadences get anchors spread over the past day so their due times spread too; every
    `next_run_at` is `next_sync_time(after=start + HORIZON)`, as `refresh_schedule` computes it
    (which would use `after=start`).
    """
    account_ids = [new_id() for _ in range((n + PER_ACCOUNT - 1) // PER_ACCOUNT)]
    accounts = [
        {"id": a, "name": f"bench-{i}", "created_at": start} for i, a in enumerate(account_ids)
    ]
    integrations: list[dict[str, Any]] = []
    schedules: list[dict[str, Any]] = []
    custom_due: dict[str, datetime | None] = {}
    for i, cadence in enumerate(cadences(n)):
        integration_id = new_id()
        integrations.append(
            {
                "id": integration_id,
                "account_id": account_ids[i // PER_ACCOUNT],
                "name": f"integration-{i}",
                "integration_vendor": "SANDBOX",
                "sync_frequency": cadence.sync_frequency,
                "sync_cadence": cadence.sync_cadence,
                "use_custom_sync_schedule": cadence.use_custom_sync_schedule,
                "custom_sync_schedule": cadence.custom_sync_schedule,
                "created_at": start,
                "updated_at": start,
            }
        )
        anchor = start - timedelta(seconds=(i * 37) % 86_400)
        if cadence.use_custom_sync_schedule:
            # A custom schedule ignores the anchor: compute each shape once.
            key = repr(cadence.custom_sync_schedule)
            if key not in custom_due:
                custom_due[key] = next_due_of(cadence, anchor, start + HORIZON)
            next_run_at = custom_due[key]
        else:
            next_run_at = next_due_of(cadence, anchor, start + HORIZON)
        signature = cadence_signature(SimpleNamespace(**cadence.__dict__))  # type: ignore[arg-type]
        schedules.append(
            {
                "id": new_id(),
                "integration_id": integration_id,
                "job_type": "SYNC",
                "status": ACTIVE,
                "anchor_at": anchor,
                "next_run_at": next_run_at,
                "last_run_at": None,
                "parameters": {"cadence": signature},
                "created_at": start,
                "updated_at": start,
            }
        )
    with engine.begin() as connection:
        for model, rows in (
            (Account, accounts),
            (Integration, integrations),
            (SyncSchedule, schedules),
        ):
            for offset in range(0, len(rows), INSERT_CHUNK):
                connection.execute(insert(model), rows[offset : offset + INSERT_CHUNK])
    return [(row["id"], row["integration_id"]) for row in schedules]


def next_due_of(cadence: Cadence, anchor: datetime, after: datetime) -> datetime | None:
    return next_sync_time(
        sync_frequency=cadence.sync_frequency,
        sync_cadence=cadence.sync_cadence,
        use_custom_sync_schedule=cadence.use_custom_sync_schedule,
        custom_sync_schedule=cadence.custom_sync_schedule,
        anchor=anchor,
        after=after,
    )


def make_due(
    engine: Engine, client: redis.Redis, schedule_ids: Sequence[str], now: datetime
) -> None:
    """Move these schedules' next run into the past (a different instant each, as if missed),
    and signal the change after the commit, as the API does."""
    with engine.begin() as connection:
        for k, schedule_id in enumerate(schedule_ids):
            connection.execute(
                update(SyncSchedule)
                .where(SyncSchedule.id == schedule_id)
                .values(next_run_at=now - timedelta(minutes=1, seconds=k))
            )
    signal(client)


# -- timing -----------------------------------------------------------------------------------


def timed_ms(
    tick: Callable[[], Any],
    repeats: int,
    before: Callable[[int], None] | None = None,
    check: Callable[[Any], None] | None = None,
) -> list[float]:
    """Run `tick` `repeats` times (`before(r)` untimed ahead of each); milliseconds each."""
    gc.collect()
    out = []
    for r in range(repeats):
        if before is not None:
            before(r)
        began = time.perf_counter()
        result = tick()
        out.append((time.perf_counter() - began) * 1000)
        if check is not None:
            check(result)
    return out


def timed_pair_ms(
    first: Callable[[], Any], second: Callable[[], Any], repeats: int
) -> tuple[list[float], list[float]]:
    """Time two ticks in turn, `repeats` times each (which goes first alternates)."""
    gc.collect()
    out: tuple[list[float], list[float]] = ([], [])
    for r in range(repeats):
        order = ((0, first), (1, second)) if r % 2 == 0 else ((1, second), (0, first))
        for index, tick in order:
            began = time.perf_counter()
            tick()
            out[index].append((time.perf_counter() - began) * 1000)
    return out


@dataclass
class Row:
    n: int
    fire_empty_ms: list[float]
    tick_empty_ms: list[float]
    tick_signalled_ms: list[float]
    fire_due_ms: list[float]
    tick_due_ms: list[float]
    persistent_ms: list[float]
    redbeat_ms: list[float]
    fired: list[int]
    setup_s: dict[str, float]


# -- pmsq -------------------------------------------------------------------------------------


class Databases:
    """A fresh database per size: a SQLite file, or a database of one throwaway PostgreSQL."""

    def __init__(self, kind: str, workdir: Path, resources: ExitStack) -> None:
        self._kind = kind
        self._workdir = workdir
        self._resources = resources
        self._postgres: PostgresServer | None = None

    def new(self, name: str) -> str:
        if self._kind == "sqlite":
            url = f"sqlite:///{self._workdir / name}.db"
        else:
            if self._postgres is None:
                self._postgres = self._resources.enter_context(PostgresServer())
            url = self._postgres.create_database(name)
        upgrade(url)
        return url


@contextmanager
def pmsq_environment(database_url: str, redis_url: str) -> Iterator[None]:
    """`DatabaseScheduler` reads `get_settings()`: point it at the bench's services."""
    saved = {k: os.environ.get(k) for k in ("PMSQ_DATABASE_URL", "PMSQ_REDIS_URL")}
    os.environ["PMSQ_DATABASE_URL"] = database_url
    os.environ["PMSQ_REDIS_URL"] = redis_url
    get_settings.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def measure_pmsq(
    database_url: str,
    redis_server: RedisServer,
    n: int,
    report: Callable[[str], None],
    peer_tick: Callable[[], Any],
) -> tuple[dict[str, list[float]], list[int], dict[str, float]]:
    """pmsq's figures; its empty ticks alternate with `peer_tick`'s (redbeat's), so a load that
    changes during the run weighs on both alike ("peer_empty")."""
    redis_url = db_url(redis_server, PMSQ_DB)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    redis.Redis.from_url(db_url(redis_server, BROKER_DB)).flushdb()
    engine = make_engine(database_url)
    setup: dict[str, float] = {}
    began = time.perf_counter()
    start = datetime.now(UTC)
    schedules = populate(engine, n, start)
    setup["insert_s"] = time.perf_counter() - began
    report(f"  pmsq: {n:,} integrations inserted in {setup['insert_s']:.1f} s")
    session_factory = make_session_factory(engine)
    firer = SyncFirer(session_factory, RedisFlowControl(client))
    # Each due tick fires schedules that never fired, so each sync finds its integration free.
    picked = random.Random(n).sample(schedules, 2 * DUE_REPEATS * DUE)
    pool = [schedule_id for schedule_id, _ in picked]
    fired: list[int] = []

    def due_batch(offset: int) -> Callable[[int], None]:
        def before(r: int) -> None:
            first = (offset + r) * DUE
            make_due(engine, client, pool[first : first + DUE], datetime.now(UTC))

        return before

    def expect_empty(result: Any) -> None:
        if result.fired or result.skipped:
            report(f"  WARNING: an empty tick fired {result.fired} (skipped {result.skipped})")

    def record(result: Any) -> None:
        fired.append(result.fired)

    figures: dict[str, list[float]] = {}
    firer.fire_due()  # warm-up: connections, compiled statements, flow-control scripts
    figures["fire_empty"] = timed_ms(firer.fire_due, EMPTY_REPEATS, check=expect_empty)
    figures["fire_due"] = timed_ms(firer.fire_due, DUE_REPEATS, due_batch(0), record)
    enqueued = queued_jobs(client, [integration_id for _, integration_id in picked])
    if enqueued != sum(fired):
        report(f"  WARNING: {sum(fired)} fired but {enqueued} enqueued")
    with pmsq_environment(database_url, redis_url), beat_app(redis_server) as app:
        scheduler = DatabaseScheduler(app)
        try:
            scheduler.tick()  # warm-up, and takes the leader lease
            if not client.exists(LEADER_KEY):
                report("  WARNING: DatabaseScheduler did not take the leader lease")
            figures["tick_empty"], figures["peer_empty"] = timed_pair_ms(
                scheduler.tick, peer_tick, EMPTY_REPEATS
            )
            # As if the API had just changed a schedule: the tick re-reads the job store.
            figures["tick_signalled"] = timed_ms(
                scheduler.tick, EMPTY_REPEATS, lambda _r: signal(client)
            )
            figures["tick_due"] = timed_ms(scheduler.tick, DUE_REPEATS, due_batch(DUE_REPEATS))
        finally:
            scheduler.close()
    with engine.connect() as connection:
        executions = connection.scalar(select(func.count()).select_from(SyncExecution))
    expected = 2 * DUE_REPEATS * DUE
    if executions != expected:
        report(f"  WARNING: {executions} sync executions, expected {expected}")
    engine.dispose()
    client.close()
    return figures, fired, setup


def queued_jobs(client: redis.Redis, integration_ids: Sequence[str]) -> int:
    """Jobs waiting in these integrations' backlogs (the firer enqueues what it starts)."""
    with client.pipeline(transaction=False) as pipe:
        for integration_id in integration_ids:
            pipe.zcard(IntegrationKeys(integration_id).backlog)
        return sum(pipe.execute())


@contextmanager
def beat_app(redis_server: RedisServer) -> Iterator[Celery]:
    """A throwaway Celery app whose broker is the bench's redis-server."""
    app = Celery("bench_schedule", broker=db_url(redis_server, BROKER_DB), set_as_current=False)
    app.conf.update(result_expires=None, beat_max_loop_interval=1, timezone="UTC")
    try:
        yield app
    finally:
        app.close()


# -- peers ------------------------------------------------------------------------------------


def peer_schedules(n: int, now: datetime) -> dict[str, dict[str, Any]]:
    """N beat entries as `beat_schedule` spells them; a daily crontab 12 hours from now."""
    far_hour = (now.hour + 12) % 24
    entries: dict[str, dict[str, Any]] = {}
    for i in range(n):
        every: Any = (
            crontab(minute=0, hour=far_hour)
            if i % CRONTAB_EVERY == 0
            else schedule(run_every=PEER_EVERY)
        )
        entries[f"sync-{i}"] = {"task": PEER_TASK, "schedule": every, "args": (i,)}
    return entries


def measure_persistent(n: int, workdir: Path, report: Callable[[str], None]) -> list[float]:
    app = Celery("bench_persistent", set_as_current=False)
    app.conf.update(result_expires=None, beat_max_loop_interval=1, timezone="UTC")
    app.conf.beat_schedule = peer_schedules(n, datetime.now(UTC))
    filename = str(workdir / f"celerybeat-schedule-{n}")
    began = time.perf_counter()
    scheduler = PersistentScheduler(app, schedule_filename=filename)
    report(f"  PersistentScheduler: {n:,} entries set up in {time.perf_counter() - began:.1f} s")
    try:
        held = len(scheduler.schedule)
        if held != n:
            report(f"  WARNING: PersistentScheduler holds {held} entries, expected {n}")
        wait_s = scheduler.tick()  # warm-up: builds the heap
        if wait_s <= 0:
            report("  WARNING: PersistentScheduler found an entry due")
        return timed_ms(scheduler.tick, EMPTY_REPEATS, check=lambda s: expect_wait(s, report))
    finally:
        scheduler.close()
        app.close()


@contextmanager
def redbeat_ticker(
    n: int, redis_server: RedisServer, report: Callable[[str], None]
) -> Iterator[Callable[[], Any]]:
    """A RedBeatScheduler holding N entries and its lock; yields its checked `tick`."""
    from redbeat.schedulers import (  # bench only: pip install celery-redbeat
        RedBeatScheduler,
        RedBeatSchedulerEntry,
        acquire_distributed_beat_lock,
        get_redis,
    )

    url = db_url(redis_server, REDBEAT_DB)
    redis.Redis.from_url(url).flushdb()
    app = Celery("bench_redbeat", set_as_current=False)
    app.conf.update(
        result_expires=None,
        beat_max_loop_interval=1,
        timezone="UTC",
        redbeat_redis_url=url,
        # Long enough to outlast pmsq's setup, which runs while this scheduler waits (the
        # lock's length does not change what extending it costs).
        redbeat_lock_timeout=3600,
    )
    now = datetime.now(UTC)
    began = time.perf_counter()
    scheduler = RedBeatScheduler(app)
    client = get_redis(app)
    for chunk in batched(peer_schedules(n, now).items(), INSERT_CHUNK):
        with client.pipeline(transaction=False) as pipe:
            for name, fields in chunk:
                entry = RedBeatSchedulerEntry(name, app=app, last_run_at=now, **fields)
                save_entry(pipe, entry)
            pipe.execute()
    held = client.zcard(app.redbeat_conf.schedule_key)
    report(f"  redbeat: {held:,} entries saved in {time.perf_counter() - began:.1f} s")
    # What `celery beat` does on start (the beat_init signal): take redbeat's lock.
    acquire_distributed_beat_lock(sender=SimpleNamespace(scheduler=scheduler))
    try:
        wait_s = scheduler.tick()
        if wait_s <= 0:
            report("  WARNING: redbeat found an entry due")

        def tick() -> None:
            expect_wait(scheduler.tick(), report)

        yield tick
    finally:
        scheduler.close()
        client.flushdb()
        client.close()
        app.close()


def save_entry(pipe: Any, entry: Any) -> None:
    """`RedBeatSchedulerEntry.save()`'s three commands, on a shared pipeline (bulk load)."""
    from redbeat.decoder import RedBeatJSONEncoder  # bench only: pip install celery-redbeat

    definition = {
        "name": entry.name,
        "task": entry.task,
        "args": entry.args,
        "kwargs": entry.kwargs,
        "options": entry.options,
        "schedule": entry.schedule,
        "enabled": entry.enabled,
    }
    meta = {"last_run_at": entry.last_run_at}
    pipe.hset(entry.key, "definition", json.dumps(definition, cls=RedBeatJSONEncoder))
    pipe.hsetnx(entry.key, "meta", json.dumps(meta, cls=RedBeatJSONEncoder))
    pipe.zadd(entry.app.redbeat_conf.schedule_key, {entry.key: entry.score})


def expect_wait(wait_s: float, report: Callable[[str], None]) -> None:
    if wait_s <= 0:
        report("  WARNING: a peer's empty tick found an entry due")


def batched(items: Any, size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def db_url(server: RedisServer, db: int) -> str:
    return str(server.url).rsplit("/", 1)[0] + f"/{db}"


# -- report -----------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report_table(rows: Sequence[Row], database: str) -> None:
    counts = f"{EMPTY_REPEATS} empty ticks, {DUE_REPEATS} with {DUE} due"
    print(f"\nBeat tick, median ms, {database}: {counts}")
    print(
        "(fire_due = SyncFirer.fire_due, tick = DatabaseScheduler.tick; 'signalled' = an empty\n"
        "tick right after a schedule-change signal, so it reads the job store)\n"
    )
    header = (
        "| N | pmsq fire_due empty | pmsq tick empty | pmsq tick empty, signalled | "
        "pmsq fire_due 100 due | pmsq tick 100 due | PersistentScheduler empty | "
        "redbeat empty | pmsq tick empty / redbeat |"
    )
    print(header)
    print("|" + "---:|" * 9)
    for row in rows:
        redbeat = median(row.redbeat_ms)
        print(
            f"| {row.n:,} | {median(row.fire_empty_ms):.2f} | {median(row.tick_empty_ms):.2f} | "
            f"{median(row.tick_signalled_ms):.2f} | "
            f"{median(row.fire_due_ms):.1f} | {median(row.tick_due_ms):.1f} | "
            f"{median(row.persistent_ms):.2f} | {redbeat:.2f} | "
            f"{median(row.tick_empty_ms) / redbeat:.2f} |"
        )
    print("\nSpread (min-max ms):")
    for row in rows:
        print(
            f"  N={row.n:,}: fire_due empty {spread(row.fire_empty_ms)}, tick empty "
            f"{spread(row.tick_empty_ms)}, signalled {spread(row.tick_signalled_ms)}, "
            f"fire_due due {spread(row.fire_due_ms)}, tick due "
            f"{spread(row.tick_due_ms)}, Persistent {spread(row.persistent_ms)}, redbeat "
            f"{spread(row.redbeat_ms)}; fired per due fire_due: {row.fired}"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(f"\nFlatness, N={last.n:,} / N={first.n:,} (1 = flat):")
        for label, attr in (
            ("pmsq fire_due empty", "fire_empty_ms"),
            ("pmsq tick empty", "tick_empty_ms"),
            ("pmsq tick empty, signalled", "tick_signalled_ms"),
            ("pmsq fire_due 100 due", "fire_due_ms"),
            ("PersistentScheduler empty", "persistent_ms"),
            ("redbeat empty", "redbeat_ms"),
        ):
            ratio = median(getattr(last, attr)) / median(getattr(first, attr))
            print(f"  {label}: {ratio:.2f}")


def spread(values: Sequence[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def load_average(label: str) -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every figure."""
    one, five, fifteen = os.getloadavg()
    return f"{label} (1/5/15 min): {one:.2f} {five:.2f} {fifteen:.2f}"


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.schedule", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(DEFAULT_SIZES),
        help="comma-separated integration counts (default 1000,10000,100000)",
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if min(args.sizes) < 2 * DUE_REPEATS * DUE:
        raise SystemExit(f"every size must be at least {2 * DUE_REPEATS * DUE}")
    print(
        f"bench.schedule on {platform.node()} ({os.cpu_count()} CPUs): "
        f"python {platform.python_version()}, database {args.database}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    print(load_average("load average before"))

    def report(line: str) -> None:
        print(line, flush=True)

    rows = []
    with ExitStack() as resources, tempfile.TemporaryDirectory(prefix="pmsq-bench-") as tmp:
        workdir = Path(tmp)
        redis_server = resources.enter_context(RedisServer())
        databases = Databases(args.database, workdir, resources)
        for n in args.sizes:
            report(f"N = {n:,}")
            url = databases.new(f"bench_schedule_{n}")
            with redbeat_ticker(n, redis_server, report) as redbeat_tick:
                figures, fired, setup = measure_pmsq(url, redis_server, n, report, redbeat_tick)
            persistent = measure_persistent(n, workdir, report)
            rows.append(
                Row(
                    n,
                    figures["fire_empty"],
                    figures["tick_empty"],
                    figures["tick_signalled"],
                    figures["fire_due"],
                    figures["tick_due"],
                    persistent,
                    figures["peer_empty"],
                    fired,
                    setup,
                )
            )
            with contextlib.suppress(OSError):
                for path in workdir.glob("*.db*"):
                    path.unlink()
    report_table(rows, args.database)
    print(f"\n{load_average('load average after')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
