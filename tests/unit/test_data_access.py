"""A model's read access as a sync found it: the refusal of that model, the models the sync
read before it gave up, and the ones it never reached."""

from __future__ import annotations

from typing import Any

from pmsq.api.services.data_access import read_outcome
from pmsq.models.schemas import AccessStatus
from pmsq.models.sync import SyncExecution, SyncStatus

MODELS = ["applicants", "leases", "residents"]


def _execution(status: SyncStatus, errors: list[str], cursor: dict[str, Any]) -> SyncExecution:
    return SyncExecution(
        integration_id="i", type="MANUAL", status=status.value, models=MODELS,
        errors=errors, cursor=cursor,
    )  # fmt: skip


def _outcomes(execution: SyncExecution) -> list[AccessStatus]:
    outcomes = []
    for index, model in enumerate(MODELS):
        outcome = read_outcome(execution, index, model)
        assert isinstance(outcome, AccessStatus), outcome
        outcomes.append(outcome)
    return outcomes


def test_a_refused_model_failed_and_the_others_succeeded() -> None:
    execution = _execution(
        SyncStatus.FAILURE, ["leases: PMS answered 403: no"], {"model": 3, "page": 1}
    )
    assert [(o.status, o.error_message) for o in _outcomes(execution)] == [
        ("SUCCESS", None), ("FAILED", "PMS answered 403: no"), ("SUCCESS", None),
    ]  # fmt: skip


def test_a_sync_that_gave_up_failed_the_models_it_had_not_read() -> None:
    execution = _execution(SyncStatus.FAILURE, ["gave up after 5 deliveries"], {"model": 1})
    assert [(o.status, o.error_message) for o in _outcomes(execution)] == [
        ("SUCCESS", None),
        ("FAILED", "gave up after 5 deliveries"),
        ("FAILED", "gave up after 5 deliveries"),
    ]


def test_a_running_sync_is_processing_what_it_has_not_read_yet() -> None:
    execution = _execution(SyncStatus.RUNNING, [], {"model": 2, "page": 3})
    assert [o.status for o in _outcomes(execution)] == ["SUCCESS", "SUCCESS", "PROCESSING"]
