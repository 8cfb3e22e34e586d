"""Errors the sandbox raises while answering the PMS dialect; `service` maps them to replies."""

from __future__ import annotations


class SandboxError(Exception):
    """Root of every error the sandbox raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RecordNotFound(SandboxError):
    """Raised when a read, update or delete names a record the tenant does not have (404)."""


class PayloadRejected(SandboxError):
    """Raised when a write's body breaks a validation rule (422); the message names the field."""
