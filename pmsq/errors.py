"""The one error hierarchy of pmsq. HTTP maps these to status codes in `pmsq.api.errors`."""

from __future__ import annotations

from typing import Any


class PmsqError(Exception):
    """Root of every error pmsq raises on purpose."""

    code = "internal_error"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class ValidationFailed(PmsqError):
    """Raised when a request's payload breaks a rule; `details` names each bad field."""

    code = "validation_error"


class UnknownFields(ValidationFailed):
    """Raised when a write carries fields its integration's PMS does not support."""

    code = "unknown_fields"


class UnsupportedOperation(ValidationFailed):
    """Raised when the integration's PMS cannot perform the model/action at all."""

    code = "unsupported_operation"


class NotFound(PmsqError):
    """Raised when a resource does not exist or belongs to another account."""

    code = "not_found"


class PayloadTooLarge(PmsqError):
    """Raised when a request body exceeds PMSQ_MAX_BODY_BYTES."""

    code = "payload_too_large"


class Unauthorized(PmsqError):
    """Raised when a request carries no valid bearer token."""

    code = "unauthorized"


class Conflict(PmsqError):
    """Raised when a request is valid but the resource's state forbids it."""

    code = "conflict"


class IdempotencyKeyReused(PmsqError):
    """Raised when an Idempotency-Key comes back with a request other than its first."""

    code = "idempotency_key_reused"


class IllegalTransition(PmsqError):
    """Raised when code asks a job to move between statuses the state machine forbids."""

    code = "illegal_transition"


class PmsError(PmsqError):
    """Raised by connectors when the PMS answers with an error.

    `retryable` errors (5xx, timeouts, connection failures) are retried with backoff;
    others (4xx validation) fail the job at once with the PMS's message.
    """

    code = "pms_error"

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        #: The request may have been applied before the error (a timeout on a write).
        self.outcome_unknown = False


class DestinationRefused(PmsError):
    """Raised when an outbound request (to a PMS or a webhook receiver) would connect to an
    address the outbound policy refuses (loopback, private, link-local, ...). Final: nothing was
    sent, and sending again would be refused again."""

    code = "destination_refused"

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class PmsThrottled(PmsError):
    """Raised when the PMS answers 429; it pauses the integration and burns no attempt."""

    code = "pms_throttled"


class FencedOut(PmsqError):
    """Raised before a PMS request when the worker's claim no longer holds the job's lease (it
    lapsed while the worker was paused, or the job was handed to a newer delivery): the worker
    stops without sending, records no outcome and releases nothing it no longer owns."""

    code = "fenced_out"


class JobFailed(PmsqError):
    """Raised by the job task after the job store recorded the job's FAILURE, so Celery marks
    the task failed and Flower lists it with the job's error (the PMS's message). The message is
    acked all the same: the outcome is already committed and nothing is run again."""

    code = "job_failed"


class JobRetrying(PmsqError):
    """Carried by the `Retry` the job task raises when the job went back to PENDING for another
    attempt: the error that attempt ended with, as Flower shows it on the retried task."""

    code = "job_retrying"


class ConfigurationError(PmsqError):
    """Raised at start-up when settings cannot work together (a Sentinel Redis URL without the
    master's name, say); the message names the setting, never a secret it holds."""

    code = "configuration_error"
