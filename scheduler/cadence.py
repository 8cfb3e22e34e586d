"""When an integration's next sync is due: pure schedule arithmetic, no I/O.

The beat stores the answer of `next_sync_time` in an indexed column, so this module only has to
be right and cheap; it never scans time minute by minute. Every instant in and out is an aware
UTC `datetime` (a naive one is read as UTC, because SQLite hands stored UTC instants back naive).

Default cadence (`use_custom_sync_schedule` false, or no schedule stored)
    Syncs fall at `anchor + k * period` for whole k >= 0, where period is `sync_frequency` units
    of `sync_cadence`. SECOND, MINUTE, HOUR, DAY and WEEK have fixed lengths (a DAY is 24 hours
    of UTC, not a local day). MONTH adds calendar months to the anchor in UTC, each instant
    computed as "anchor + k months" with the day clamped to the month's length (Jan 31 -> Feb 28
    or 29 -> Mar 31), never by chaining, so the day of month does not drift. Before the anchor,
    the next sync is the anchor itself.

Custom WEEK_BASED schedule (`use_custom_sync_schedule` true)
    Each weekday's slots are local wall-clock windows [start, end) in the schedule's IANA time
    zone; a slot listed under a weekday belongs to every local calendar date with that weekday.
    Inside a slot, syncs fall at the local wall times start + k * (slot frequency x slot
    cadence), k >= 0, while before end ("24:00" ends at midnight); outside all slots there are
    none. A slot cadence of DAY, WEEK or MONTH is longer than any slot: the slot fires once, at
    its start. Daylight-saving time:

    - a wall time that does not exist (the spring-forward gap) is skipped;
    - a wall time that exists twice (the fall-back overlap) fires once, at its first occurrence
      (fold=0); the repeated hour does not fire again;
    - no slot vanishes: if every grid time of a slot on some date falls in a gap, the slot fires
      once on that date, at the first instant after the gap (the gap's end).

    Several slots firing at one instant are one sync. A schedule without any slot never fires
    (`next_sync_time` returns None).
"""

from __future__ import annotations

import calendar
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pmsq.models.enums import Cadence

#: Names of the weekdays as custom schedules spell them, indexed by `date.weekday()`.
WEEKDAY_NAMES = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
#: Cadences of fixed length; MONTH is absent because it means calendar months.
FIXED_PERIODS: dict[Cadence, timedelta] = {
    Cadence.SECOND: timedelta(seconds=1),
    Cadence.MINUTE: timedelta(minutes=1),
    Cadence.HOUR: timedelta(hours=1),
    Cadence.DAY: timedelta(days=1),
    Cadence.WEEK: timedelta(weeks=1),
}
#: Slot cadences at least as long as any slot (24 hours): such a slot fires once, at its start.
ONCE_PER_SLOT = frozenset({Cadence.DAY, Cadence.WEEK, Cadence.MONTH})
#: Local dates examined around `after`: the one before it (a slot there may fire at the end of a
#: gap that runs past midnight) up to 8 after (a full week, so every weekday, plus a margin).
DAYS_BEFORE = 1
DAYS_AFTER = 8
#: Grid wall times are whole seconds, so "later than `wall - EPSILON`" means "at or after `wall`".
EPSILON = timedelta(microseconds=1)


def next_sync_time(
    *,
    sync_frequency: int,
    sync_cadence: str,
    use_custom_sync_schedule: bool,
    custom_sync_schedule: Mapping[str, Any] | None,
    anchor: datetime,
    after: datetime,
) -> datetime | None:
    """Return the first sync instant strictly after `after` (aware UTC).

    `anchor` is where the default cadence counts from (the schedule's creation or last change);
    a custom schedule ignores it. Returns None only for a custom schedule without any slot.
    `custom_sync_schedule` is assumed valid (`pmsq.models.schemas.CustomSyncSchedule`); with
    `use_custom_sync_schedule` set but no schedule stored, the default cadence applies.
    Raises ValueError for a frequency below 1.
    """
    after_utc = _as_utc(after)
    if use_custom_sync_schedule and custom_sync_schedule is not None:
        return _next_custom(_WeekSchedule(custom_sync_schedule), after_utc)
    return _next_default(sync_frequency, Cadence(sync_cadence), _as_utc(anchor), after_utc)


