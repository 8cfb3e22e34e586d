"""What a benchmark's processes cost: CPU from `/proc`, Redis round trips from `INFO`, and
py-spy profiles.

The meters are read at the start and at the end of a measured phase; the difference is what
the phase cost. They watch processes the benchmark started, by process id, so nothing else
running on the machine is counted:

- `CpuMeter`: user + system CPU seconds of named process trees (a Celery worker and its pool
  children, a postmaster and its backends). A process that exited and was reaped during the
  phase is still counted, through its parent's `cutime`/`cstime`.
- `RedisMeter`: one redis-server's `total_reads_processed` (socket reads of client requests:
  one per round trip, whether it carries one command, a pipeline, a MULTI/EXEC or an EVALSHA)
  and `INFO commandstats` (commands executed, including those a Lua script or a MULTI runs, so
  they are no count of round trips).
- `RedisMonitor`: the commands clients sent to one redis-server (MONITOR), by name, EVALSHA by
  script: what a round trip carried, without the commands run inside scripts. Opt-in: the
  stream costs the server and this process CPU.
- `Profiler`: `py-spy record` on processes for the length of a phase, summarised into the
  functions that hold the most samples.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis

#: Kernel clock ticks per second: the unit of the CPU times in `/proc/<pid>/stat`.
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
#: Seconds a `RedisMonitor` waits for its marker to come back through the stream.
MONITOR_MARK_TIMEOUT_S = 60.0
#: Seconds py-spy gets to write its file after SIGINT.
PROFILER_STOP_TIMEOUT_S = 30.0
#: Files of the frames every stack of a process shares (interpreter and CLI start-up, Celery's
#: and billiard's process start and main loops, thread and event-loop bootstraps). They are
#: left out of the inclusive list, where they would take every place at the top and say
#: nothing; the leaf list keeps everything.
TRUNK_FILES = (
    "<frozen runpy>", "click/", "typer/", "pmsq/cli/", "threading.py", "asyncio/", "uvicorn/",
    "anyio/", "celery/__main__.py", "celery/bin/", "celery/bootsteps.py",
    "celery/worker/worker.py", "celery/worker/loops.py", "celery/concurrency/",
    "kombu/asynchronous/hub.py", "billiard/process.py", "billiard/popen_fork.py",
    "billiard/pool.py", "billiard/context.py",
)  # fmt: skip


# -- CPU from /proc ---------------------------------------------------------------------------


def _process_table() -> dict[int, tuple[int, int]]:
    """Every process's parent id and CPU ticks: its own user + system time plus that of its
    children it has reaped (`/proc/<pid>/stat` fields 4 and 14-17)."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                raw = stat.read()
        except OSError:  # exited while we looked
            continue
        # The command name (field 2) may hold spaces and parentheses; what follows the last
        # ")" is field 3 onwards.
        fields = raw.rsplit(b")", 1)[1].split()
        table[int(entry.name)] = (int(fields[1]), sum(int(value) for value in fields[11:15]))
    return table


def _tree(roots: Iterable[int], children: Mapping[int, list[int]]) -> set[int]:
    found: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, ()))
    return found


class CpuMeter:
    """User + system CPU seconds of named groups of process trees.

    A live process counts its own time; one that exited during the phase counts through its
    parent's reaped-children time, so a recycled pool child or a closed database backend is not
    lost. Processes that left their tree (daemonised, re-parented to init) are not followed.
    """

    def __init__(self) -> None:
        self._roots: dict[str, list[int]] = {}

    def watch(self, group: str, pid: int) -> None:
        """Count `pid` and all its descendants in `group` from the next sample on."""
        self._roots.setdefault(group, []).append(pid)

    def sample(self) -> dict[str, float]:
        """CPU seconds used so far by each group (only differences between samples mean
        anything)."""
        table = _process_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        return {
            group: sum(table[pid][1] for pid in _tree(roots, children) if pid in table)
            / CLOCK_TICKS_PER_S
            for group, roots in self._roots.items()
        }


