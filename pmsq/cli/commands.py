"""The `pmsq` command line.

Run the processes (`api`, `sandbox`, `migrate`, `token create`, `demo`) and drive a running API
as a client (`integrations list|create`, `write`, `status --watch`, `logs`). Client commands take
`--url` (env PMSQ_API_URL) and `--token` (env PMSQ_TOKEN); the token is never printed.

Exit codes: 0 done (a write ended SUCCESS); 1 a write ended FAILURE or PARTIAL_SUCCESS; 2 bad
usage or input file; 3 the API refused the request or could not be reached; 4 the write is still
PENDING (`status` without `--watch`, or `--timeout` ran out); 130 interrupted.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from pmsq.cli.client import DEFAULT_API_URL, ApiError, ApiUnreachable, PmsqClient
from pmsq.cli.views import (
    FINAL_WRITE_STATUSES,
    JobRow,
    api_error_view,
    attempts_table,
    integrations_table,
    jobs_from_attempts,
    write_view,
)
from pmsq.models.enums import Cadence, Vendor
from pmsq.settings import get_settings

EXIT_OK = 0
#: The write ended FAILURE or PARTIAL_SUCCESS.
EXIT_WRITE_FAILED = 1
#: Bad usage (click's own code) or an unreadable input file.
EXIT_USAGE = 2
#: The API answered with an error, or could not be reached.
EXIT_API_ERROR = 3
#: The write is not final yet.
EXIT_PENDING = 4
EXIT_INTERRUPTED = 130
#: Exit code of `status` by final write status.
EXIT_BY_WRITE_STATUS = {
    "SUCCESS": EXIT_OK,
    "FAILURE": EXIT_WRITE_FAILED,
    "PARTIAL_SUCCESS": EXIT_WRITE_FAILED,
}
#: Pause between polls of `status --watch` unless `--interval` says otherwise.
DEFAULT_POLL_INTERVAL_S = 0.5


@dataclass(frozen=True)
class CliWiring:
    """What the client commands are wired to; tests pass their own as click's `obj`.

    `transport` None means real HTTP; `console` None means a console on the real stdout.
    """

    transport: httpx.BaseTransport | None = None
    console: Console | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


app = typer.Typer(
    name="pmsq",
    help="pmsq: a distributed job queue writing to Property Management Systems.",
    no_args_is_help=True,
    add_completion=False,
    # A traceback with locals would print the token; unexpected errors show a plain traceback.
    pretty_exceptions_show_locals=False,
)
token_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
integrations_app = typer.Typer(help="List and create integrations.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(integrations_app, name="integrations")

UrlOption = Annotated[
    str,
    typer.Option("--url", envvar="PMSQ_API_URL", help="Base URL of the pmsq API."),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="PMSQ_TOKEN", show_default=False, help="API token (never printed)."
    ),
]


# -- running the processes ----------------------------------------------------------------------


@app.command()
def api(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the producer API (uvicorn)."""
    _serve_api(host, port)


@app.command()
def sandbox(host: str = "127.0.0.1", port: int = 8001) -> None:
    """Serve the simulated PMS."""
    from pmsq.pms.sandbox.server import run

    run(host, port)


@app.command()
def migrate() -> None:
    """Bring the database to the latest schema."""
    from pmsq.models.migrate import upgrade

    upgrade(get_settings().database_url)


@token_app.command("create")
def token_create(account: str) -> None:
    """Print a new token for ACCOUNT (the token alone on stdout)."""
    typer.echo(_create_token(account))


@app.command()
def demo() -> None:
    """Run the whole write path end to end on this machine."""
    from pmsq.cli.demo import main as demo_main

    raise typer.Exit(demo_main())


def _serve_api(host: str, port: int) -> None:
    from pmsq.api.server import serve

    serve(get_settings(), host, port)


def _create_token(account: str) -> str:
    from pmsq.api.auth import create_token
    from pmsq.models.db import make_engine, make_session_factory
    from pmsq.models.migrate import upgrade

    settings = get_settings()
    if settings.auto_migrate:
        upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine).begin() as session:
            return create_token(session, account)
    finally:
        engine.dispose()


