"""A metrics recorder that keeps what it was told, for tests that check what gets counted."""

from __future__ import annotations

from collections import Counter

from pmsq.metrics import NullMetrics


class CountingMetrics(NullMetrics):
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()

    def count(self, name: str, amount: int = 1, **labels: str) -> None:
        if amount:
            self.counts[(name, tuple(sorted(labels.items())))] += amount

    def total(self, name: str, **labels: str) -> int:
        """The count of `name` over every label set that includes `labels`."""
        return sum(
            n
            for (counted, counted_labels), n in self.counts.items()
            if counted == name and set(labels.items()) <= set(counted_labels)
        )