def difference(end: Mapping[str, float], start: Mapping[str, float]) -> dict[str, float]:
    return {key: end[key] - start.get(key, 0.0) for key in end}


# -- Redis round trips and commands -----------------------------------------------------------


@dataclass(frozen=True)
class RedisCounts:
    """What one redis-server served: requests read (round trips) and commands executed."""

    round_trips: int
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def commands(self) -> int:
        return sum(self.calls.values())

    def __sub__(self, start: RedisCounts) -> RedisCounts:
        names = self.calls.keys() | start.calls.keys()
        calls = {name: self.calls.get(name, 0) - start.calls.get(name, 0) for name in names}
        return RedisCounts(
            self.round_trips - start.round_trips,
            {name: count for name, count in sorted(calls.items()) if count},
        )


class RedisMeter:
    """The counters of one redis-server, read over a connection of its own.

    Each sample is one `INFO stats commandstats` round trip; `between` takes the sampling's own
    request and `INFO` call out of the difference, so an idle server shows zero.
    """

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._client.ping()  # connect now: the handshake must not land inside a phase

    def sample(self) -> RedisCounts:
        info = self._client.info("stats", "commandstats")
        calls = {
            key.removeprefix("cmdstat_"): int(value["calls"])
            for key, value in info.items()
            if key.startswith("cmdstat_")
        }
        return RedisCounts(int(info["total_reads_processed"]), calls)

    @staticmethod
    def between(end: RedisCounts, start: RedisCounts) -> RedisCounts:
        """`end - start` without the end sample's read and the start sample's `INFO` call
        (a server counts a read before it runs the command, and a call after)."""
        delta = end - start
        calls = dict(delta.calls)
        if calls.get("info", 0) > 0:
            calls["info"] -= 1
            if not calls["info"]:
                del calls["info"]
        return RedisCounts(delta.round_trips - 1, calls)

    def close(self) -> None:
        self._client.close()


def lua_script_names(root: Path) -> dict[str, str]:
    """The SHA1 (as EVALSHA names a script) of every `.lua` file under `root`, to its path
    relative to `root`; virtual environments are skipped."""
    names = {}
    for path in root.rglob("*.lua"):
        if ".venv" not in path.parts:
            digest = hashlib.sha1(path.read_text().encode(), usedforsecurity=False).hexdigest()
            names[digest] = str(path.relative_to(root))
    return names