# -- client plumbing ----------------------------------------------------------------------------


def _wiring(ctx: typer.Context) -> CliWiring:
    obj = ctx.find_object(CliWiring)
    return obj if obj is not None else CliWiring()


def _stdout(ctx: typer.Context) -> Console:
    return _wiring(ctx).console or Console()


def _stderr() -> Console:
    return Console(stderr=True)


@contextmanager
def _client(ctx: typer.Context, url: str, token: str | None) -> Iterator[PmsqClient]:
    """A client of the API; an API error inside the block is printed and exits with 3."""
    if not token:
        raise typer.BadParameter(
            "no API token: pass --token or set PMSQ_TOKEN (`pmsq token create ACCOUNT` makes one)",
            param_hint="--token",
        )
    try:
        with PmsqClient(url, token, transport=_wiring(ctx).transport) as client:
            yield client
    except ApiError as exc:
        _stderr().print(api_error_view(exc))
        raise typer.Exit(EXIT_API_ERROR) from None
    except ApiUnreachable as exc:
        _stderr().print(Text.assemble(("error: ", "bold red"), exc.message))
        raise typer.Exit(EXIT_API_ERROR) from None


def _read_json(source: str, param_hint: str) -> Any:
    """JSON from a file path, or from stdin when `source` is "-"."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot read {source}: {exc.strerror}", param_hint=param_hint
        ) from None
    return _parse_json(text, f"{source} is not valid JSON", param_hint)


def _parse_json(text: str, what: str, param_hint: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(
            f"{what}: {exc.msg} (line {exc.lineno}, column {exc.colno})", param_hint=param_hint
        ) from None


# -- integrations -------------------------------------------------------------------------------


@integrations_app.command("list")
def integrations_list(
    ctx: typer.Context,
    url: UrlOption = DEFAULT_API_URL,
    token: TokenOption = None,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=250)] = 100,
) -> None:
    """List this account's integrations."""
    with _client(ctx, url, token) as client:
        page = client.list_integrations(offset=offset, limit=limit)
    results = page.get("results") or []
    meta = page.get("meta") or {}
    console = _stdout(ctx)
    if not results:
        console.print("no integrations yet: create one with `pmsq integrations create`")
        return
    total = meta.get("total", len(results))
    title = f"Integrations {offset + 1}-{offset + len(results)} of {total}"
    console.print(integrations_table(results, title=title))


@integrations_app.command("create")
def integrations_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="A name for people.")],
    vendor: Annotated[Vendor, typer.Option(case_sensitive=False, help="The PMS.")],
    base_url: Annotated[str, typer.Option(help="Where the PMS answers.")],
    credentials_json: Annotated[
        str | None,
        typer.Option(help="Credentials as a JSON object (visible in `ps`; prefer a file)."),
    ] = None,
    credentials_file: Annotated[
        str | None,
        typer.Option(help='A file holding the credentials JSON object ("-": stdin).'),
    ] = None,
    max_request_frequency: Annotated[
        float | None, typer.Option(help="Requests allowed per --max-request-cadence.")
    ] = None,
    max_request_cadence: Annotated[Cadence | None, typer.Option(case_sensitive=False)] = None,
    max_job_concurrency: Annotated[
        int | None, typer.Option(help="Jobs of this integration running at once.")
    ] = None,
    sync_frequency: Annotated[int | None, typer.Option(help="Syncs per --sync-cadence.")] = None,
    sync_cadence: Annotated[Cadence | None, typer.Option(case_sensitive=False)] = None,
    active: Annotated[
        bool, typer.Option("--active/--inactive", help="Take writes and sync from the start.")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the id.")] = False,
    url: UrlOption = DEFAULT_API_URL,
    token: TokenOption = None,
) -> None:
    """Create an integration; prints it (its credentials are never shown back)."""
    spec: dict[str, Any] = {
        "name": name,
        "integration_vendor": vendor.value,
        "base_url": base_url,
        # The API's default is Propexo's (inactive); the command line creates one ready to use.
        "active": active,
    }
    credentials = _credentials(credentials_json, credentials_file)
    if credentials is not None:
        spec["credentials"] = credentials
    optional = {
        "max_request_frequency": max_request_frequency,
        "max_request_cadence": max_request_cadence.value if max_request_cadence else None,
        "max_job_concurrency": max_job_concurrency,
        "sync_frequency": sync_frequency,
        "sync_cadence": sync_cadence.value if sync_cadence else None,
    }
    spec.update({key: value for key, value in optional.items() if value is not None})
    with _client(ctx, url, token) as client:
        created = client.create_integration(spec)
    if quiet:
        typer.echo(created["id"])
    else:
        _stdout(ctx).print(integrations_table([created], title="Created integration"))


