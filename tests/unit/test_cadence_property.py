"""`next_sync_time` agrees with brute force over random schedules, instants and time zones.

The custom-schedule reference knows nothing of the implementation's arithmetic: it walks UTC one
minute at a time, reads each minute as a local wall clock (`astimezone`) and fires when that wall
time, on its first occurrence (fold=0), is a grid time of a slot of that local date's weekday.
Where the clock jumps forward it fires at the jump if some slot had every grid time inside the
skipped wall times (no slot vanishes). Instants cluster around the DST transitions of 2026 and
2027, found here by scanning each zone for offset changes, and slots cluster in the small hours
where those transitions happen.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from pmsq.scheduler.cadence import next_sync_time, sync_times_between

ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "UTC",
    "Europe/London",
    "Australia/Sydney",
)
SPAN_START = datetime(2026, 1, 1, tzinfo=UTC)
SPAN_END = datetime(2028, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
#: The reference looks this far ahead; any schedule with a slot fires within a week.
HORIZON_MINUTES = 8 * 24 * 60
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)

Slot = tuple[str, str, int, str]


def transitions(zone: str) -> list[datetime]:
    """Every instant in 2026-2027 at which `zone`'s UTC offset changes, to the minute."""
    tz = ZoneInfo(zone)
    found: list[datetime] = []
    day = SPAN_START
    while day < SPAN_END:
        following = day + timedelta(days=1)
        if day.astimezone(tz).utcoffset() != following.astimezone(tz).utcoffset():
            minute = day
            while minute.astimezone(tz).utcoffset() == day.astimezone(tz).utcoffset():
                minute += MINUTE
            found.append(minute)
        day = following
    return found


TRANSITIONS = {zone: transitions(zone) for zone in ZONES}


def test_the_dst_scan_finds_two_changes_a_year_where_dst_is_kept() -> None:
    counts = {zone: len(found) for zone, found in TRANSITIONS.items()}
    assert counts == {zone: 0 if zone in {"America/Phoenix", "Pacific/Honolulu", "UTC"} else 4
                      for zone in ZONES}  # fmt: skip


# Brute-force reference -------------------------------------------------------------------------


