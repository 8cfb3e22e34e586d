"""Supervise child processes: own process group, log file, clean stop (the demo, the tests).

Each child runs in a new session, so a Ctrl-C in the terminal reaches only the supervisor, which
then stops every child deliberately, and so stopping a child also stops its own children (a
Celery worker's pool processes). Output goes to a log file whose tail explains a failure.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

#: Lines of a log shown when something went wrong.
LOG_TAIL_LINES = 30


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    Another process may take it before the caller binds it; good enough for a local demo, whose
    readiness checks would then fail with the child's log rather than hang.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Supervised:
    """One child process in its own session, its stdout and stderr in `log_path`.

    The demo supervises its servers with it, and the test suite's process fixtures build on it
    (`tests/support/processes.py` adds polling), so both stop children the same way.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str | os.PathLike[str]],
        *,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        user: str | int | None = None,
        group: str | int | None = None,
    ) -> None:
        """Describe the process; nothing runs until `start()`. `env` replaces the environment
        (None: the caller's); `user`/`group` drop privileges in the child (as root only)."""
        self.name = name
        self.args = [os.fspath(a) for a in args]
        self.log_path = log_dir / f"{name}.log"
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._user = user
        self._group = group
        self._popen: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str] | None:
        """The child's environment, read at `start()`."""
        return self._env

    def start(self) -> Self:
        """Start the process in a new session; raises `OSError` if it cannot be executed and
        `RuntimeError` if it was started already."""
        if self._popen is not None:
            raise RuntimeError(f"{self.name} was already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # The child keeps its own copy of the descriptor; ours closes on leaving the block.
            self._popen = subprocess.Popen(
                self.args,
                env=self.environment(),
                cwd=self._cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=self._user,
                group=self._group,
            )
        return self

    @property
    def started(self) -> bool:
        return self._popen is not None

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

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int | None:
        """Send `sig` (SIGTERM) to the process, wait up to `timeout_s`, then SIGKILL its whole
        process group.

        Only the leader gets `sig`, so it shuts down in its own order (a Celery worker's warm
        shutdown stops its pool); the group is SIGKILLed in the end even if the leader exited in
        time, so no grandchild outlives it. Returns the exit status (None if never started);
        safe to call more than once.
        """
        popen = self._popen
        if popen is None:
            return None
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

    def log_text(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the process's output, for error messages."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def describe(self) -> str:
        """A header (command, state, log path) and the log tail."""
        if self._popen is None:
            state = "not started"
        elif self._popen.poll() is None:
            state = "running"
        else:
            state = f"exited with {self._popen.returncode}"
        return (
            f"--- {self.name}: {shlex.join(self.args)} ({state}); log {self.log_path} ---\n"
            f"{self.log_tail()}"
        )
