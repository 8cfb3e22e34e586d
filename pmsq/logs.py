"""Structured logs: every record carries the job, write and integration it concerns.

`log_context(...)` sets those ids for the code running inside it (context variables, so
threads and tasks don't mix them up), and on the current trace span (`pmsq.tracing` stamps
them on the spans started inside); `ContextFilter` stamps them on every record; with
PMSQ_LOG_FORMAT=json, `JsonFormatter` writes one JSON object per line. Nothing here ever sees
credentials: connectors redact before anything is logged.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime

from opentelemetry import trace

#: Fields every record gets (None outside a job).
CONTEXT_FIELDS = ("job_id", "root_job_id", "integration_id")
_context: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "pmsq_log_context", default=()
)


def current_ids() -> dict[str, str]:
    """The ids the innermost `log_context` set."""
    return dict(_context.get())


def span_attributes(ids: Mapping[str, str | None]) -> dict[str, str]:
    """Context ids as trace span attributes (`pmsq.job_id`, ...)."""
    return {f"pmsq.{name}": value for name, value in ids.items() if value}


@contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    merged = {**dict(_context.get()), **{k: v for k, v in ids.items() if v}}
    # The span running now (a write's request, a job's task) is about the same job. A span
    # that records nothing (tracing off) would drop them: not built for it.
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(span_attributes(ids))
    token = _context.set(tuple(merged.items()))
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        current = dict(_context.get())
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, current.get(name))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **{name: getattr(record, name, None) for name in CONTEXT_FIELDS},
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def install(handler: logging.Handler, log_format: str) -> None:
    """Stamp context ids on the handler's records, and format them as asked."""
    handler.addFilter(ContextFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
