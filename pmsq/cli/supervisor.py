"""Supervise child processes for `pmsq demo`: own process group, log file, clean stop.

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
    """One child process in its own session, its stdout and stderr in `log_path`."""

    def __init__(
        self,
        name: str,
        args: Sequence[str | os.PathLike[str]],
        *,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """Describe the process; nothing runs until `start()`. `env` replaces the environment."""
        self.name = name
        self.args = [os.fspath(a) for a in args]
        self.log_path = log_dir / f"{name}.log"
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Supervised:
        """Start the process in a new session; raises `OSError` if it cannot be executed."""
        with open(self.log_path, "ab") as log:
            self._popen = subprocess.Popen(
                self.args,
                env=self._env,
                cwd=self._cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def started(self) -> bool:
        return self._popen is not None

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM the process, wait up to `timeout_s`, then SIGKILL its whole process group.

        Only the leader gets SIGTERM, so it shuts down in its own order (a Celery worker's warm
        shutdown stops its pool); the group is SIGKILLed in the end even if the leader exited in
        time, so no grandchild outlives the demo. Returns the exit status (None if never
        started); safe to call more than once.
        """
        popen = self._popen
        if popen is None:
            return None
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=timeout_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):  # group already empty
            os.killpg(popen.pid, signal.SIGKILL)
        return popen.wait()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the process's output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

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
