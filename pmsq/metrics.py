"""Prometheus metrics, cluster-wide.

Workers, dispatchers and the API record events in memory and add them to Redis hashes in the
background, and any process exposes the whole cluster's figures: the API at `/metrics`, a
worker on `PMSQ_WORKER_METRICS_PORT`. No per-process registries to aggregate, no multiprocess
directory, and a scrape of any one endpoint sees every host. Live gauges (backlog, jobs in
flight) are read from flow control at scrape time (`pmsq.workers.flow.gauges`).

Recording costs no Redis round trip: a `MetricsRecorder` adds to in-memory deltas, and one
flusher thread per process sends each Redis client's deltas in one pipelined round trip at
most every `flush_interval_s` (`PMSQ_METRICS_FLUSH_S`), and only when something was recorded
(an idle process sends nothing). What a process recorded is therefore in Redis within about
one interval. `flush_metrics()` sends everything pending now; it runs at interpreter exit
(`atexit`), and a process that ends without running `atexit` handlers (a Celery prefork pool
process) calls it on its way out, so a clean exit loses nothing. A process killed outright
(SIGKILL, OOM) loses what it recorded in its last interval. A flush that fails (Redis down)
keeps its deltas for the next one; if a connection breaks after Redis applied part of a
pipeline, that part may be counted twice.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

#: HASH "<metric>|<label>=<value>,..." -> count. No expiry (counters are monotonic).
COUNTERS_KEY = "pmsq:metrics:counters"
#: HASH "<histogram>|<bucket upper bound>" -> count, plus "<histogram>|sum" and "|count".
HISTOGRAMS_KEY = "pmsq:metrics:histograms"
#: Upper bounds (seconds) of the latency histograms' buckets.
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, math.inf)
#: Longest time a recorded event waits in memory before it is sent to Redis, unless the
#: constructor is told otherwise (processes pass `PMSQ_METRICS_FLUSH_S`).
DEFAULT_FLUSH_INTERVAL_S = 1.0

COUNTERS = {
    "pmsq_admissions": ("Jobs admitted by flow control", ("integration_id",)),
    "pmsq_throttled_admissions": (
        "Admission calls that left jobs waiting (rate, concurrency or pause)",
        ("integration_id", "reason"),
    ),
    "pmsq_pms_429": ("429 answers from the PMS", ("integration_id",)),
    "pmsq_job_outcomes": ("Job attempts by outcome", ("integration_id", "outcome")),
    "pmsq_sync_outcomes": ("Finished syncs by status", ("integration_id", "status")),
    "pmsq_poison_jobs": (
        "Jobs failed as poison: delivered PMSQ_MAX_DELIVERIES times without an outcome",
        ("integration_id",),
    ),
    "pmsq_beat_ticks": ("Ticks of the beat leader (the one beat that fires syncs)", ()),
    "pmsq_syncs_fired": ("Syncs the beat leader started", ()),
    "pmsq_webhook_attempts": (
        "Webhook delivery attempts by outcome (success; retry: failed, tried again later; "
        "failure: failed for good)",
        ("outcome",),
    ),
}
HISTOGRAMS = {
    "pmsq_job_duration_seconds": "Time a job spent running (claim to outcome)",
    "pmsq_write_latency_seconds": "Time from a write's acceptance to its final status",
}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def counter_field(name: str, labels: dict[str, str]) -> str:
    """The field of `COUNTERS_KEY` that counts `name` with these labels."""
    return name + "|" + ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _parse(field: str) -> tuple[str, dict[str, str]]:
    name, _, rest = field.partition("|")
    labels = dict(part.split("=", 1) for part in rest.split(",") if part)
    return name, labels


@dataclass
class _Deltas:
    """What was recorded since the last flush: increments of the two hashes' fields."""

    #: COUNTERS_KEY field -> increment.
    counters: dict[str, int] = field(default_factory=dict)
    #: HISTOGRAMS_KEY bucket and "|count" field -> increment.
    buckets: dict[str, int] = field(default_factory=dict)
    #: HISTOGRAMS_KEY "|sum" field -> increment (seconds).
    sums_s: dict[str, float] = field(default_factory=dict)

    def add(self, other: _Deltas) -> None:
        for key, amount in other.counters.items():
            self.counters[key] = self.counters.get(key, 0) + amount
        for key, amount in other.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0) + amount
        for key, seconds in other.sums_s.items():
            self.sums_s[key] = self.sums_s.get(key, 0.0) + seconds

    def send(self, client: redis.Redis) -> None:
        """One pipelined round trip (Redis Cluster: one per node holding either hash)."""
        pipe = client.pipeline(transaction=False)
        for key, amount in self.counters.items():
            pipe.hincrby(COUNTERS_KEY, key, amount)
        for key, amount in self.buckets.items():
            pipe.hincrby(HISTOGRAMS_KEY, key, amount)
        for key, seconds in self.sums_s.items():
            pipe.hincrbyfloat(HISTOGRAMS_KEY, key, seconds)
        pipe.execute()


