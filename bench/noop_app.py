"""The bare-Celery baseline for `bench.pipeline`: delivery settings as `pmsq.workers.app`, no work.

`celery -A bench.noop_app worker` with `BENCH_NOOP_BROKER_URL` (the broker) and
`BENCH_NOOP_COUNTER_URL` (the Redis holding the counter) set. Each `bench.noop` task INCRs
`COUNTER_KEY` and stamps `LAST_KEY` with the wall-clock time of the increment, so the benchmark
can read the finish time of the last task instead of the time of the poll that noticed it.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

#: Redis string (integer): tasks run so far. Deleted by the benchmark before each run.
COUNTER_KEY = "bench:noop:done"
#: Redis string (float, Unix seconds): when the latest task ran.
LAST_KEY = "bench:noop:last"
#: Name of the no-op task.
NOOP_TASK = "bench.noop"
#: Queue the baseline uses (not `pmsq.jobs`, though it lives in another Redis database anyway).
NOOP_QUEUE = "bench.noop"

app = Celery("bench_noop", broker=os.environ.get("BENCH_NOOP_BROKER_URL", "memory://"))
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_default_queue=NOOP_QUEUE,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)

_counter: redis.Redis | None = None


def _client() -> redis.Redis:
    """One Redis client per process, made after the prefork pool forked."""
    global _counter
    if _counter is None:
        _counter = redis.Redis.from_url(os.environ["BENCH_NOOP_COUNTER_URL"])
    return _counter


@app.task(name=NOOP_TASK)
def noop() -> None:
    """Count one run; nothing else."""
    pipe = _client().pipeline(transaction=False)
    pipe.incr(COUNTER_KEY)
    pipe.set(LAST_KEY, repr(time.time()))
    pipe.execute()
