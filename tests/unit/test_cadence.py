"""Examples of the sync schedule rules (scheduler/RULES.md), one behaviour per test.

Local instants are written and compared as "YYYY-MM-DD HH:MM+hhmm" strings in the schedule's
zone, so a DST case reads as the wall clock a user would see, offset included.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pmsq.scheduler.cadence import add_months, next_sync_time, sync_times_between

NEW_YORK = "America/New_York"
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)

#: Seed 003's custom schedule, as the API stores it.
SEED_003: dict[str, Any] = {
    "type": "WEEK_BASED",
    "timezone": NEW_YORK,
    "interval": {
        "SUNDAY": {"slots": [{"start": "08:00", "end": "12:00", "sync_frequency": 30,
                              "sync_cadence": "MINUTE"}]},
        **{
            day: {"slots": [{"start": "09:00", "end": "17:00", "sync_frequency": 15,
                             "sync_cadence": "MINUTE"}]}
            for day in ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY")
        },
        "FRIDAY": {"slots": [{"start": "09:00", "end": "16:00", "sync_frequency": 15,
                              "sync_cadence": "MINUTE"}]},
        "SATURDAY": {"slots": [{"start": "10:00", "end": "14:00", "sync_frequency": 30,
                                "sync_cadence": "MINUTE"}]},
    },
}  # fmt: skip


def schedule(zone: str, days: dict[str, list[tuple[str, str, int, str]]]) -> dict[str, Any]:
    """A WEEK_BASED schedule from (start, end, frequency, cadence) tuples per weekday."""
    return {
        "type": "WEEK_BASED",
        "timezone": zone,
        "interval": {
            day: {
                "slots": [
                    {"start": s, "end": e, "sync_frequency": f, "sync_cadence": c}
                    for s, e, f, c in slots
                ]
            }
            for day, slots in days.items()
        },
    }


def local(zone: str, text: str, fold: int = 0) -> datetime:
    """The UTC instant of a local wall time "YYYY-MM-DD HH:MM"."""
    wall = datetime.strptime(text, "%Y-%m-%d %H:%M")
    return wall.replace(tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


def show(zone: str, instant: datetime | None) -> str | None:
    if instant is None:
        return None
    return instant.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M%z")


def next_custom(custom: dict[str, Any], after: datetime) -> datetime | None:
    return next_sync_time(
        sync_frequency=12,
        sync_cadence="HOUR",
        use_custom_sync_schedule=True,
        custom_sync_schedule=custom,
        anchor=ANCHOR,
        after=after,
    )


def custom_times(custom: dict[str, Any], start: datetime, end: datetime) -> list[str | None]:
    times = sync_times_between(
        sync_frequency=12,
        sync_cadence="HOUR",
        use_custom_sync_schedule=True,
        custom_sync_schedule=custom,
        anchor=ANCHOR,
        start=start,
        end=end,
    )
    return [show(custom["timezone"], t) for t in times]


def next_default(frequency: int, cadence: str, anchor: datetime, after: datetime) -> datetime:
    result = next_sync_time(
        sync_frequency=frequency,
        sync_cadence=cadence,
        use_custom_sync_schedule=False,
        custom_sync_schedule=None,
        anchor=anchor,
        after=after,
    )
    assert result is not None
    return result


# Default cadence -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frequency", "cadence", "after", "expected"),
    [
        (30, "SECOND", timedelta(seconds=45), timedelta(seconds=60)),
        (15, "MINUTE", timedelta(minutes=15), timedelta(minutes=30)),
        (15, "MINUTE", timedelta(minutes=14, seconds=59), timedelta(minutes=15)),
        (12, "HOUR", timedelta(hours=25), timedelta(hours=36)),
        (2, "DAY", timedelta(days=3, microseconds=1), timedelta(days=4)),
        (1, "WEEK", timedelta(days=20), timedelta(days=21)),
    ],
)
def test_default_fixed_cadences_count_whole_periods_from_the_anchor(
    frequency: int, cadence: str, after: timedelta, expected: timedelta
) -> None:
    anchor = datetime(2026, 3, 7, 12, 34, 56, tzinfo=UTC)
    assert next_default(frequency, cadence, anchor, anchor + after) == anchor + expected


def test_default_cadence_is_utc_arithmetic_across_a_dst_change() -> None:
    # A DAY is 24 hours, whatever the local clocks do (custom schedules follow wall time).
    anchor = datetime(2026, 3, 7, 15, tzinfo=UTC)
    assert next_default(1, "DAY", anchor, anchor) == datetime(2026, 3, 8, 15, tzinfo=UTC)


def test_default_before_the_anchor_is_the_anchor_and_at_the_anchor_is_one_period_on() -> None:
    anchor = datetime(2026, 5, 1, 8, tzinfo=UTC)
    assert next_default(1, "HOUR", anchor, anchor - timedelta(days=3)) == anchor
    assert next_default(1, "HOUR", anchor, anchor) == anchor + timedelta(hours=1)


def test_month_clamps_to_the_month_length_without_drifting() -> None:
    anchor = datetime(2026, 1, 31, 10, 30, tzinfo=UTC)
    times = sync_times_between(
        sync_frequency=1,
        sync_cadence="MONTH",
        use_custom_sync_schedule=False,
        custom_sync_schedule=None,
        anchor=anchor,
        start=anchor,
        end=datetime(2026, 6, 1, tzinfo=UTC),
    )
    assert [t.strftime("%Y-%m-%d %H:%M") for t in times] == [
        "2026-02-28 10:30",
        "2026-03-31 10:30",
        "2026-04-30 10:30",
        "2026-05-31 10:30",
    ]


def test_month_lands_on_february_29_in_a_leap_year_and_steps_by_frequency() -> None:
    anchor = datetime(2027, 12, 31, tzinfo=UTC)
    assert next_default(2, "MONTH", anchor, anchor) == datetime(2028, 2, 29, tzinfo=UTC)
    assert next_default(2, "MONTH", anchor, datetime(2028, 2, 29, tzinfo=UTC)) == datetime(
        2028, 4, 30, tzinfo=UTC
    )
    assert next_default(12, "MONTH", anchor, datetime(2030, 6, 1, tzinfo=UTC)) == datetime(
        2030, 12, 31, tzinfo=UTC
    )


def test_add_months_crosses_year_boundaries_in_both_directions() -> None:
    moment = datetime(2026, 3, 31, 7, tzinfo=UTC)
    assert add_months(moment, 11) == datetime(2027, 2, 28, 7, tzinfo=UTC)
    assert add_months(moment, -1) == datetime(2026, 2, 28, 7, tzinfo=UTC)
    assert add_months(moment, -15) == datetime(2024, 12, 31, 7, tzinfo=UTC)


def test_naive_instants_are_read_as_utc() -> None:
    anchor = datetime(2026, 1, 1)
    after = datetime(2026, 1, 1, 0, 10)
    result = next_default(15, "MINUTE", anchor, after)
    assert result == datetime(2026, 1, 1, 0, 15, tzinfo=UTC)
    assert result.tzinfo is UTC


def test_use_custom_without_a_stored_schedule_falls_back_to_the_default_cadence() -> None:
    result = next_sync_time(
        sync_frequency=15,
        sync_cadence="MINUTE",
        use_custom_sync_schedule=True,
        custom_sync_schedule=None,
        anchor=ANCHOR,
        after=ANCHOR,
    )
    assert result == ANCHOR + timedelta(minutes=15)


def test_a_custom_schedule_is_ignored_unless_opted_in() -> None:
    result = next_sync_time(
        sync_frequency=15,
        sync_cadence="MINUTE",
        use_custom_sync_schedule=False,
        custom_sync_schedule=SEED_003,
        anchor=ANCHOR,
        after=ANCHOR,
    )
    assert result == ANCHOR + timedelta(minutes=15)


def test_a_frequency_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        next_default(0, "HOUR", ANCHOR, ANCHOR)


# Custom schedules ------------------------------------------------------------------------------


def test_seed_003_after_the_last_monday_slot_time_is_tuesday_morning() -> None:
    after = local(NEW_YORK, "2026-05-04 16:50")  # a Monday
    assert show(NEW_YORK, next_custom(SEED_003, after)) == "2026-05-05 09:00-0400"


def test_seed_003_inside_a_slot_steps_by_the_slot_period() -> None:
    assert show(NEW_YORK, next_custom(SEED_003, local(NEW_YORK, "2026-05-04 09:00"))) == (
        "2026-05-04 09:15-0400"
    )
    assert show(NEW_YORK, next_custom(SEED_003, local(NEW_YORK, "2026-05-04 08:59"))) == (
        "2026-05-04 09:00-0400"
    )
    # Friday's slot ends at 16:00; Saturday's starts at 10:00 and steps by 30 minutes.
    assert show(NEW_YORK, next_custom(SEED_003, local(NEW_YORK, "2026-05-08 15:45"))) == (
        "2026-05-09 10:00-0400"
    )
    assert show(NEW_YORK, next_custom(SEED_003, local(NEW_YORK, "2026-05-09 10:00"))) == (
        "2026-05-09 10:30-0400"
    )


def test_seed_003_a_winter_day_uses_standard_time() -> None:
    start = local(NEW_YORK, "2026-01-11 00:00")  # a Sunday
    times = custom_times(SEED_003, start, local(NEW_YORK, "2026-01-11 23:59"))
    assert times == [f"2026-01-11 {h}-0500" for h in (
        "08:00", "08:30", "09:00", "09:30", "10:00", "10:30", "11:00", "11:30")]  # fmt: skip


def test_a_sunday_only_schedule_waits_for_the_next_sunday() -> None:
    custom = schedule("Europe/London", {"SUNDAY": [("06:00", "07:00", 1, "HOUR")]})
    after = local("Europe/London", "2026-06-07 06:00")  # a Sunday, just fired
    assert show("Europe/London", next_custom(custom, after)) == "2026-06-14 06:00+0100"


def test_a_slot_may_end_at_24_00() -> None:
    custom = schedule("UTC", {"FRIDAY": [("23:00", "24:00", 20, "MINUTE")]})
    times = custom_times(custom, local("UTC", "2026-06-05 22:00"), local("UTC", "2026-06-13 00:00"))
    assert times == [
        "2026-06-05 23:00+0000",
        "2026-06-05 23:20+0000",
        "2026-06-05 23:40+0000",
        "2026-06-12 23:00+0000",
        "2026-06-12 23:20+0000",
        "2026-06-12 23:40+0000",
    ]


def test_long_slot_cadences_fire_once_at_the_slot_start() -> None:
    custom = schedule(
        NEW_YORK,
        {
            "MONDAY": [("08:00", "09:00", 1, "DAY"), ("10:00", "12:00", 1, "WEEK")],
            "TUESDAY": [("13:00", "24:00", 3, "MONTH"), ("01:00", "05:00", 300, "MINUTE")],
        },
    )
    start = local(NEW_YORK, "2026-05-04 00:00")
    times = custom_times(custom, start, start + timedelta(days=2))
    assert times == [
        "2026-05-04 08:00-0400",
        "2026-05-04 10:00-0400",
        "2026-05-05 01:00-0400",
        "2026-05-05 13:00-0400",
    ]


def test_several_slots_on_one_day_fire_in_order_and_only_inside_slots() -> None:
    custom = schedule(
        "America/Chicago",
        {"WEDNESDAY": [("14:00", "15:00", 30, "MINUTE"), ("06:00", "06:05", 1, "MINUTE")]},
    )
    start = local("America/Chicago", "2026-07-01 00:00")
    assert custom_times(custom, start, start + timedelta(days=1)) == [
        "2026-07-01 06:00-0500",
        "2026-07-01 06:01-0500",
        "2026-07-01 06:02-0500",
        "2026-07-01 06:03-0500",
        "2026-07-01 06:04-0500",
        "2026-07-01 14:00-0500",
        "2026-07-01 14:30-0500",
    ]


def test_an_empty_schedule_never_fires() -> None:
    assert next_custom(schedule(NEW_YORK, {}), ANCHOR) is None
    assert next_custom(schedule(NEW_YORK, {"MONDAY": [], "FRIDAY": []}), ANCHOR) is None
    assert next_custom({"type": "WEEK_BASED", "timezone": "UTC"}, ANCHOR) is None


# Daylight-saving time --------------------------------------------------------------------------


def day_times(zone: str, day: str, slots: list[tuple[str, str, int, str]]) -> list[str | None]:
    """Every firing on local date `day` (and just after it) of `slots` placed on its weekday."""
    weekday = datetime.strptime(day, "%Y-%m-%d").strftime("%A").upper()
    custom = schedule(zone, {weekday: slots})
    start = local(zone, f"{day} 00:00") - timedelta(minutes=1)
    return custom_times(custom, start, start + timedelta(days=1, hours=2))


def test_new_york_spring_forward_skips_wall_times_that_do_not_exist() -> None:
    # 2026-03-08 02:00 EST jumps to 03:00 EDT: 02:00 and 02:30 never happen.
    assert day_times(NEW_YORK, "2026-03-08", [("01:00", "04:00", 30, "MINUTE")]) == [
        "2026-03-08 01:00-0500",
        "2026-03-08 01:30-0500",
        "2026-03-08 03:00-0400",
        "2026-03-08 03:30-0400",
    ]


def test_new_york_a_slot_wholly_inside_the_gap_fires_once_at_its_end() -> None:
    assert day_times(NEW_YORK, "2026-03-08", [("02:00", "02:45", 15, "MINUTE")]) == [
        "2026-03-08 03:00-0400"
    ]


def test_a_gap_slot_and_a_slot_at_the_gap_end_are_one_sync() -> None:
    slots = [("02:00", "02:45", 15, "MINUTE"), ("03:00", "03:10", 5, "MINUTE")]
    assert day_times(NEW_YORK, "2026-03-08", slots) == [
        "2026-03-08 03:00-0400",
        "2026-03-08 03:05-0400",
    ]


def test_a_slot_partly_in_the_gap_does_not_add_a_gap_end_firing() -> None:
    # 01:50 exists, so the slot has not vanished; 02:10 and 02:30 are simply skipped.
    assert day_times(NEW_YORK, "2026-03-08", [("01:50", "02:40", 20, "MINUTE")]) == [
        "2026-03-08 01:50-0500"
    ]


def test_new_york_fall_back_fires_the_repeated_hour_once() -> None:
    # 2026-11-01 02:00 EDT falls back to 01:00 EST: 01:00-01:59 happens twice.
    assert day_times(NEW_YORK, "2026-11-01", [("00:30", "03:00", 30, "MINUTE")]) == [
        "2026-11-01 00:30-0400",
        "2026-11-01 01:00-0400",
        "2026-11-01 01:30-0400",
        "2026-11-01 02:00-0500",
        "2026-11-01 02:30-0500",
    ]


def test_during_the_repeated_hour_the_next_sync_is_after_it() -> None:
    custom = schedule(NEW_YORK, {"SUNDAY": [("00:30", "03:00", 30, "MINUTE")]})
    second_pass = local(NEW_YORK, "2026-11-01 01:10", fold=1)  # 06:10 UTC, EST
    assert show(NEW_YORK, next_custom(custom, second_pass)) == "2026-11-01 02:00-0500"
    first_pass = local(NEW_YORK, "2026-11-01 01:10", fold=0)  # 05:10 UTC, EDT
    assert show(NEW_YORK, next_custom(custom, first_pass)) == "2026-11-01 01:30-0400"


def test_a_slot_inside_the_repeated_hour_fires_on_its_first_pass_only() -> None:
    assert day_times(NEW_YORK, "2026-11-01", [("01:15", "01:45", 10, "MINUTE")]) == [
        "2026-11-01 01:15-0400",
        "2026-11-01 01:25-0400",
        "2026-11-01 01:35-0400",
    ]


def test_london_spring_forward() -> None:
    # 2026-03-29 01:00 GMT jumps to 02:00 BST.
    zone = "Europe/London"
    assert day_times(zone, "2026-03-29", [("00:30", "02:30", 30, "MINUTE")]) == [
        "2026-03-29 00:30+0000",
        "2026-03-29 02:00+0100",
    ]
    assert day_times(zone, "2026-03-29", [("01:00", "02:00", 20, "MINUTE")]) == [
        "2026-03-29 02:00+0100"
    ]


def test_london_fall_back() -> None:
    # 2026-10-25 02:00 BST falls back to 01:00 GMT.
    assert day_times("Europe/London", "2026-10-25", [("00:00", "03:00", 1, "HOUR")]) == [
        "2026-10-25 00:00+0100",
        "2026-10-25 01:00+0100",
        "2026-10-25 02:00+0000",
    ]


def test_sydney_fall_back_in_april() -> None:
    # 2026-04-05 03:00 AEDT falls back to 02:00 AEST.
    assert day_times("Australia/Sydney", "2026-04-05", [("01:00", "04:00", 30, "MINUTE")]) == [
        "2026-04-05 01:00+1100",
        "2026-04-05 01:30+1100",
        "2026-04-05 02:00+1100",
        "2026-04-05 02:30+1100",
        "2026-04-05 03:00+1000",
        "2026-04-05 03:30+1000",
    ]


def test_sydney_spring_forward_in_october() -> None:
    # 2026-10-04 02:00 AEST jumps to 03:00 AEDT.
    zone = "Australia/Sydney"
    assert day_times(zone, "2026-10-04", [("01:45", "03:15", 15, "MINUTE")]) == [
        "2026-10-04 01:45+1000",
        "2026-10-04 03:00+1100",
    ]
    assert day_times(zone, "2026-10-04", [("02:15", "02:45", 15, "MINUTE")]) == [
        "2026-10-04 03:00+1100"
    ]


def test_sync_times_between_honours_its_limit() -> None:
    start = local(NEW_YORK, "2026-05-04 00:00")
    times = sync_times_between(
        sync_frequency=1,
        sync_cadence="SECOND",
        use_custom_sync_schedule=True,
        custom_sync_schedule=SEED_003,
        anchor=ANCHOR,
        start=start,
        end=start + timedelta(days=7),
        limit=3,
    )
    assert [show(NEW_YORK, t) for t in times] == [
        "2026-05-04 09:00-0400",
        "2026-05-04 09:15-0400",
        "2026-05-04 09:30-0400",
    ]


def test_a_next_time_query_takes_well_under_a_millisecond() -> None:
    after = local(NEW_YORK, "2026-05-04 16:50")
    calls = 500
    began = time.perf_counter()
    for i in range(calls):
        next_custom(SEED_003, after + timedelta(minutes=7 * i))
    per_call_s = (time.perf_counter() - began) / calls
    assert per_call_s < 1e-3
