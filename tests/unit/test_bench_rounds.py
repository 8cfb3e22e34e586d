"""bench.pipeline's `--repeat`: rounds of pmsq and its peer read together."""

from __future__ import annotations

import pytest

from bench.costs import RedisCounts
from bench.pipeline import (
    END_TO_END,
    FLOW,
    FRONT,
    WORKERS,
    PhaseCost,
    Round,
    SystemResult,
    Throughput,
    parse_args,
    summarise_rounds,
)

JOBS = 100


def system(
    name: str, cpu_ms_per_job: float, total_s: float, flow_round_trips: int = 0
) -> SystemResult:
    """A run whose end-to-end phase cost `cpu_ms_per_job`, split between front and workers."""
    cpu_s = cpu_ms_per_job * JOBS / 1000
    phase = PhaseCost(
        END_TO_END,
        JOBS,
        total_s,
        {FRONT: cpu_s / 4, WORKERS: cpu_s * 3 / 4},
        {},
        {FLOW: RedisCounts(flow_round_trips)},
    )
    return SystemResult(name, Throughput(name, JOBS, 0.5, total_s), None, [phase])


def test_a_round_divides_pmsq_by_the_peer_it_ran_beside() -> None:
    r = Round(system("pmsq", 9.0, 1.0, flow_round_trips=300), system("peer", 3.0, 0.25))
    assert r.cpu_ratio == pytest.approx(3.0)
    assert r.throughput_ratio == pytest.approx(0.25)
    assert r.flow_round_trips == pytest.approx(3.0)


def test_rounds_are_summarised_by_median_pooled_and_spread() -> None:
    rounds = [
        # A slow machine: both sides cost more, the ratio less.
        Round(system("pmsq", 12.0, 1.0, 300), system("peer", 5.0, 0.2)),  # 2.4
        Round(system("pmsq", 10.0, 1.0, 290), system("peer", 2.5, 0.25)),  # 4.0
        Round(system("pmsq", 8.7, 1.0, 310), system("peer", 3.0, 0.4)),  # 2.9
    ]
    summary = summarise_rounds(rounds, cpu_goal=3.0)
    assert summary.rounds == 3
    assert summary.cpu_ratio_median == pytest.approx(2.9)
    assert summary.cpu_ratio_range == pytest.approx((2.4, 4.0))
    # All of pmsq's CPU over all of the peer's: 30.7 / 10.5, not the mean of the ratios.
    assert summary.cpu_ratio_pooled == pytest.approx(30.7 / 10.5)
    assert summary.rounds_within_cpu_goal == 2
    assert summary.throughput_ratio_median == pytest.approx(0.25)
    assert summary.throughput_ratio_range == pytest.approx((0.2, 0.4))
    assert summary.flow_round_trips_median == pytest.approx(3.0)


def test_repeat_refuses_nonsense_and_a_profile_of_many_rounds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse_args(["--repeat", "5"]).repeat == 5
    for argv in (["--repeat", "0"], ["--repeat", "3", "--profile", "/tmp/profiles"]):
        with pytest.raises(SystemExit):
            parse_args(argv)
        assert "--repeat" in capsys.readouterr().err