class MetricsRecorder:
    """Records events in this process's memory; the process's flusher sends them to Redis.

    Thread-safe, and costs no I/O: Redis sees an event within about `flush_interval_s`
    (see the module docstring for what a crash loses). Recorders that share a Redis client
    are flushed together, in one round trip. A recorder may be short-lived: what it recorded
    is sent even after the caller dropped it."""

    def __init__(
        self, client: redis.Redis, *, flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S
    ) -> None:
        self._redis = client
        self._flush_interval_s = flush_interval_s
        #: Guarded by the flusher's lock; non-empty only while enlisted with it.
        self._deltas = _Deltas()

    def count(self, name: str, amount: int = 1, **labels: str) -> None:
        if not amount:
            return
        key = counter_field(name, labels)
        with _FLUSHER.lock:
            counters = self._deltas.counters
            counters[key] = counters.get(key, 0) + amount
            _FLUSHER.enlist(self)

    def observe(self, name: str, seconds: float) -> None:
        bound = next(b for b in LATENCY_BUCKETS_S if seconds <= b)
        bucket, total, sum_key = f"{name}|{bound}", f"{name}|count", f"{name}|sum"
        with _FLUSHER.lock:
            buckets, sums_s = self._deltas.buckets, self._deltas.sums_s
            buckets[bucket] = buckets.get(bucket, 0) + 1
            buckets[total] = buckets.get(total, 0) + 1
            sums_s[sum_key] = sums_s.get(sum_key, 0.0) + seconds
            _FLUSHER.enlist(self)

    def flush(self) -> None:
        """Send what this recorder and every recorder sharing its client hold, now.

        Returns once everything recorded before the call is in Redis (a send the flusher
        thread has under way included). Raises `redis.RedisError` if Redis refused it; the
        deltas are kept for the next flush.
        """
        _FLUSHER.flush(lambda recorder: recorder._redis is self._redis, reraise=True)


class NullMetrics(MetricsRecorder):
    """Records nothing: for tests and tools that run jobs without Redis metrics."""

    def __init__(self) -> None:
        pass

    def count(self, name: str, amount: int = 1, **labels: str) -> None:
        return None

    def observe(self, name: str, seconds: float) -> None:
        return None

    def flush(self) -> None:
        return None


