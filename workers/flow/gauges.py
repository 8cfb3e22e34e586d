"""Flow control's live gauges for Prometheus, read from Redis at scrape time.

Backlog and jobs in flight are state, not events: they are read where they live rather than
counted, so a scrape of any process sees every host's figures.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pmsq.workers.flow.keys import KNOWN_INTEGRATIONS, IntegrationKeys


class FlowGauges(Collector):
    """`pmsq_backlog_jobs`, `pmsq_jobs_in_flight` and `pmsq_pause_remaining_seconds` per
    integration."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def collect(self) -> Iterator[GaugeMetricFamily]:
        backlog = GaugeMetricFamily(
            "pmsq_backlog_jobs", "Jobs waiting for admission", labels=["integration_id"]
        )
        in_flight = GaugeMetricFamily(
            "pmsq_jobs_in_flight", "Admitted jobs holding a lease", labels=["integration_id"]
        )
        paused = GaugeMetricFamily(
            "pmsq_pause_remaining_seconds",
            "How long the integration stays paused after the PMS's 429s (0: not paused)",
            labels=["integration_id"],
        )
        ids = sorted(
            i.decode() if isinstance(i, bytes) else i
            for i in self._redis.smembers(KNOWN_INTEGRATIONS)
        )
        now_s, now_us = self._redis.time()
        now = now_s * 1_000_000 + now_us
        pipe = self._redis.pipeline(transaction=False)
        for integration_id in ids:
            keys = IntegrationKeys(integration_id)
            pipe.zcard(keys.backlog)
            pipe.zcount(keys.leases, now, "+inf")
            pipe.get(keys.paused_until)
        values = pipe.execute()
        for i, integration_id in enumerate(ids):
            backlog_jobs, leases, paused_until_us = values[3 * i : 3 * i + 3]
            backlog.add_metric([integration_id], backlog_jobs)
            in_flight.add_metric([integration_id], leases)
            remaining_us = int(paused_until_us) - now if paused_until_us is not None else 0
            paused.add_metric([integration_id], max(0, remaining_us) / 1_000_000)
        yield backlog
        yield in_flight
        yield paused
