"""Prometheus metrics, cluster-wide.

Workers, dispatchers and the API record events into Redis hashes (one pipelined round trip per
event batch), and any process exposes the whole cluster's figures: the API at `/metrics`, a
worker on `PMSQ_WORKER_METRICS_PORT`. No per-process registries to aggregate, no multiprocess
directory, and a scrape of any one endpoint sees every host. Live gauges (backlog, jobs in
flight) are read from flow control at scrape time (`pmsq.workers.flow.gauges`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

#: HASH "<metric>|<label>=<value>,..." -> count. No expiry (counters are monotonic).
COUNTERS_KEY = "pmsq:metrics:counters"
#: HASH "<histogram>|<bucket upper bound>" -> count, plus "<histogram>|sum" and "|count".
HISTOGRAMS_KEY = "pmsq:metrics:histograms"
#: Upper bounds (seconds) of the latency histograms' buckets.
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, math.inf)

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


class MetricsRecorder:
    """Records events; every method costs one pipelined Redis round trip."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def count(self, name: str, amount: int = 1, **labels: str) -> None:
        if amount:
            self._redis.hincrby(COUNTERS_KEY, counter_field(name, labels), amount)

    def observe(self, name: str, seconds: float) -> None:
        bound = next(b for b in LATENCY_BUCKETS_S if seconds <= b)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hincrby(HISTOGRAMS_KEY, f"{name}|{bound}", 1)
        pipe.hincrbyfloat(HISTOGRAMS_KEY, f"{name}|sum", seconds)
        pipe.hincrby(HISTOGRAMS_KEY, f"{name}|count", 1)
        pipe.execute()


class NullMetrics(MetricsRecorder):
    """Records nothing: for tests and tools that run jobs without Redis metrics."""

    def __init__(self) -> None:
        pass

    def count(self, name: str, amount: int = 1, **labels: str) -> None:
        return None

    def observe(self, name: str, seconds: float) -> None:
        return None


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
