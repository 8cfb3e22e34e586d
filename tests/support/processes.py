"""Child processes for integration and end-to-end tests.

`ManagedProcess` runs a command in its own session (so the whole process group can be killed),
sends its output to a log file, and offers polling helpers that fail with the log tail instead of
hanging. `wait_until` is also available on its own for conditions that involve no process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import httpx

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


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of `text`, for error messages."""
    return "\n".join(text.splitlines()[-lines:])


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


class ManagedProcess:
    """A child process started in a new session with its output captured in a log file.

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
        self.args = [os.fspath(a) for a in args]
        self.name = name or Path(self.args[0]).name
        self.env_overrides = dict(env or {})
        self.cwd = cwd
        self.user = user
        self.group = group
        if log_dir is None:
            log_dir = tempfile.mkdtemp(prefix=f"pmsq-{self.name}-")
        self.log_path = Path(log_dir) / f"{self.name}.log"
        self._popen: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the process; raises `RuntimeError` if it was already started."""
        if self._popen is not None:
            raise RuntimeError(f"{self.name} was already started")
        env = os.environ.copy()
        for key, value in self.env_overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # The child keeps its own copy of the descriptor; ours is closed on leaving the block.
            self._popen = subprocess.Popen(
                self.args,
                env=env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=self.user,
                group=self.group,
            )
        return self

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        if self._popen is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has exited (negative: killed by that signal)."""
        return self.popen.poll()

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int:
        """Send `sig` to the process, wait up to `timeout_s`, then SIGKILL the process group.

        Any member of the group still alive after the process exits is SIGKILLed too. Returns the
        exit status (negative when killed by a signal). Safe to call more than once.
        """
        popen = self.popen
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=timeout_s)
        return self.kill()

    def kill(self) -> int:
        """SIGKILL the whole process group, reap the process and return its exit status."""
        popen = self.popen
        with contextlib.suppress(ProcessLookupError, PermissionError):  # group already empty
            os.killpg(popen.pid, signal.SIGKILL)
        return popen.wait()

    def __enter__(self) -> Self:
        if self._popen is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._popen is not None:
            self.stop()

    # -- output ----------------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return tail(self.log_text(), lines)

    def describe(self) -> str:
        """A header plus log tail for error messages."""
        state = "running" if self.is_running() else f"exited with {self.returncode}"
        return (
            f"--- {self.name} ({' '.join(self.args)}), {state}; log {self.log_path} ---\n"
            f"{self.log_tail()}"
        )

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
