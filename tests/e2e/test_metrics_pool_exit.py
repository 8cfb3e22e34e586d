"""A Celery pool process that ends cleanly sends the metric events it still holds.

A prefork pool process ends with `os._exit`, so `atexit` never runs there: pmsq's
`worker_process_shutdown` handler (connected by importing `pmsq.workers.app`) is what sends
them. The worker serves a tiny app of its own, so no job store or PMS is needed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import redis
from celery import Celery
from support.processes import ManagedProcess

from pmsq.metrics import COUNTERS_KEY

QUEUE = "pmsq-test-metrics"
#: Records `n` events with a flush interval no test outlives, then says it ran.
APP_MODULE = """
import os

import redis
from celery import Celery

import pmsq.workers.app  # noqa: F401  (connects pmsq's worker signal handlers)
from pmsq.metrics import MetricsRecorder

URL = os.environ["TEST_REDIS_URL"]
app = Celery("metrics_app", broker=URL)
client = redis.Redis.from_url(URL)


@app.task(name="test.record")
def record(n):
    recorder = MetricsRecorder(client, flush_interval_s=3600)
    for _ in range(n):
        recorder.count("pmsq_beat_ticks")
    client.set("test:recorded", os.getpid())
"""


def test_a_pool_process_sends_its_events_at_warm_shutdown(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "metrics_app.py").write_text(APP_MODULE)
    args = [sys.executable, "-m", "celery", "-A", "metrics_app", "worker", "-Q", QUEUE]
    args += ["--pool", "prefork", "--concurrency", "1", "--loglevel", "info"]
    env = {"PYTHONPATH": str(tmp_path), "TEST_REDIS_URL": redis_url}
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with ManagedProcess(args, name="worker", env=env, cwd=tmp_path) as worker:
            with Celery(broker=redis_url) as sender:
                sender.send_task("test.record", args=[7], queue=QUEUE)
            child = worker.wait_until(lambda: client.get("test:recorded"), 120, 0.1)
            assert int(child) != worker.pid  # recorded in a pool process
            assert client.hget(COUNTERS_KEY, "pmsq_beat_ticks|") is None  # still in memory
            worker.stop(timeout_s=60)
        assert client.hget(COUNTERS_KEY, "pmsq_beat_ticks|") == "7"
    finally:
        client.close()
