"""Migrating an empty database to head gives exactly the models' schema, on every backend."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from support.services import PostgresServer

import models  # noqa: F401  (registers every table on Base.metadata)
from models.base import Base
from models.db import make_engine
from models.migrate import alembic_config, upgrade

_numbers = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"migration_{next(_numbers)}"
    url = server.create_database(name)
    try:
        yield url
    finally:
        server.drop_database(name)


def schema_differences(url: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def test_upgrade_from_empty_matches_the_models(empty_database_url: str) -> None:
    assert table_names(empty_database_url) == set()

    upgrade(empty_database_url)

    assert schema_differences(empty_database_url) == []
    assert table_names(empty_database_url) == set(Base.metadata.tables) | {"alembic_version"}
    assert current_revision(empty_database_url) == head_revision(empty_database_url)


def test_an_empty_database_differs_from_the_models(empty_database_url: str) -> None:
    # The comparison is not vacuous: before migrating, every table is reported missing.
    differences = schema_differences(empty_database_url)
    added = {diff[1].name for diff in differences if diff[0] == "add_table"}
    assert added == set(Base.metadata.tables)


def test_upgrade_is_idempotent_and_downgrade_to_base_removes_every_table(
    empty_database_url: str,
) -> None:
    upgrade(empty_database_url)
    upgrade(empty_database_url)  # already at head: a no-op, not an error
    assert schema_differences(empty_database_url) == []

    command.downgrade(alembic_config(empty_database_url), "base")
    assert table_names(empty_database_url) <= {"alembic_version"}
    assert current_revision(empty_database_url) is None

    upgrade(empty_database_url)
    assert schema_differences(empty_database_url) == []
