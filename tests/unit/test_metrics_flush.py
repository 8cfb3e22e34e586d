"""Metric events are kept in memory and reach Redis in one pipelined round trip per flush."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import fakeredis
import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

from pmsq.metrics import (
    COUNTERS_KEY,
    HISTOGRAMS_KEY,
    ClusterCollector,
    MetricsRecorder,
    flush_metrics,
)


class CountingRedis(fakeredis.FakeRedis):
    """Counts round trips: commands sent on their own and pipelines executed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = 0
        self.pipelines = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands += 1
        return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def counted(raise_on_error: bool = True) -> Any:
            self.pipelines += 1
            return execute(raise_on_error)

        pipe.execute = counted  # type: ignore[method-assign]
        return pipe


def scrape(client: redis.Redis) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(ClusterCollector(client))
    samples = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_recording_sends_nothing_until_a_flush() -> None:
    client = CountingRedis()
    recorder = MetricsRecorder(client, flush_interval_s=3600)
    recorder.count("pmsq_admissions", 2, integration_id="i1")
    recorder.observe("pmsq_job_duration_seconds", 0.2)
    assert (client.commands, client.pipelines) == (0, 0)
    assert not client.exists(COUNTERS_KEY, HISTOGRAMS_KEY)
    recorder.flush()
    samples = scrape(client)
    assert samples['pmsq_admissions_total{integration_id="i1"}'] == 2
    assert samples["pmsq_job_duration_seconds_count"] == 1


def test_many_events_of_several_recorders_cost_one_round_trip_per_flush() -> None:
    client = CountingRedis()
    runner, dispatcher = (MetricsRecorder(client, flush_interval_s=3600) for _ in range(2))
    for i in range(500):
        dispatcher.count("pmsq_admissions", integration_id=f"i{i % 7}")
        runner.count("pmsq_job_outcomes", integration_id=f"i{i % 7}", outcome="success")
        runner.observe("pmsq_job_duration_seconds", i / 100)
    runner.flush()
    assert (client.commands, client.pipelines) == (0, 1)

    runner.count("pmsq_beat_ticks")
    dispatcher.flush()  # the same client: the runner's event goes along
    assert (client.commands, client.pipelines) == (0, 2)
    dispatcher.flush()  # nothing pending: no round trip at all
    assert (client.commands, client.pipelines) == (0, 2)

    samples = scrape(client)
    assert sum(samples[f'pmsq_admissions_total{{integration_id="i{i}"}}'] for i in range(7)) == 500
    label = 'integration_id="i3",outcome="success"'
    assert samples[f"pmsq_job_outcomes_total{{{label}}}"] == len(range(3, 500, 7))
    assert samples["pmsq_beat_ticks_total"] == 1
    assert samples["pmsq_job_duration_seconds_count"] == 500
    assert samples['pmsq_job_duration_seconds_bucket{le="0.1"}'] == 11  # 0.00 .. 0.10
    assert samples["pmsq_job_duration_seconds_sum"] == pytest.approx(sum(range(500)) / 100)


def test_labels_are_kept_apart_and_in_any_order() -> None:
    client = fakeredis.FakeRedis()
    recorder = MetricsRecorder(client, flush_interval_s=3600)
    recorder.count("pmsq_throttled_admissions", integration_id="i1", reason="limits")
    recorder.count("pmsq_throttled_admissions", reason="limits", integration_id="i1")
    recorder.count("pmsq_throttled_admissions", integration_id="i1", reason="paused")
    recorder.count("pmsq_throttled_admissions", 0, integration_id="i2", reason="paused")
    recorder.flush()
    samples = scrape(client)
    base = "pmsq_throttled_admissions_total"
    assert samples[f'{base}{{integration_id="i1",reason="limits"}}'] == 2
    assert samples[f'{base}{{integration_id="i1",reason="paused"}}'] == 1
    assert f'{base}{{integration_id="i2",reason="paused"}}' not in samples


def test_the_flusher_thread_sends_without_being_asked() -> None:
    client = fakeredis.FakeRedis()
    MetricsRecorder(client, flush_interval_s=0.05).count("pmsq_pms_429", integration_id="i1")
    # The recorder is dropped at once: what it recorded is still sent.
    deadline_s = time.monotonic() + 10
    while 'pmsq_pms_429_total{integration_id="i1"}' not in scrape(client):
        assert time.monotonic() < deadline_s, "the flusher thread sent nothing"
        time.sleep(0.01)
    assert scrape(client)['pmsq_pms_429_total{integration_id="i1"}'] == 1


class GatedRedis(fakeredis.FakeRedis):
    """The flusher thread's pipelines wait at `gate` after saying they are under way."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sending, self.gate = threading.Event(), threading.Event()

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def gated(raise_on_error: bool = True) -> Any:
            if threading.current_thread().name == "pmsq-metrics":
                self.sending.set()
                assert self.gate.wait(30)
            return execute(raise_on_error)

        pipe.execute = gated  # type: ignore[method-assign]
        return pipe


def test_a_flush_returns_once_a_send_under_way_has_landed() -> None:
    client = GatedRedis()
    recorder = MetricsRecorder(client, flush_interval_s=0.01)
    recorder.count("pmsq_admissions", integration_id="i1")
    assert client.sending.wait(30)  # the flusher thread took the event: none is pending
    client.gate.set()
    recorder.flush()
    assert scrape(client)['pmsq_admissions_total{integration_id="i1"}'] == 1


def test_a_failed_flush_keeps_its_events_for_the_next() -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    recorder = MetricsRecorder(client, flush_interval_s=3600)
    recorder.count("pmsq_admissions", 3, integration_id="i1")
    recorder.observe("pmsq_write_latency_seconds", 1.5)
    server.connected = False
    with pytest.raises(redis.ConnectionError):
        recorder.flush()
    recorder.count("pmsq_admissions", integration_id="i1")
    server.connected = True
    recorder.flush()
    samples = scrape(client)
    assert samples['pmsq_admissions_total{integration_id="i1"}'] == 4
    assert samples["pmsq_write_latency_seconds_count"] == 1
    assert samples["pmsq_write_latency_seconds_sum"] == 1.5


def test_flush_metrics_sends_every_client_of_the_process() -> None:
    first, second = fakeredis.FakeRedis(), fakeredis.FakeRedis()
    MetricsRecorder(first, flush_interval_s=3600).count("pmsq_beat_ticks")
    MetricsRecorder(second, flush_interval_s=3600).count("pmsq_syncs_fired", 4)
    flush_metrics()
    assert scrape(first)["pmsq_beat_ticks_total"] == 1
    assert scrape(second)["pmsq_syncs_fired_total"] == 4


def test_a_forked_child_sends_only_what_it_recorded_itself() -> None:
    client = fakeredis.FakeRedis()
    recorder = MetricsRecorder(client, flush_interval_s=3600)
    recorder.count("pmsq_admissions", 5, integration_id="parent")
    pid = os.fork()
    if pid == 0:  # the child: its copy of the fake server is its own
        status = 1
        try:
            recorder.count("pmsq_admissions", integration_id="child")
            flush_metrics()
            samples = scrape(client)
            ok = 'pmsq_admissions_total{integration_id="parent"}' not in samples
            status = 0 if ok and samples['pmsq_admissions_total{integration_id="child"}'] else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    recorder.flush()
    samples = scrape(client)
    assert samples['pmsq_admissions_total{integration_id="parent"}'] == 5
    assert 'pmsq_admissions_total{integration_id="child"}' not in samples