def sync_times_between(
    *,
    sync_frequency: int,
    sync_cadence: str,
    use_custom_sync_schedule: bool,
    custom_sync_schedule: Mapping[str, Any] | None,
    anchor: datetime,
    start: datetime,
    end: datetime,
    limit: int | None = None,
) -> list[datetime]:
    """Return every sync instant in (start, end], ascending, at most `limit` of them.

    Built on `next_sync_time`, so both always agree; `limit` bounds the work for a caller that
    shows upcoming syncs of a fast cadence over a long range.
    """
    times: list[datetime] = []
    cursor = start
    end_utc = _as_utc(end)
    while limit is None or len(times) < limit:
        following = next_sync_time(
            sync_frequency=sync_frequency,
            sync_cadence=sync_cadence,
            use_custom_sync_schedule=use_custom_sync_schedule,
            custom_sync_schedule=custom_sync_schedule,
            anchor=anchor,
            after=cursor,
        )
        if following is None or following > end_utc:
            break
        times.append(following)
        cursor = following
    return times


# Default cadence -------------------------------------------------------------------------------


def _next_default(frequency: int, cadence: Cadence, anchor: datetime, after: datetime) -> datetime:
    """The first `anchor + k * period` (k >= 0) after `after`, found by division, not iteration."""
    if frequency < 1:
        raise ValueError(f"sync_frequency must be at least 1, got {frequency}")
    if after < anchor:
        return anchor
    if cadence is Cadence.MONTH:
        return _next_month_step(frequency, anchor, after)
    period = frequency * FIXED_PERIODS[cadence]
    steps = (after - anchor) // period + 1
    return anchor + steps * period


