"""The peers `bench.flow` measures pmsq's flow control against, each as its users would run it.

- `celery_peer`: Celery's own `rate_limit` on a task (a token bucket in each worker's consumer).
- `dramatiq_peer`: dramatiq actors guarded by `ConcurrentRateLimiter` and `BucketRateLimiter`;
  a refused acquisition raises `RateLimitExceeded` and the `Retries` middleware retries later.
  Needs `pip install 'dramatiq[redis]'` (bench only, not a pmsq dependency).

Both POST one resident to the sandbox PMS per task and count every execution in Redis, so the
benchmark can tell attempts spent on throttling from useful ones.
"""
