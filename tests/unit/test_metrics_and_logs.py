"""Cluster-wide metrics through Redis, and structured log records."""

from __future__ import annotations

import io
import json
import logging

import fakeredis
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from pmsq.logs import install, log_context
from pmsq.metrics import ClusterCollector, MetricsRecorder
from pmsq.workers.flow.gauges import FlowGauges
from pmsq.workers.flow.limits import Limits
from pmsq.workers.flow.redis_backend import RedisFlowControl


def scrape(client: fakeredis.FakeRedis) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(ClusterCollector(client))
    registry.register(FlowGauges(client))
    samples = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_counts_from_several_recorders_add_up_in_one_scrape() -> None:
    client = fakeredis.FakeRedis()
    worker_a, worker_b = MetricsRecorder(client), MetricsRecorder(client)
    worker_a.count("pmsq_admissions", 3, integration_id="i1")
    worker_b.count("pmsq_admissions", 2, integration_id="i1")
    worker_b.count("pmsq_job_outcomes", integration_id="i1", outcome="success")
    worker_a.count("pmsq_pms_429", integration_id="i2")
    worker_a.flush()
    worker_b.flush()
    samples = scrape(client)
    assert samples['pmsq_admissions_total{integration_id="i1"}'] == 5
    assert samples['pmsq_job_outcomes_total{integration_id="i1",outcome="success"}'] == 1
    assert samples['pmsq_pms_429_total{integration_id="i2"}'] == 1


def test_histograms_are_cumulative_with_sum_and_count() -> None:
    client = fakeredis.FakeRedis()
    recorder = MetricsRecorder(client)
    for seconds in (0.02, 0.2, 3.0):
        recorder.observe("pmsq_job_duration_seconds", seconds)
    recorder.flush()
    samples = scrape(client)
    assert samples['pmsq_job_duration_seconds_bucket{le="0.025"}'] == 1
    assert samples['pmsq_job_duration_seconds_bucket{le="0.25"}'] == 2
    assert samples['pmsq_job_duration_seconds_bucket{le="+Inf"}'] == 3
    assert samples["pmsq_job_duration_seconds_count"] == 3
    assert abs(samples["pmsq_job_duration_seconds_sum"] - 3.22) < 1e-9


def test_backlog_and_in_flight_gauges_are_live() -> None:
    client = fakeredis.FakeRedis()
    flow = RedisFlowControl(client)
    flow.set_limits("i1", Limits(interval_us=1, tolerance_us=1, concurrency=1))
    flow.enqueue("i1", ["a", "b", "c"])
    admitted = flow.admit("i1", 10, lease_s=60)
    assert list(admitted.job_ids) == ["a"]
    samples = scrape(client)
    assert samples['pmsq_backlog_jobs{integration_id="i1"}'] == 2
    assert samples['pmsq_jobs_in_flight{integration_id="i1"}'] == 1


def test_pause_gauge_says_how_long_a_429_pause_lasts() -> None:
    client = fakeredis.FakeRedis()
    flow = RedisFlowControl(client)
    flow.set_limits("i1", Limits(interval_us=1, tolerance_us=1, concurrency=1))
    flow.enqueue("i1", ["a"])
    flow.enqueue("i2", ["b"])
    flow.pause("i1", 120.0)
    samples = scrape(client)
    assert 119 < samples['pmsq_pause_remaining_seconds{integration_id="i1"}'] <= 120
    assert samples['pmsq_pause_remaining_seconds{integration_id="i2"}'] == 0


def test_counters_without_labels_are_exported() -> None:
    client = fakeredis.FakeRedis()
    recorder = MetricsRecorder(client)
    recorder.count("pmsq_beat_ticks")
    recorder.count("pmsq_beat_ticks")
    recorder.count("pmsq_webhook_attempts", outcome="retry")
    recorder.flush()
    samples = scrape(client)
    assert samples["pmsq_beat_ticks_total"] == 2
    assert samples['pmsq_webhook_attempts_total{outcome="retry"}'] == 1


def test_json_logs_carry_the_job_context() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install(handler, "json")
    logger = logging.getLogger("pmsq.test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with log_context(job_id="j1", root_job_id="r1", integration_id="i1"):
            logger.info("inside %s", "job")
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    fields = ("message", "job_id", "root_job_id", "integration_id")
    assert [inside[f] for f in fields] == ["inside job", "j1", "r1", "i1"]
    assert outside["job_id"] is None and outside["level"] == "INFO"


def test_a_worker_logs_no_line_per_http_request(caplog: pytest.LogCaptureFixture) -> None:
    from pmsq.workers.app import app  # configures the worker's logging

    caplog.set_level(logging.INFO)  # a worker started with --loglevel info
    httpx_logger = logging.getLogger("httpx")

    assert app.main == "pmsq"
    assert not httpx_logger.isEnabledFor(logging.INFO)
    assert httpx_logger.isEnabledFor(logging.WARNING)