class RedisMonitor:
    """The commands clients sent to one redis-server, counted by name (`evalsha <script>` for
    scripts whose source `script_names` knows), through `MONITOR` read by a thread here.

    Commands a Lua script runs are not counted (MONITOR marks them `lua`), nor this module's own
    `INFO` samples. `take` is exact: it sends a marker through the same stream and returns what
    came before it. A pipeline or a MULTI/EXEC block shows as its commands: these are commands
    per round trip's content, not round trips.
    """

    MARK = "bench-costs-mark"

    def __init__(self, url: str, script_names: Mapping[str, str]) -> None:
        self._script_names = dict(script_names)
        self._monitor = redis.Redis.from_url(url).monitor()
        self._monitor.__enter__()  # sends MONITOR and checks its OK
        self._marker = redis.Redis.from_url(url)
        self._counts: Counter[str] = Counter()
        self._taken: queue.Queue[tuple[str, Counter[str]]] = queue.Queue()
        self._sequence = itertools.count()
        self._stopping = False
        self._thread = threading.Thread(target=self._read, name="redis-monitor", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                entry = self._monitor.next_command()
            except (redis.ConnectionError, OSError, ValueError):
                if self._stopping:
                    return
                raise
            if entry is None or entry["client_type"] == "lua":
                continue
            args = str(entry["command"]).split(" ")
            name = args[0].lower()
            if name == "echo" and len(args) > 1 and args[1].startswith(self.MARK):
                self._taken.put((args[1], self._counts))
                self._counts = Counter()
            elif name == "info" and args[1:] == ["stats", "commandstats"]:
                continue  # RedisMeter's sample
            elif name == "evalsha" and len(args) > 1:
                self._counts[f"evalsha {self._script_names.get(args[1], args[1][:8])}"] += 1
            else:
                self._counts[name] += 1

    def take(self) -> dict[str, int]:
        """The commands sent since the previous `take` (or since the monitor started)."""
        mark = f"{self.MARK}-{next(self._sequence)}"
        self._marker.echo(mark)
        seen, counts = self._taken.get(timeout=MONITOR_MARK_TIMEOUT_S)
        if seen != mark:
            raise RuntimeError(f"monitor out of step: expected {mark}, read {seen}")
        return dict(counts)

    def close(self) -> None:
        self._stopping = True
        self._monitor.connection.disconnect()
        self._thread.join(timeout=10)
        self._marker.close()


# -- py-spy -----------------------------------------------------------------------------------


def find_py_spy() -> Path | None:
    """py-spy beside this interpreter (the venv's), else on PATH; None if not installed."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file():
        return beside
    found = shutil.which("py-spy")
    return Path(found) if found else None


@dataclass(frozen=True)
class Profile:
    """A py-spy profile summarised: samples per function as the leaf (where the time is spent)
    and anywhere on the stack (inclusive)."""

    name: str
    samples: int
    leaf: list[tuple[str, int]]
    inclusive: list[tuple[str, int]]


class Profiler:
    """`py-spy record --format raw` on named processes (with their subprocesses: a Celery
    worker's pool) from `start` until `stop`.

    With `cpu_only` (py-spy's `--gil`), only samples of a thread holding the GIL count: where
    Python spends CPU, not where it waits for a socket. py-spy samples without pausing its
    targets (`--nonblocking`), but it takes CPU of its own: the throughput of a profiled run is
    lower than an unprofiled one's.
    """

    def __init__(
        self, binary: Path, out_dir: Path, *, rate_hz: int = 50, cpu_only: bool = True
    ) -> None:
        self.binary = binary
        self.out_dir = out_dir
        self.rate_hz = rate_hz
        self.cpu_only = cpu_only
        self._running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self, name: str, pid: int) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        output = self.out_dir / f"{name}.txt"
        log = open(self.out_dir / f"{name}.py-spy.log", "wb")  # noqa: SIM115 (the child owns it)
        with log:
            popen = subprocess.Popen(
                [
                    self.binary, "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
                    "--function", "--rate", str(self.rate_hz), "--format", "raw",
                    "--output", output, *(["--gil"] if self.cpu_only else []),
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self._running[name] = (popen, output)

    def stop(self) -> dict[str, Path | str]:
        """Stop every recording (SIGINT: py-spy writes its file and exits). Returns each name's
        output file, or the reason there is none (py-spy's own last words)."""
        for popen, _ in self._running.values():
            if popen.poll() is None:
                popen.send_signal(signal.SIGINT)
        results: dict[str, Path | str] = {}
        for name, (popen, output) in self._running.items():
            try:
                popen.wait(timeout=PROFILER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
            if output.is_file() and output.stat().st_size > 0:
                results[name] = output
            else:
                log = (self.out_dir / f"{name}.py-spy.log").read_text(errors="replace")
                results[name] = log.strip().splitlines()[-1] if log.strip() else "no output"
        self._running.clear()
        return results


def summarise(name: str, raw_file: Path, top: int) -> Profile:
    """Read py-spy's raw (collapsed stack) output: one `frame;frame;...;leaf COUNT` a line,
    root first, each frame `function (file:line)`. Frames naming a process (`process 123:...`,
    from `--subprocesses`) are not functions and are dropped; a function recursing counts once
    per stack for `inclusive`, which leaves out `TRUNK_FILES`."""
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    samples = 0
    for line in raw_file.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if not frame.startswith("process ")]
        if not frames:
            continue
        samples += count
        leaf[frames[-1]] += count
        for frame in set(frames):
            if not _is_trunk(frame):
                inclusive[frame] += count
    return Profile(name, samples, leaf.most_common(top), inclusive.most_common(top))


def _is_trunk(frame: str) -> bool:
    location = frame.rpartition(" (")[2]
    return location.startswith(TRUNK_FILES)
