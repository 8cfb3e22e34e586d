"""The request log the sandbox is judged by: one entry per `/t/` request, in arrival order.

An entry is created the moment a request arrives (so it exists even if the client goes away
mid-way) and completed when the answer is sent. `started_at` / `ended_at` are `time.time()`
seconds: arrival (before any injected latency) and just before the answer (after it).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class RequestRecord:
    """One request. `status` and `ended_at` are None only while it is still in flight.

    `applied` says the store was changed by this request; `record_id` is the id it created,
    updated or deleted (or, for a replay, the id of the remembered answer). `dropped` says an
    injected reset cut the connection instead of answering (its status is then 499). `client`
    is the sender's IP address, which tells the hosts of a multi-host test apart.
    """

    seq: int
    tenant: str
    method: str
    path: str
    model: str | None
    idempotency_key: str | None
    started_at: float
    client: str | None = None
    status: int | None = None
    ended_at: float | None = None
    record_id: str | None = None
    replayed: bool = False
    applied: bool = False
    dropped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Recorder:
    """Entries in arrival order with increasing `seq` (starting at 1).

    `clear()` forgets entries but keeps counting, so a poller using `since_seq` never sees a seq
    twice; `reset()` also restarts the count, as a fresh sandbox would.
    """

    def __init__(self) -> None:
        self._entries: list[RequestRecord] = []
        self._seq = itertools.count(1)

    def start(
        self,
        *,
        tenant: str,
        method: str,
        path: str,
        model: str | None,
        idempotency_key: str | None,
        started_at: float,
        client: str | None = None,
    ) -> RequestRecord:
        """Append an in-flight entry; the caller fills in the outcome on the returned object."""
        entry = RequestRecord(
            seq=next(self._seq),
            tenant=tenant,
            method=method,
            path=path,
            model=model,
            idempotency_key=idempotency_key,
            started_at=started_at,
            client=client,
        )
        self._entries.append(entry)
        return entry

    def entries(self, tenant: str | None = None, since_seq: int = 0) -> list[RequestRecord]:
        """Entries with `seq > since_seq`, optionally of one tenant, in seq order."""
        return [e for e in self._entries if e.seq > since_seq and tenant in (None, e.tenant)]

    def clear(self) -> None:
        self._entries.clear()

    def reset(self) -> None:
        self._entries.clear()
        self._seq = itertools.count(1)