def _credentials(as_json: str | None, file: str | None) -> dict[str, Any] | None:
    if as_json is not None and file is not None:
        raise typer.BadParameter(
            "give one of them, not both", param_hint="--credentials-json / --credentials-file"
        )
    if as_json is not None:
        value = _parse_json(as_json, "not valid JSON", "--credentials-json")
        hint = "--credentials-json"
    elif file is not None:
        value, hint = _read_json(file, "--credentials-file"), "--credentials-file"
    else:
        return None
    if not isinstance(value, dict):
        raise typer.BadParameter("credentials must be a JSON object", param_hint=hint)
    return value


# -- writes -------------------------------------------------------------------------------------


@app.command()
def write(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The model, e.g. residents or applicants.")],
    file: Annotated[str, typer.Argument(metavar="FILE.json", help='The body ("-": stdin).')],
    record_id: Annotated[
        str | None, typer.Option("--id", help="Update this PMS record instead of creating one.")
    ] = None,
    ignore_unknown_fields: Annotated[
        bool, typer.Option(help="Strip fields the integration's PMS does not support.")
    ] = False,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submitting again with this key replays the first answer.")
    ] = None,
    watch: Annotated[bool, typer.Option(help="Then follow it as `status --watch` does.")] = False,
    interval: Annotated[float, typer.Option(min=0, help="Seconds between polls.")] = (
        DEFAULT_POLL_INTERVAL_S
    ),
    url: UrlOption = DEFAULT_API_URL,
    token: TokenOption = None,
) -> None:
    """Submit a write from a JSON file; prints its job id (alone on stdout)."""
    body = _read_json(file, "FILE.json")
    if not isinstance(body, dict):
        raise typer.BadParameter("the body must be a JSON object", param_hint="FILE.json")
    with _client(ctx, url, token) as client:
        accepted, replayed = client.submit_write(
            model,
            body,
            record_id=record_id,
            ignore_unknown_fields=ignore_unknown_fields,
            idempotency_key=idempotency_key,
        )
        job_id = str(accepted["job_id"])
        typer.echo(job_id)
        if replayed:
            _stderr().print("(an earlier submission with this idempotency key, replayed)")
        if not watch:
            _stderr().print(f"follow it with: pmsq status {job_id} --watch", highlight=False)
            return
        final = _follow(ctx, client, job_id, interval_s=interval, timeout_s=0)
    raise typer.Exit(_exit_code(final))


@app.command()
def status(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The write's job id (as `write` printed it).")],
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Follow the job tree live until final.")
    ] = False,
    interval: Annotated[float, typer.Option(min=0, help="Seconds between polls.")] = (
        DEFAULT_POLL_INTERVAL_S
    ),
    timeout: Annotated[
        float, typer.Option(min=0, help="Stop watching after this many seconds (0: never).")
    ] = 0,
    url: UrlOption = DEFAULT_API_URL,
    token: TokenOption = None,
) -> None:
    """Show a write's status and job tree; exit 0 on SUCCESS, 1 on FAILURE/PARTIAL_SUCCESS."""
    with _client(ctx, url, token) as client:
        if watch:
            final = _follow(ctx, client, job_id, interval_s=interval, timeout_s=timeout)
        else:
            write_status, jobs = snapshot(client, job_id)
            final = str(write_status.get("write_status"))
            _stdout(ctx).print(write_view(job_id, write_status, jobs))
    raise typer.Exit(_exit_code(final))