def _next_month_step(frequency: int, anchor: datetime, after: datetime) -> datetime:
    """The first `anchor + k * frequency` calendar months after `after` (anchor <= after).

    Step k = months // frequency lands in `after`'s month or earlier; if it is not already
    later than `after`, step k + 1 lands in a later month, so one step forward at most.
    """
    months = (after.year - anchor.year) * 12 + after.month - anchor.month
    steps = months // frequency
    candidate = add_months(anchor, steps * frequency)
    if candidate <= after:
        candidate = add_months(anchor, (steps + 1) * frequency)
    return candidate


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` moved by whole calendar months, the day clamped to the target month's length."""
    year, month_index = divmod(moment.month - 1 + months, 12)
    year += moment.year
    month = month_index + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


# Custom WEEK_BASED schedule --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Slot:
    """One slot as offsets from local midnight; `period` None means it fires only at `start`."""

    start: timedelta
    end: timedelta
    period: timedelta | None

    @property
    def count(self) -> int:
        """How many grid times the slot has on one date (at least one: its start)."""
        if self.period is None:
            return 1
        return math.ceil((self.end - self.start) / self.period)

    def wall(self, day: date, index: int) -> datetime:
        """The naive local wall time of grid time `index` on `day`."""
        offset = self.start if self.period is None else self.start + index * self.period
        return datetime(day.year, day.month, day.day) + offset

    def first_index_after(self, day: date, floor: datetime) -> int:
        """The smallest grid index whose wall time on `day` is later than `floor` (may be count)."""
        first = self.wall(day, 0)
        if floor < first:
            return 0
        if self.period is None:
            return 1
        return (floor - first) // self.period + 1


class _WeekSchedule:
    """A WEEK_BASED schedule whose weekdays are parsed on first use: a query touches about three.

    The stored JSON shape is assumed valid (`pmsq.models.schemas.CustomSyncSchedule`).
    """

    __slots__ = ("_interval", "_parsed", "zone")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        if raw.get("type", "WEEK_BASED") != "WEEK_BASED":
            raise ValueError(f"unsupported custom schedule type {raw.get('type')!r}")
        self.zone = ZoneInfo(raw["timezone"])
        self._interval: Mapping[str, Any] = raw.get("interval") or {}
        self._parsed: dict[int, tuple[_Slot, ...]] = {}

    def _raw_slots(self, name: str) -> Any:
        return (self._interval.get(name) or {}).get("slots") or ()

    def has_slots(self) -> bool:
        return any(self._raw_slots(name) for name in WEEKDAY_NAMES)

    def slots_on(self, day: date) -> tuple[_Slot, ...]:
        """The slots of `day`'s weekday."""
        weekday = day.weekday()
        slots = self._parsed.get(weekday)
        if slots is None:
            slots = tuple(_parse_slot(raw) for raw in self._raw_slots(WEEKDAY_NAMES[weekday]))
            self._parsed[weekday] = slots
        return slots


def _parse_slot(raw: Mapping[str, Any]) -> _Slot:
    return _slot(raw["start"], raw["end"], raw["sync_frequency"], raw["sync_cadence"])


@functools.lru_cache(maxsize=4096)
def _slot(start: str, end: str, frequency: int, cadence_name: str) -> _Slot:
    """A parsed slot; cached because the same few slot shapes recur across integrations."""
    cadence = Cadence(cadence_name)
    if frequency < 1:
        raise ValueError(f"slot sync_frequency must be at least 1, got {frequency}")
    period = None if cadence in ONCE_PER_SLOT else frequency * FIXED_PERIODS[cadence]
    return _Slot(start=_hhmm(start), end=_hhmm(end), period=period)


def _hhmm(text: str) -> timedelta:
    """ "HH:MM" as an offset from midnight; "24:00" is the next midnight."""
    return timedelta(minutes=int(text[:2]) * 60 + int(text[3:5]))


def _next_custom(schedule: _WeekSchedule, after: datetime) -> datetime | None:
    """The earliest instant any slot fires after `after`, looking at the local dates around it.

    Instants of a later local date never precede those of an earlier one, so the search stops
    one date past the date of the best instant found.
    """
    if not schedule.has_slots():
        return None
    zone = schedule.zone
    floor = _fired_up_to(after, zone)
    first_day = after.astimezone(zone).date()
    best: datetime | None = None
    best_day: date | None = None
    for offset in range(-DAYS_BEFORE, DAYS_AFTER + 1):
        day = first_day + timedelta(days=offset)
        if best_day is not None and day > best_day + timedelta(days=1):
            break
        for slot in schedule.slots_on(day):
            candidate = _slot_next(slot, day, zone, floor, after)
            if candidate is not None and (best is None or candidate < best):
                best = candidate
                best_day = best.astimezone(zone).date()
    return best


def _fired_up_to(after: datetime, zone: ZoneInfo) -> datetime:
    """The latest local wall time whose (first) occurrence is not after `after`.

    Usually `after`'s own wall time. In the second pass through a repeated hour (fold=1), every
    wall time of that hour already had its first occurrence, so the floor is the overlap's end.
    """
    local = after.astimezone(zone)
    wall = local.replace(tzinfo=None)
    if local.fold == 0:
        return wall
    first_offset = wall.replace(tzinfo=zone, fold=0).utcoffset()
    second_offset = local.utcoffset()
    assert first_offset is not None and second_offset is not None
    repeat = first_offset - second_offset
    fall_back = _transition(zone, after - repeat, after)
    return _wall(fall_back, zone) + repeat - EPSILON


def _slot_next(
    slot: _Slot, day: date, zone: ZoneInfo, floor: datetime, after: datetime
) -> datetime | None:
    """The first instant after `after` at which `slot` fires on local date `day`, if any."""
    count = slot.count
    first_wall = slot.wall(day, 0)
    if _instant(first_wall, zone) is None:
        gap_end = _gap_end(first_wall, zone)
        if slot.wall(day, count - 1) < _wall(gap_end, zone):
            # Every grid time of the slot is in this gap: it fires once, where the gap ends.
            return gap_end if gap_end > after else None
    index = slot.first_index_after(day, floor)
    while index < count:
        wall = slot.wall(day, index)
        instant = _instant(wall, zone)
        if instant is None:
            gap_wall = _wall(_gap_end(wall, zone), zone)
            index = slot.first_index_after(day, gap_wall - EPSILON)
        elif instant > after:
            return instant
        else:  # Not expected past `floor`; stepping on keeps the answer right regardless.
            index += 1
    return None


# Time zone helpers -----------------------------------------------------------------------------


def _instant(wall: datetime, zone: ZoneInfo) -> datetime | None:
    """The UTC instant of a local wall time: its first occurrence, or None inside a gap."""
    instant = wall.replace(tzinfo=zone).astimezone(UTC)
    if _wall(instant, zone) != wall:
        return None
    return instant


def _gap_end(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a gap containing the non-existent `wall` ends (the clock's jump).

    Read with the offset after the jump (fold=1) the wall time lies before the jump; read with
    the offset before it (fold=0), after. The jump is between the two.
    """
    early = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    late = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    return _transition(zone, early, late)


def _transition(zone: ZoneInfo, low: datetime, high: datetime) -> datetime:
    """The first whole second in (low, high] with a UTC offset other than `low`'s.

    Bisection over at most a few hours' seconds: about a dozen conversions, and only on days
    when the clock changes. Zone transitions fall on whole seconds.
    """
    low_s = math.floor(low.timestamp())
    high_s = math.ceil(high.timestamp())
    low_offset = datetime.fromtimestamp(low_s, zone).utcoffset()
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == low_offset:
            low_s = middle
        else:
            high_s = middle
    return datetime.fromtimestamp(high_s, UTC)


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    """The naive local wall time of an instant."""
    return instant.astimezone(zone).replace(tzinfo=None)


def _as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; naive input is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
