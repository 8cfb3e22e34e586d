"""The pacing of retention passes in beat: one batch per tick, a short pause between batches,
a pass every interval, and a failing batch that ends its pass instead of beat's tick."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from pmsq.scheduler.retention import BATCH_PAUSE_S, Retention, RetentionSweep

INTERVAL_S = 600.0


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedRetention(Retention):
    """Answers `purge_batch` from a script of deleted counts (or an exception to raise)."""

    def __init__(self, script: list[int | Exception]) -> None:
        self._script: Iterator[int | Exception] = iter(script)
        self.calls = 0

    def purge_batch(self) -> int:
        self.calls += 1
        step = next(self._script)
        if isinstance(step, Exception):
            raise step
        return step


def test_a_pass_runs_one_batch_per_tick_with_a_pause_until_nothing_is_left() -> None:
    clock = Monotonic()
    retention = ScriptedRetention([5, 5, 0, 7])
    sweep = RetentionSweep(retention, INTERVAL_S, clock)

    assert sweep.tick() == pytest.approx(BATCH_PAUSE_S)  # the first pass starts at once
    assert retention.calls == 1
    sweep.tick()  # within the pause: no batch
    assert retention.calls == 1
    clock.now += BATCH_PAUSE_S
    sweep.tick()
    clock.now += BATCH_PAUSE_S
    assert sweep.tick() == pytest.approx(INTERVAL_S)  # nothing left: the pass ends
    assert retention.calls == 3

    clock.now += INTERVAL_S - 1
    assert sweep.tick() == pytest.approx(1)
    assert retention.calls == 3
    clock.now += 1
    sweep.tick()
    assert retention.calls == 4


def test_a_failing_batch_is_logged_and_ends_the_pass(caplog: pytest.LogCaptureFixture) -> None:
    clock = Monotonic()
    retention = ScriptedRetention([3, RuntimeError("database went away"), 0])
    sweep = RetentionSweep(retention, INTERVAL_S, clock)
    sweep.tick()
    clock.now += BATCH_PAUSE_S
    with caplog.at_level(logging.ERROR, logger="pmsq.scheduler.retention"):
        assert sweep.tick() == pytest.approx(INTERVAL_S)
    assert "retention purge failed" in caplog.text
    clock.now += INTERVAL_S
    sweep.tick()
    assert retention.calls == 3