def _exit_code(write_status: str) -> int:
    return EXIT_BY_WRITE_STATUS.get(write_status, EXIT_PENDING)


def _follow(
    ctx: typer.Context, client: PmsqClient, job_id: str, *, interval_s: float, timeout_s: float
) -> str:
    wiring = _wiring(ctx)
    try:
        return watch_write(
            client,
            job_id,
            _stdout(ctx),
            interval_s=interval_s,
            timeout_s=timeout_s,
            sleep=wiring.sleep,
            clock=wiring.clock,
        )
    except KeyboardInterrupt:
        _stderr().print(f"stopped watching; the write goes on (pmsq status {job_id})")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def snapshot(client: PmsqClient, job_id: str) -> tuple[dict[str, Any], list[JobRow]]:
    """The write's status, then its job tree (read second, so never older than the status)."""
    write_status = client.write_status(job_id)
    return write_status, jobs_from_attempts(client.job_attempts(job_id))


def poll_until_final(
    client: PmsqClient,
    job_id: str,
    *,
    interval_s: float,
    timeout_s: float = 0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[tuple[dict[str, Any], list[JobRow]]]:
    """Yields snapshots until the write is final (the last one yielded) or `timeout_s` ran out.

    `timeout_s` 0 means no limit; API errors propagate as `ApiError` / `ApiUnreachable`.
    """
    deadline = clock() + timeout_s if timeout_s > 0 else None
    while True:
        write_status, jobs = snapshot(client, job_id)
        yield write_status, jobs
        if write_status.get("write_status") in FINAL_WRITE_STATUSES:
            return
        if deadline is not None and clock() + interval_s > deadline:
            return
        sleep(interval_s)


def watch_write(
    client: PmsqClient,
    job_id: str,
    console: Console,
    *,
    interval_s: float,
    timeout_s: float = 0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Draws the write until it is final (or the timeout ran out); returns its last status.

    On a terminal the view is redrawn in place; elsewhere (a pipe, a CI log) one line is printed
    per change of status or progress, then the final view.
    """
    snapshots = poll_until_final(
        client, job_id, interval_s=interval_s, timeout_s=timeout_s, sleep=sleep, clock=clock
    )
    last: tuple[dict[str, Any], list[JobRow]] = ({"write_status": "PENDING"}, [])
    if console.is_terminal:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            for last in snapshots:
                live.update(write_view(job_id, *last), refresh=True)
        return str(last[0].get("write_status"))
    shown = None
    for last in snapshots:
        write_status, jobs = last
        line = (
            f"{write_status.get('write_status')}  "
            f"{sum(job.finished for job in jobs)}/{len(jobs)} jobs finished"
        )
        if line != shown:
            console.print(line, highlight=False)
            shown = line
    console.print(write_view(job_id, *last))
    return str(last[0].get("write_status"))


# -- logs ---------------------------------------------------------------------------------------


@app.command()
def logs(
    ctx: typer.Context,
    job_id: Annotated[
        str | None, typer.Argument(help="A job id: its attempts and PMS exchanges.")
    ] = None,
    raw: Annotated[
        str | None,
        typer.Option(metavar="LOG_ID", help="Print one PMS exchange, request and response."),
    ] = None,
    only_this_job: Annotated[bool, typer.Option(help="Leave out the jobs below JOB_ID.")] = False,
    url: UrlOption = DEFAULT_API_URL,
    token: TokenOption = None,
) -> None:
    """A table of a job's attempts and PMS exchanges, or (--raw) one exchange in full."""
    if (job_id is None) == (raw is None):
        raise typer.BadParameter("give a JOB_ID, or --raw LOG_ID", param_hint="JOB_ID / --raw")
    console = _stdout(ctx)
    with _client(ctx, url, token) as client:
        if raw is not None:
            console.print_json(data=client.log_data(raw))
            return
        assert job_id is not None
        entries = client.job_attempts(job_id, include_all_jobs=not only_this_job)
    console.print(attempts_table(entries))


# -- entry point --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line and returns its exit code (the console script exits with it)."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="pmsq")
    except SystemExit as exit_:
        code = exit_.code
        if code is None:
            return EXIT_OK
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return EXIT_OK
