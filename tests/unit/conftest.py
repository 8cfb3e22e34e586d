"""Unit-tier fixtures: a fresh migrated SQLite database per test, cheaply.

Overrides the root `session_factory` (which runs on every backend): unit tests stay on SQLite.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from pmsq.models.db import make_engine, make_session_factory
from pmsq.models.migrate import upgrade


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "pmsq.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def session_factory(migrated_template: Path, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A fresh migrated SQLite database per test (a copy of the session's migrated file)."""
    path = tmp_path / "pmsq.db"
    shutil.copyfile(migrated_template, path)
    engine = make_engine(f"sqlite:///{path}")
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()