def minutes_of(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def grid_minutes(slot: Slot) -> list[int]:
    """A slot's grid times as minutes after local midnight."""
    start, end, frequency, cadence = slot
    first, last = minutes_of(start), minutes_of(end)
    if cadence in {"DAY", "WEEK", "MONTH"}:
        return [first]
    step = frequency * {"MINUTE": 1, "HOUR": 60}[cadence]
    return list(range(first, last, step))


def reference_firings(
    custom: dict[str, Any], after: datetime, minutes: int = HORIZON_MINUTES
) -> Iterator[datetime]:
    """Every firing after `after`, minute by minute, for the next `minutes` minutes."""
    tz = ZoneInfo(custom["timezone"])
    slots = {
        weekday: [grid_minutes(s) for s in day_slots(custom, calendar.day_name[weekday].upper())]
        for weekday in range(7)
    }
    grids = {weekday: {m for grid in slots[weekday] for m in grid} for weekday in range(7)}
    minute = after.replace(second=0, microsecond=0) + MINUTE
    previous = (minute - MINUTE).astimezone(tz).replace(tzinfo=None)
    for _ in range(minutes):
        local = minute.astimezone(tz)
        wall = local.replace(tzinfo=None)
        fires = wall - previous > MINUTE and vanished_slot(slots, previous, wall)
        if local.fold == 0 and wall.hour * 60 + wall.minute in grids[wall.weekday()]:
            fires = True
        if fires:
            yield minute
        previous = wall
        minute += MINUTE


def vanished_slot(slots: dict[int, list[list[int]]], before: datetime, after: datetime) -> bool:
    """Whether some slot had all its grid times among the wall times the clock skipped."""
    day = before.date()
    while day <= after.date():
        midnight = datetime(day.year, day.month, day.day)
        for grid in slots[day.weekday()]:
            walls = [midnight + timedelta(minutes=m) for m in grid]
            if all(before < w < after for w in walls):
                return True
        day += timedelta(days=1)
    return False


def day_slots(custom: dict[str, Any], name: str) -> list[Slot]:
    raw = custom["interval"].get(name, {"slots": []})["slots"]
    return [(s["start"], s["end"], s["sync_frequency"], s["sync_cadence"]) for s in raw]


def reference_next(custom: dict[str, Any], after: datetime) -> datetime | None:
    return next(reference_firings(custom, after), None)


def implementation_next(custom: dict[str, Any], after: datetime) -> datetime | None:
    return next_sync_time(
        sync_frequency=1,
        sync_cadence="HOUR",
        use_custom_sync_schedule=True,
        custom_sync_schedule=custom,
        anchor=ANCHOR,
        after=after,
    )


# Strategies ------------------------------------------------------------------------------------

#: Minute periods that divide an hour put grid times exactly on the hour, where DST jumps land.
periods = st.one_of(
    st.tuples(st.sampled_from([1, 5, 10, 15, 20, 30, 45, 60, 90, 120]), st.just("MINUTE")),
    st.tuples(st.integers(1, 180), st.just("MINUTE")),
    st.tuples(st.integers(1, 6), st.just("HOUR")),
    st.tuples(st.integers(1, 3), st.just("DAY")),
)


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def slots_of_a_day(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-3 non-overlapping minute-aligned slots, often in the small hours where DST happens."""
    count = draw(st.integers(1, 3))
    span = draw(st.sampled_from([300, 1440]))
    unit = draw(st.sampled_from([1, 15, 30]))
    bounds = sorted(
        draw(
            st.lists(
                st.integers(0, span // unit).map(lambda n: n * unit),
                min_size=2 * count,
                max_size=2 * count,
                unique=True,
            )
        )
    )
    slots = []
    for i in range(count):
        frequency, cadence = draw(periods)
        slots.append(
            {
                "start": hhmm(bounds[2 * i]),
                "end": hhmm(bounds[2 * i + 1]),
                "sync_frequency": frequency,
                "sync_cadence": cadence,
            }
        )
    return slots


#: Periods that put grid times on the hour or half hour, where DST changes land.
aligned_periods = st.one_of(
    st.tuples(st.sampled_from([5, 10, 15, 20, 30, 60]), st.just("MINUTE")),
    st.tuples(st.integers(1, 2), st.just("HOUR")),
    periods,
)
DST_ZONES = tuple(zone for zone in ZONES if TRANSITIONS[zone])


@st.composite
def slot_across(draw: st.DrawFn, centre: int) -> list[dict[str, Any]]:
    """One slot around local minute `centre` (where a DST change happens), often grid-aligned."""
    unit = draw(st.sampled_from([1, 15, 30]))
    start = max(0, centre - draw(st.integers(0, 150)) // unit * unit)
    end = min(1440, centre + draw(st.integers(1, 150)) // unit * unit + unit)
    frequency, cadence = draw(aligned_periods)
    return [
        {"start": hhmm(start), "end": hhmm(end), "sync_frequency": frequency,
         "sync_cadence": cadence}
    ]  # fmt: skip


@st.composite
def cases(draw: st.DrawFn, dst_only: bool = False) -> tuple[dict[str, Any], datetime]:
    """A custom schedule and an instant.

    Two times in three (always with `dst_only`, where the instant also precedes the change by at
    most 26 hours) the instant is near a DST change; then the change's local date and the day
    before always have slots, and often the change's date has one slot spanning the change.
    """
    zone = draw(st.sampled_from(DST_ZONES if dst_only else ZONES))
    tz = ZoneInfo(zone)
    changes = TRANSITIONS[zone]
    weekdays = set(draw(st.sets(st.integers(0, 6), min_size=1, max_size=7)))
    chosen: dict[int, list[dict[str, Any]]] = {}
    if dst_only or (changes and draw(st.integers(0, 2)) > 0):
        change = draw(st.sampled_from(changes))
        if dst_only:
            after = change - timedelta(minutes=draw(st.integers(0, 26 * 60)))
        else:
            hours = draw(st.sampled_from([4, 4, 36]))
            after = change + timedelta(minutes=draw(st.integers(-hours * 60, hours * 60)))
        change_day = change.astimezone(tz).date()
        weekdays |= {change_day.weekday(), (change_day - timedelta(days=1)).weekday()}
        if draw(st.integers(0, 3)) > 0:
            # The wall time the clock shows just before the change, plus one minute.
            wall = (change - MINUTE).astimezone(tz)
            centre = wall.hour * 60 + wall.minute + 1
            chosen[change_day.weekday()] = draw(slot_across(centre))
    else:
        seconds = int((SPAN_END - SPAN_START).total_seconds())
        after = SPAN_START + timedelta(seconds=draw(st.integers(0, seconds)))
        after = after.replace(second=0)
    after += timedelta(seconds=draw(st.sampled_from([0, 0, 0, 1, 30, 59])))
    interval = {
        calendar.day_name[weekday].upper(): {
            "slots": chosen[weekday] if weekday in chosen else draw(slots_of_a_day())
        }
        for weekday in sorted(weekdays)
    }
    return {"type": "WEEK_BASED", "timezone": zone, "interval": interval}, after


# Properties ------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(cases())
def test_custom_next_sync_time_matches_brute_force(case: tuple[dict[str, Any], datetime]) -> None:
    custom, after = case
    assert implementation_next(custom, after) == reference_next(custom, after)


@settings(max_examples=150, deadline=None)
@given(cases(dst_only=True))
def test_custom_firings_across_a_dst_change_match_brute_force(
    case: tuple[dict[str, Any], datetime],
) -> None:
    """Chaining `next_sync_time` neither skips nor repeats a firing the reference makes."""
    custom, after = case
    end = after + timedelta(days=2)
    expected = [t for t in reference_firings(custom, after, 2 * 24 * 60 + 1) if t <= end]
    actual = sync_times_between(
        sync_frequency=1,
        sync_cadence="HOUR",
        use_custom_sync_schedule=True,
        custom_sync_schedule=custom,
        anchor=ANCHOR,
        start=after,
        end=end,
        limit=len(expected) + 1,  # a repeating answer fails the test instead of hanging it
    )
    assert actual == expected


# Default cadences ------------------------------------------------------------------------------

FIXED_SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400, "WEEK": 604800}


def reference_default(frequency: int, cadence: str, anchor: datetime, after: datetime) -> datetime:
    """Step k = 0, 1, 2, ... until past `after`; months by walking (year, month) forward."""
    year, month = anchor.year, anchor.month
    k = 0
    while True:
        if cadence == "MONTH":
            day = min(anchor.day, calendar.monthrange(year, month)[1])
            candidate = anchor.replace(year=year, month=month, day=day)
            month += frequency
            while month > 12:
                month -= 12
                year += 1
        else:
            candidate = anchor + timedelta(seconds=k * frequency * FIXED_SECONDS[cadence])
        if candidate > after:
            return candidate
        k += 1


@st.composite
def default_cases(draw: st.DrawFn) -> tuple[int, str, datetime, datetime]:
    cadence = draw(st.sampled_from(["SECOND", "MINUTE", "HOUR", "DAY", "WEEK", "MONTH"]))
    frequency = draw(st.integers(1, 24 if cadence == "MONTH" else 90))
    anchor = draw(
        st.datetimes(datetime(2020, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC))
    )
    period_s = frequency * FIXED_SECONDS.get(cadence, 31 * 86400)
    # Up to ~1000 periods away, so the reference's walk stays short; sometimes before the anchor.
    offset_s = draw(st.integers(-3 * period_s, 1000 * period_s))
    if draw(st.booleans()):
        exact = draw(st.integers(-3, 1000))  # land exactly on a period boundary (fixed cadences)
        offset_s = exact * period_s
    after = anchor + timedelta(
        seconds=offset_s, microseconds=draw(st.integers(0, 999_999) | st.just(0))
    )
    return frequency, cadence, anchor, after


@settings(max_examples=300, deadline=None)
@given(default_cases())
def test_default_next_sync_time_matches_stepping(case: tuple[int, str, datetime, datetime]) -> None:
    frequency, cadence, anchor, after = case
    actual = next_sync_time(
        sync_frequency=frequency,
        sync_cadence=cadence,
        use_custom_sync_schedule=False,
        custom_sync_schedule=None,
        anchor=anchor,
        after=after,
    )
    expected = anchor if after < anchor else reference_default(frequency, cadence, anchor, after)
    assert actual == expected


@settings(max_examples=100, deadline=None)
@given(
    st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)),
    st.integers(1, 24),
)
def test_monthly_syncs_keep_the_anchor_day_when_the_month_has_it(
    anchor: datetime, frequency: int
) -> None:
    times = sync_times_between(
        sync_frequency=frequency,
        sync_cadence="MONTH",
        use_custom_sync_schedule=False,
        custom_sync_schedule=None,
        anchor=anchor,
        start=anchor,
        end=anchor + timedelta(days=366 * 4),
    )
    for moment in times:
        assert moment.time() == anchor.time()
        last_day = calendar.monthrange(moment.year, moment.month)[1]
        assert moment.day == min(anchor.day, last_day)
    assert len({(t.year, t.month) for t in times}) == len(times)


def test_reference_sanity_new_york_gap_slot() -> None:
    """The reference itself reproduces the hand-checked spring-forward example."""
    custom = {
        "type": "WEEK_BASED",
        "timezone": "America/New_York",
        "interval": {"SUNDAY": {"slots": [{"start": "02:00", "end": "02:45",
                                           "sync_frequency": 15, "sync_cadence": "MINUTE"}]}},
    }  # fmt: skip
    fired = reference_next(custom, datetime(2026, 3, 8, 5, tzinfo=UTC))
    assert fired == datetime(2026, 3, 8, 7, tzinfo=UTC)  # 03:00 EDT
    assert date(2026, 3, 8).weekday() == calendar.SUNDAY
