"""A process's copies of what it read from the job store, each kept under a version.

A worker keeps copies of rows that change rarely (an integration, its enum mappings, an
account's webhook endpoints) and answers from a copy only while its caller read the same
version in its own transaction: the version moves in the same transaction as any change, so a
copy at that version is what the transaction would have read. The number kept is bounded, the
oldest kept dropped first, so a large deployment costs a bounded amount of memory and a dropped
copy is only read again.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

#: Enough for every integration or account of a large deployment.
MAX_COPIES = 20_000


class VersionedCopies(Generic[K, V]):
    """Values by key, each with the version it was read at; at most `max_entries` kept."""

    def __init__(self, max_entries: int = MAX_COPIES) -> None:
        self._max_entries = max_entries
        self._by_key: dict[K, tuple[object, V]] = {}

    def get(self, key: K, version: object | None) -> V | None:
        """The copy of `key` if it was kept at `version`; None when it was not, or when the
        caller knows no version (nothing then proves a copy current)."""
        kept = self._by_key.get(key)
        if kept is None or version is None or kept[0] != version:
            return None
        return kept[1]

    def keep(self, key: K, version: object, value: V) -> None:
        """Keep `value` as the copy of `key` at `version`, in place of any older one."""
        self._by_key.pop(key, None)
        if len(self._by_key) >= self._max_entries:
            del self._by_key[next(iter(self._by_key))]
        self._by_key[key] = (version, value)
