"""Child processes for integration and end-to-end tests.

`ManagedProcess` (the demo's `Supervised`, with polling) runs a command in its own session (so
the whole process group can be killed), sends its output to a log file, and offers polling
helpers that fail with the log tail instead of hanging. `wait_until` is also available on its
own for conditions that involve no process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from pmsq.cli.supervisor import Supervised

T = TypeVar("T")

#: Lines of a log shown in error messages.
LOG_TAIL_LINES = 40


def pool_children(pid: int) -> list[int]:
    """The ids of the processes whose parent is `pid` (a Celery worker's pool processes)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


class ProcessExitedError(RuntimeError):
    """Raised when a process being waited on exits before the awaited condition held."""


def wait_until(
    predicate: Callable[[], T],
    deadline_s: float,
    interval_s: float = 0.05,
    *,
    message: str = "condition",
    details: Callable[[], str] | None = None,
) -> T:
    """Call `predicate` until it returns a truthy value, and return that value.

    `predicate` is called at least once, then every `interval_s` until `deadline_s` seconds have
    passed. Exceptions from `predicate` propagate. Raises `TimeoutError` naming `message`, the
    last value seen, and `details()` (e.g. a log tail) when the deadline passes.
    """
    deadline = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{details()}" if details is not None else ""
            raise TimeoutError(
                f"{message} did not hold within {deadline_s:g}s (last value: {value!r}){extra}"
            )
        time.sleep(interval_s)


def stop_all(
    processes: Sequence[ManagedProcess], sig: int = signal.SIGTERM, timeout_s: float = 10.0
) -> None:
    """`ManagedProcess.stop` for several processes whose shutdowns may overlap.

    Every running process gets `sig` first; then each is waited on until `timeout_s` after the
    signals went out, and its whole process group is SIGKILLed as `stop` does. Stopping a stack
    so takes as long as its slowest process, not the sum of all of them.
    """
    running = [process for process in processes if process.is_running()]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            process.popen.send_signal(sig)
    deadline = time.monotonic() + timeout_s
    for process in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        process.kill()


class ManagedProcess(Supervised):
    """A child process started in a new session with its output captured in a log file
    (`pmsq.cli.supervisor.Supervised`, which the demo uses too), plus polling helpers.

    Use as a context manager, or call `start()` and later `stop()` / `kill()`. Either way the
    whole process group is SIGKILLed when the process is stopped, so grandchildren (a Celery
    worker's pool, a postmaster's backends) never outlive the test.
    """

    def __init__(
        self,
        args: Sequence[str | os.PathLike[str]],
        *,
        name: str | None = None,
        env: Mapping[str, str | None] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        user: str | int | None = None,
        group: str | int | None = None,
    ) -> None:
        """Describe the process; nothing runs until `start()`.

        `env` overrides the current environment; a value of `None` removes that variable.
        `log_dir` defaults to a fresh temporary directory. `user`/`group` drop privileges in the
        child (only meaningful when running as root).
        """
        name = name or Path(os.fspath(args[0])).name
        if log_dir is None:
            log_dir = tempfile.mkdtemp(prefix=f"pmsq-{name}-")
        super().__init__(name, args, log_dir=Path(log_dir), cwd=cwd, user=user, group=group)
        self.env_overrides = dict(env or {})

    def environment(self) -> dict[str, str]:
        """The current environment with `env`'s overrides, read at `start()`."""
        env = os.environ.copy()
        for key, value in self.env_overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def __enter__(self) -> Self:
        if not self.started:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.started:
            self.stop()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines (more than the demo shows: a test's failure needs them)."""
        return super().log_tail(lines)

    # -- polling ---------------------------------------------------------------------------

    def wait_until(
        self,
        predicate: Callable[[], T],
        deadline_s: float,
        interval_s: float = 0.05,
        *,
        message: str = "condition",
        require_running: bool = True,
    ) -> T:
        """`wait_until` with this process's log tail in the error.

        With `require_running` (the default), raises `ProcessExitedError` as soon as the process
        exits, instead of waiting out the deadline for a condition that can no longer hold.
        """

        def check() -> T:
            value = predicate()
            if not value and require_running and not self.is_running():
                raise ProcessExitedError(
                    f"{self.name} exited before {message} held\n{self.describe()}"
                )
            return value

        return wait_until(
            check, deadline_s, interval_s, message=f"{self.name}: {message}", details=self.describe
        )

    def wait_http(
        self,
        url: str,
        deadline_s: float,
        interval_s: float = 0.1,
        *,
        ok: Callable[[httpx.Response], bool] = lambda r: r.is_success,
    ) -> httpx.Response:
        """Poll GET `url` until a response satisfies `ok` (2xx by default) and return it.

        Connection errors count as "not yet"; raises `TimeoutError` or `ProcessExitedError`.
        """
        last_error: list[str] = []

        with httpx.Client(timeout=min(2.0, max(deadline_s, 0.1))) as client:

            def probe() -> httpx.Response | None:
                try:
                    response = client.get(url)
                except httpx.TransportError as exc:
                    last_error[:] = [repr(exc)]
                    return None
                last_error[:] = [f"HTTP {response.status_code}"]
                return response if ok(response) else None

            try:
                response = self.wait_until(
                    probe, deadline_s, interval_s, message=f"GET {url} succeeds"
                )
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}\nlast attempt: {''.join(last_error)}") from None
        assert response is not None  # wait_until returns only truthy values
        return response

    def wait_exit(self, deadline_s: float) -> int:
        """Wait for the process to exit by itself and return its exit status."""
        try:
            return self.popen.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            raise TimeoutError(
                f"{self.name} did not exit within {deadline_s:g}s\n{self.describe()}"
            ) from None


@contextlib.contextmanager
def sandbox_server(port: int) -> Iterator[str]:
    """The sandbox PMS as its own process on `port`, ready; yields its base URL. Stack-less
    tests of the connectors talk to it directly."""
    process = ManagedProcess(
        [sys.executable, "-m", "pmsq.cli", "sandbox", "--port", str(port)], name="sandbox"
    )
    with process:
        url = f"http://127.0.0.1:{port}"
        process.wait_http(f"{url}/_sandbox/health", deadline_s=30)
        yield url


@contextlib.contextmanager
def http_receiver(handle: Callable[[dict[str, str], bytes], int], path: str) -> Iterator[str]:
    """An HTTP endpoint in this process, for what pmsq sends out (webhooks): each POST's
    headers (lower-cased) and body go to `handle`, whose answer is the status. Yields the URL
    of `path` on it; the server stops on leaving."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = handle({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
