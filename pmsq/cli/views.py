"""Rich renderables of the `pmsq` command line, built from the API's JSON.

Pure functions of the data they are given: no I/O, so the command line decides when and where
to draw them (once, or frame by frame in a `rich.live.Live`). Text coming from the API (error
messages, URLs) is never read as rich markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from pmsq.cli.client import ApiError

#: Write statuses a write never leaves (the API's `WriteStatus` minus PENDING).
FINAL_WRITE_STATUSES = frozenset({"SUCCESS", "FAILURE", "PARTIAL_SUCCESS"})
#: Job statuses a job never leaves.
TERMINAL_JOB_STATUSES = frozenset({"SUCCESS", "FAILURE"})
#: Colour of each job, attempt or write status.
STATUS_STYLES = {
    "SUCCESS": "bold green",
    "FAILURE": "bold red",
    "PARTIAL_SUCCESS": "bold yellow",
    "RETRIED": "magenta",
    "RUNNING": "bold cyan",
    "QUEUED": "cyan",
    "PENDING": "dim cyan",
}


def status_text(status: str | None) -> Text:
    value = status or "-"
    return Text(value, style=STATUS_STYLES.get(value, ""))


# -- the job tree -------------------------------------------------------------------------------


@dataclass
class JobRow:
    """One job of a write's tree, folded from its per-attempt log entries."""

    id: str
    parent_job_id: str | None
    job_type: str
    status: str
    attempts: int
    error: str | None = None
    created_record_id: str | None = None
    #: The job's PMS exchanges over all its attempts, oldest first (the API's log summaries).
    logs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES


def jobs_from_attempts(entries: Iterable[dict[str, Any]]) -> list[JobRow]:
    """Folds `GET /v1/admin/logs/jobs/{id}` (one entry per attempt) into one row per job.

    Jobs keep the API's order (the tree's order); each row carries its latest status.
    """
    rows: dict[str, JobRow] = {}
    for entry in entries:
        job_id = str(entry.get("job_id") or entry.get("id"))
        row = JobRow(
            id=job_id,
            parent_job_id=entry.get("parent_job_id"),
            job_type=str(entry.get("job_type") or "?"),
            status=str(entry.get("status") or "?"),
            attempts=int(entry.get("attempts") or 0),
            error=entry.get("error"),
            created_record_id=entry.get("created_record_id"),
        )
        previous = rows.get(job_id)
        if previous is not None:
            row.logs = previous.logs
        row.logs.extend(entry.get("logs") or [])
        rows[job_id] = row
    return list(rows.values())


def _job_label(job: JobRow) -> Text:
    label = Text.assemble(
        (job.job_type, "bold"),
        "  ",
        status_text(job.status),
        (f"  attempts {job.attempts}", "dim"),
        (f"  {job.id}", "dim"),
    )
    if job.logs:
        last = job.logs[-1]
        label.append(f"\n{last.get('method', '?')} {last.get('url', '')} -> ")
        label.append_text(_http_status(last.get("response_status")))
    if job.created_record_id:
        label.append(f"\ncreated {job.created_record_id}", style="green")
    if job.error:
        label.append(f"\n{job.error}", style="red")
    return label


def job_tree(title: Text, jobs: Sequence[JobRow]) -> Tree:
    """The jobs nested under their parents; a job whose parent is not shown is a top level."""
    tree = Tree(title, guide_style="dim")
    nodes: dict[str, Tree] = {}
    ids = {job.id for job in jobs}
    pending = list(jobs)
    # Parents come before children in the API's order; loop until every job found its parent.
    while pending:
        rest = []
        for job in pending:
            parent = job.parent_job_id if job.parent_job_id in ids else None
            if parent is None:
                nodes[job.id] = tree.add(_job_label(job))
            elif parent in nodes:
                nodes[job.id] = nodes[parent].add(_job_label(job))
            else:
                rest.append(job)
        if len(rest) == len(pending):  # a cycle cannot happen; show them flat rather than hang
            for job in rest:
                nodes[job.id] = tree.add(_job_label(job))
            rest = []
        pending = rest
    return tree


