"""`VersionedCopies`: a copy answers only at the version it was kept at, and the oldest kept
goes first once the bound is reached."""

from __future__ import annotations

from pmsq.workers.copies import VersionedCopies


def test_a_copy_answers_only_at_its_version() -> None:
    copies: VersionedCopies[str, str] = VersionedCopies()
    copies.keep("a", 1, "first")
    assert copies.get("a", 1) == "first"
    assert copies.get("a", 2) is None
    assert copies.get("a", None) is None  # no version known: nothing proves the copy current
    assert copies.get("b", 1) is None
    copies.keep("a", 2, "second")
    assert copies.get("a", 2) == "second"
    assert copies.get("a", 1) is None


def test_the_oldest_kept_goes_first_and_a_kept_again_one_is_newest() -> None:
    copies: VersionedCopies[str, int] = VersionedCopies(max_entries=2)
    copies.keep("a", 1, 1)
    copies.keep("b", 1, 2)
    copies.keep("a", 2, 3)  # kept again: now the newest
    copies.keep("c", 1, 4)  # over the bound: "b" goes
    assert copies.get("b", 1) is None
    assert copies.get("a", 2) == 3
    assert copies.get("c", 1) == 4
