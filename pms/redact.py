"""Scrubs secrets from what pmsq logs: credential values anywhere, and auth headers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"
#: Header names whose values are secrets whatever they hold.
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "cookie", "set-cookie"}
)
#: Shorter values are not scrubbed from free text: they would blank out ordinary words.
MIN_SECRET_LENGTH = 4


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        values = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH}
        # Longest first, so a secret containing another is scrubbed whole.
        self._secrets = sorted(values, key=len, reverse=True)

    @classmethod
    def for_credentials(cls, credentials: Mapping[str, Any]) -> Redactor:
        return cls(_leaf_strings(credentials))

    def text(self, value: str | None) -> str | None:
        if value is None:
            return None
        for secret in self._secrets:
            value = value.replace(secret, REDACTED)
        return value

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """A redacted copy, read through `items()` alone: pass an `httpx.Headers` as it is
        (one pass over its list; `dict(headers)` would look each name up again, a scan of the
        whole list per name). Repeated names come out joined by ", ", as httpx joins them."""
        return {
            name: REDACTED if name.lower() in SECRET_HEADERS else (self.text(value) or "")
            for name, value in headers.items()
        }


def _leaf_strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _leaf_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaf_strings(item)
