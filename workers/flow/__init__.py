"""Per-integration flow control in Redis: admission, concurrency leases, request pacing, pauses."""
