"""Request pacing: each PMS request waits for its integration's pace, and a claim that lost its
lease sends nothing.

The connector calls `RequestPacer.wait_for_slot` before every request it sends (the vendor
seam's `before_request` hook), so pacing holds for every vendor and every kind of step without
the connector knowing of flow control.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pmsq.errors import FencedOut, PmsError
from pmsq.workers.flow.backend import FlowControl, Pace, Paced
from pmsq.workers.steps import Claim

logger = logging.getLogger(__name__)


class PaceLatency:
    """The fastest pacing round trip this process has seen: the floor a pass is measured
    against, so a constant Redis latency (which compresses nothing) never makes passes stale."""

    def __init__(self) -> None:
        self.fastest_s = float("inf")

    def observe(self, round_trip_s: float) -> float:
        """Record a round trip; returns how much slower than the fastest it was."""
        self.fastest_s = min(self.fastest_s, round_trip_s)
        return round_trip_s - self.fastest_s


class RequestPacer:
    """Holds each PMS request until the integration's pacing lets it leave, and stops a claim
    that lost its lease.

    Admission already spaces jobs; this closes the gap between admission and the moment the
    request leaves, checked on Redis's clock at that moment, so the PMS sees requests no closer
    than the limit allows (and none while the integration is paused after a 429). The same
    atomic step proves the claim still holds the job's lease: a fenced-out claim raises
    `FencedOut` and nothing is sent. A pass that came back late (the worker paused between the
    check and the send) is stale: its slot is given back and a fresh one taken.
    """

    #: Longest single sleep; a pause or a change of limits is re-checked after it.
    MAX_WAIT_S = 1.0
    #: Stale passes in a row after which a slow pass is used anyway, so a job never starves.
    MAX_STALE_PASSES = 10

    def __init__(
        self,
        flow: FlowControl,
        claim: Claim,
        reload_limits: Callable[[str], None],
        lost: threading.Event | None = None,
        stale_after_s: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        latency: PaceLatency | None = None,
    ) -> None:
        """`stale_after_s`: a pacing pass whose round trip took this much longer than the
        fastest seen (`latency`, shared by a process's pacers) is not used: half the rate
        margin, see `Limits.from_values`. None: never stale."""
        self._flow = flow
        self._claim = claim
        self._reload_limits = reload_limits
        self._lost = lost or threading.Event()
        self._stale_after_s = stale_after_s
        self._monotonic = monotonic
        self._latency = latency or PaceLatency()
        self._first_slot = claim.first_slot

    def wait_for_slot(self) -> None:
        integration_id = self._claim.integration.id
        stale_passes = 0
        first, self._first_slot = self._first_slot, None
        if first is not None:
            # The claim's round trip already took this slot: good if the request leaves
            # about a round trip after it was asked, like any pass; else given back.
            self._stop_if_lost()
            late_s = self._monotonic() - first.asked_s - self._latency.fastest_s
            if self._fresh(late_s, stale_passes):
                return
            stale_passes += 1
            self._give_back(integration_id, first.slot)
        while True:
            self._stop_if_lost()
            asked_s = self._monotonic()
            paced = self._ask(integration_id)
            if paced.decision is Pace.FENCED:
                raise FencedOut(f"job {self._claim.job_id}: the lease is no longer held")
            if paced.decision is Pace.NO_LIMITS:
                self._ask_to_reload(integration_id)
            elif paced.decision is Pace.GO:
                late_s = self._latency.observe(self._monotonic() - asked_s)
                if self._fresh(late_s, stale_passes) or paced.slot is None:
                    return
                stale_passes += 1
                self._give_back(integration_id, paced.slot)
            else:
                time.sleep(min(paced.wait_s, self.MAX_WAIT_S))

    def _stop_if_lost(self) -> None:
        if self._lost.is_set():
            raise FencedOut(f"job {self._claim.job_id}: the heartbeat lost the lease")

    def give_back_unused(self) -> None:
        """Give back the slot the claim took if no request used it (the step sent nothing),
        so the integration's next request need not wait for it. Best effort: a slot kept
        only spaces requests further apart."""
        first, self._first_slot = self._first_slot, None
        if first is not None:
            try:
                self._flow.give_back(self._claim.integration.id, first.slot)
            except Exception:
                logger.warning("job %s: unused request slot not given back", self._claim.job_id)

    def _ask(self, integration_id: str) -> Paced:
        try:
            return self._flow.pace(integration_id, self._claim.job_id, self._claim.delivery)
        except Exception as exc:
            raise _unavailable("flow control", exc) from exc

    def _give_back(self, integration_id: str, slot: tuple[int, int]) -> None:
        try:
            self._flow.give_back(integration_id, slot)
        except Exception as exc:
            raise _unavailable("flow control", exc) from exc

    def _ask_to_reload(self, integration_id: str) -> None:
        try:
            self._reload_limits(integration_id)
        except Exception as exc:
            raise _unavailable("the job store", exc) from exc

    def _fresh(self, late_s: float, stale_passes: int) -> bool:
        """A slot granted on Redis's clock is only good if the request leaves right after:
        one that leaves later lands too close to the next request at the PMS."""
        if self._stale_after_s is None or late_s <= self._stale_after_s:
            return True
        if stale_passes >= self.MAX_STALE_PASSES:
            logger.warning(
                "job %s: %d pacing passes in a row came back late; sending anyway",
                self._claim.job_id,
                stale_passes,
            )
            return True
        logger.info(
            "job %s: pacing pass came back %.1f ms late (more than %.1f ms): slot given back",
            self._claim.job_id,
            late_s * 1000,
            self._stale_after_s * 1000,
        )
        return False


def _unavailable(what: str, exc: Exception) -> PmsError:
    """A Redis or database blip while pacing: nothing was sent, so the job is retried (with
    backoff, within PMSQ_MAX_ATTEMPTS) instead of failing as an internal error."""
    logger.warning("pacing failed, %s unavailable: %s", what, type(exc).__name__)
    return PmsError(f"{what} unavailable while pacing ({type(exc).__name__})", retryable=True)
