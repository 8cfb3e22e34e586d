"""How the suite is shared out between pytest-xdist workers (`pytest -n N`).

Integration and e2e modules set up one database, and e2e modules one running stack, per module
and backend (`database_url` is module-scoped and parametrized over SQLite and PostgreSQL). Handing
tests out one at a time would set those up again in every worker that gets a test of the module;
handing out whole files keeps a module's two backends in one worker, one after the other.
`ModuleBackendScheduling` hands out one (module, backend) half at a time, so the two halves of a
slow module can run side by side.

Each worker is a pytest session of its own: its own redis-server and PostgreSQL cluster on free
ports, its own temp dirs, so work units never share a server.
"""

from __future__ import annotations

import re

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling

#: Parameter ids of the `database_url` fixture (tests/conftest.py).
BACKEND_IDS = frozenset({"sqlite", "postgresql"})
_PARAMS = re.compile(r"\[(?P<ids>.*)\]$")


def work_unit(nodeid: str) -> str:
    """The unit a test is handed out in: its file, plus its backend when it has one.

    `tests/e2e/test_sync.py::test_x[sqlite]` -> `tests/e2e/test_sync.py[sqlite]`;
    `tests/unit/test_cli.py::test_y[a-b]` -> `tests/unit/test_cli.py`.
    """
    path, _, rest = nodeid.partition("::")
    params = _PARAMS.search(rest)
    if params is not None:
        backends = [i for i in params.group("ids").split("-") if i in BACKEND_IDS]
        if backends:
            return f"{path}[{backends[0]}]"
    return path


class ModuleBackendScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with `work_unit` as the scope.

    Units are handed out in collection order (not largest first), so the e2e modules, the
    slowest units, start first and the many short unit-test files fill in at the end.
    """

    def __init__(self, config: pytest.Config, log: Producer | None = None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False

    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid)