class _Flusher:
    """This process's recorders with unsent deltas, and the daemon thread that sends them.

    One per process, because a process is what a crash loses and what `atexit` covers. The
    thread starts on the first event a process records (a prefork pool child forks without
    it); a fork also empties the child's copies of deltas its parent still has to send."""

    def __init__(self) -> None:
        #: Guards every recorder's deltas and `_due_s`; held for no I/O.
        self.lock = threading.Lock()
        self._wake = threading.Condition(self.lock)
        #: Held while deltas taken out are on their way to Redis (taken before `lock`), so a
        #: flush returns only once everything recorded before it began is in Redis.
        self._sending = threading.Lock()
        #: Recorder -> monotonic time its deltas are due (first event + its interval).
        self._due_s: dict[MetricsRecorder, float] = {}
        self._thread: threading.Thread | None = None

    def enlist(self, recorder: MetricsRecorder) -> None:
        """Called with `lock` held, after `recorder` recorded an event."""
        if recorder in self._due_s:
            return
        self._due_s[recorder] = time.monotonic() + recorder._flush_interval_s
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="pmsq-metrics", daemon=True)
            self._thread.start()
        self._wake.notify()

    def flush(
        self, which: Callable[[MetricsRecorder], bool] | None = None, *, reraise: bool = False
    ) -> None:
        """Send the deltas of the enlisted recorders `which` selects (all by default)."""
        with self._sending:
            with self.lock:
                batches = self._take([r for r in self._due_s if which is None or which(r)])
            self._send(batches, reraise=reraise)

    def _run(self) -> None:
        while True:
            self._wait_until_due()
            with self._sending:
                with self.lock:
                    now_s = time.monotonic()
                    due = [r for r, due_s in self._due_s.items() if due_s <= now_s]
                    # Recorders sharing a client with a due one go along: the trip is paid.
                    clients = {id(r._redis) for r in due}
                    batches = self._take([r for r in self._due_s if id(r._redis) in clients])
                self._send(batches, reraise=False)

    def _wait_until_due(self) -> None:
        with self.lock:
            while True:
                now_s = time.monotonic()
                first_due_s = min(self._due_s.values(), default=None)
                if first_due_s is not None and first_due_s <= now_s:
                    return
                self._wake.wait(3600 if first_due_s is None else first_due_s - now_s)

    def _take(self, recorders: list[MetricsRecorder]) -> list[_Batch]:
        """With `lock` held: move the recorders' deltas out, merged per client."""
        batches: dict[int, _Batch] = {}
        for recorder in recorders:
            del self._due_s[recorder]
            batch = batches.get(id(recorder._redis))
            if batch is None:
                batch = batches[id(recorder._redis)] = _Batch(recorder)
            batch.deltas.add(recorder._deltas)
            recorder._deltas = _Deltas()
        return list(batches.values())

    def _send(self, batches: list[_Batch], *, reraise: bool) -> None:
        failure: Exception | None = None
        for batch in batches:
            try:
                batch.deltas.send(batch.recorder._redis)
            except Exception as exc:
                logger.warning("metrics flush failed; kept for the next one: %s", exc)
                with self.lock:
                    batch.recorder._deltas.add(batch.deltas)
                    self.enlist(batch.recorder)
                failure = failure or exc
        if reraise and failure is not None:
            raise failure

    def before_fork(self) -> None:
        """No thread is halfway through changing deltas when the process is copied."""
        self.lock.acquire()

    def after_fork_in_parent(self) -> None:
        self.lock.release()

    def after_fork_in_child(self) -> None:
        """The parent sends what was recorded before the fork; the child starts empty (and
        with fresh locks: another thread of the parent may have held them)."""
        self.lock = threading.Lock()
        self._wake = threading.Condition(self.lock)
        self._sending = threading.Lock()
        for recorder in self._due_s:
            recorder._deltas = _Deltas()
        self._due_s = {}
        self._thread = None


@dataclass
class _Batch:
    """Deltas of recorders sharing one client, kept on `recorder` again if sending fails."""

    recorder: MetricsRecorder
    deltas: _Deltas = field(default_factory=_Deltas)


_FLUSHER = _Flusher()
os.register_at_fork(
    before=_FLUSHER.before_fork,
    after_in_parent=_FLUSHER.after_fork_in_parent,
    after_in_child=_FLUSHER.after_fork_in_child,
)


def flush_metrics() -> None:
    """Send everything this process recorded and has not sent yet, now (a process's last act,
    tests, the CLI). A failure is logged and the deltas kept, so this never raises."""
    _FLUSHER.flush()


atexit.register(flush_metrics)


class ClusterCollector(Collector):
    """Exposes the Redis-held counters and histograms (flow control's live gauges are
    `pmsq.workers.flow.gauges.FlowGauges`, registered next to it)."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def collect(self) -> Iterator[Any]:
        yield from self._counters()
        yield from self._histograms()

    def _counters(self) -> Iterable[CounterMetricFamily]:
        families = {
            name: CounterMetricFamily(name, doc, labels=list(labels))
            for name, (doc, labels) in COUNTERS.items()
        }
        for raw, value in self._redis.hgetall(COUNTERS_KEY).items():
            name, labels = _parse(_text(raw))
            family = families.get(name)
            if family is not None:
                family.add_metric([labels.get(k, "") for k in COUNTERS[name][1]], int(value))
        return families.values()

    def _histograms(self) -> Iterable[HistogramMetricFamily]:
        raw = {_text(k): float(v) for k, v in self._redis.hgetall(HISTOGRAMS_KEY).items()}
        for name, doc in HISTOGRAMS.items():
            cumulative, buckets = 0.0, []
            for bound in LATENCY_BUCKETS_S:
                cumulative += raw.get(f"{name}|{bound}", 0.0)
                buckets.append(("+Inf" if math.isinf(bound) else str(bound), cumulative))
            family = HistogramMetricFamily(name, doc)
            family.add_metric([], buckets, sum_value=raw.get(f"{name}|sum", 0.0))
            yield family
