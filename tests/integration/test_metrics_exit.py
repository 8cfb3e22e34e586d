"""A process that exits cleanly has sent every metric event it recorded (no explicit flush)."""

from __future__ import annotations

import subprocess
import sys

import redis

from pmsq.metrics import COUNTERS_KEY, HISTOGRAMS_KEY

#: Records with an interval no test outlives, closes its client as `pmsq api` does on its way
#: out, and exits: only the exit flush can have sent the events.
RECORDING_PROCESS = """
import sys
import redis
from pmsq.metrics import MetricsRecorder

client = redis.Redis.from_url(sys.argv[1])
recorder = MetricsRecorder(client, flush_interval_s=3600)
for _ in range(250):
    recorder.count("pmsq_admissions", integration_id="i1")
    recorder.observe("pmsq_write_latency_seconds", 0.5)
client.close()
"""


def test_a_clean_exit_sends_what_was_recorded(redis_url: str) -> None:
    subprocess.run([sys.executable, "-c", RECORDING_PROCESS, redis_url], check=True, timeout=60)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert client.hgetall(COUNTERS_KEY) == {"pmsq_admissions|integration_id=i1": "250"}
        histograms = client.hgetall(HISTOGRAMS_KEY)
        assert histograms["pmsq_write_latency_seconds|0.5"] == "250"
        assert histograms["pmsq_write_latency_seconds|count"] == "250"
        assert float(histograms["pmsq_write_latency_seconds|sum"]) == 125.0
    finally:
        client.close()
