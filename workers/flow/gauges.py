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
    """`pmsq_backlog_jobs` and `pmsq_jobs_in_flight` per integration."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def collect(self) -> Iterator[GaugeMetricFamily]:
        backlog = GaugeMetricFamily(
            "pmsq_backlog_jobs", "Jobs waiting for admission", labels=["integration_id"]
        )
        in_flight = GaugeMetricFamily(
            "pmsq_jobs_in_flight", "Admitted jobs holding a lease", labels=["integration_id"]
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
        values = pipe.execute()
        for i, integration_id in enumerate(ids):
            backlog.add_metric([integration_id], values[2 * i])
            in_flight.add_metric([integration_id], values[2 * i + 1])
        yield backlog
        yield in_flight