def write_view(job_id: str, status: dict[str, Any], jobs: Sequence[JobRow]) -> Group:
    """A write: its status, a progress bar over its jobs, the job tree, and the outcome."""
    write_status = str(status.get("write_status") or "PENDING")
    final = write_status in FINAL_WRITE_STATUSES
    total = len(jobs)
    finished = sum(job.finished for job in jobs)
    if final:
        finished = total = max(total, finished, 1)
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        ProgressBar(total=max(total, 1), completed=finished, width=40),
        Text(f"{finished}/{total} jobs finished"),
    )
    title = Text.assemble(("write ", "bold"), (job_id, "bold"), "  ", status_text(write_status))
    parts: list[RenderableType] = [bar, job_tree(title, jobs)]
    if status.get("created_record_id"):
        parts.append(Text(f"created record id: {status['created_record_id']}", style="green"))
    for error in status.get("errors") or []:
        parts.append(Text(f"error: {error}", style="red"))
    return Group(*parts)


# -- logs ---------------------------------------------------------------------------------------


def _http_status(value: Any) -> Text:
    if value is None:
        return Text("-", style="dim")
    style = "green" if 200 <= int(value) < 300 else "yellow" if int(value) < 500 else "red"
    return Text(str(value), style=style)


def _request_text(log: dict[str, Any]) -> Text:
    """METHOD and the URL's path: the host is the integration's (the full URL is in --raw)."""
    url = str(log.get("url") or "")
    path = urlsplit(url).path or url
    return Text(f"{log.get('method', '?')} {path}")


def attempts_table(entries: Sequence[dict[str, Any]]) -> Table:
    """One row per PMS exchange of each attempt (an attempt without one gets a row of its own).

    Ids are shown whole (folded when narrow) so they can be passed to `logs --raw` / `status`.
    """
    table = Table(title="Attempts and PMS exchanges", title_justify="left")
    table.add_column("job", overflow="fold", min_width=12)
    table.add_column("attempt", justify="right")
    table.add_column("status")
    table.add_column("request", overflow="fold")
    table.add_column("http", justify="right")
    table.add_column("ms", justify="right")
    table.add_column("log id", overflow="fold")
    table.add_column("error", overflow="fold")
    for entry in entries:
        attempt = "-" if entry.get("attempt") is None else str(entry["attempt"])
        job = Text(str(entry.get("job_type") or ""), style="bold")
        job.append(f"\n{entry.get('job_id') or entry.get('id')}", style="dim")
        head = [job, Text(attempt), status_text(entry.get("attempt_status") or entry.get("status"))]
        logs = entry.get("logs") or []
        if not logs:
            table.add_row(*head, "-", "-", "-", "-", Text(entry.get("error") or "", style="red"))
        for log in logs:
            table.add_row(
                *head,
                _request_text(log),
                _http_status(log.get("response_status")),
                Text(f"{float(log.get('duration_ms') or 0):.0f}"),
                Text(str(log.get("id", ""))),
                Text(str(log.get("error") or ""), style="red"),
            )
    return table


# -- integrations -------------------------------------------------------------------------------


def integrations_table(integrations: Sequence[dict[str, Any]], *, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name, overflow in [
        ("id", "fold"),
        ("name", "fold"),
        ("vendor", "ellipsis"),
        ("base url", "fold"),
        ("active", "ellipsis"),
        ("rate limit", "ellipsis"),
        ("concurrency", "ellipsis"),
        ("credentials", "ellipsis"),
    ]:
        table.add_column(name, overflow=overflow)  # type: ignore[arg-type]
    for item in integrations:
        table.add_row(
            Text(str(item.get("id"))),
            Text(str(item.get("name"))),
            Text(str(item.get("vendor") or item.get("integration_vendor"))),
            Text(str(item.get("base_url") or "-")),
            Text("yes" if item.get("active") else "no"),
            Text(f"{item.get('max_request_frequency'):g}/{item.get('max_request_cadence')}"),
            Text(str(item.get("max_job_concurrency"))),
            Text("set" if item.get("has_credentials") else "none"),
        )
    return table


# -- errors -------------------------------------------------------------------------------------


def api_error_view(error: ApiError) -> Text:
    """The API's message, its code and status, then one line per detail (field: reason)."""
    text = Text.assemble(
        ("error: ", "bold red"), error.message, (f"  (HTTP {error.status}, {error.code})", "dim")
    )
    for detail in error.details:
        field_name = detail.get("field")
        reason = detail.get("reason") or detail.get("message") or ""
        extra = {k: v for k, v in detail.items() if k not in ("field", "reason", "message")}
        line = f"{field_name}: {reason}" if field_name else str(reason)
        if extra:
            line += "  " + ", ".join(f"{k}={v}" for k, v in extra.items())
        text.append(f"\n  - {line}")
    return text
