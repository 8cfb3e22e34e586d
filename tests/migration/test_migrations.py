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
from sqlalchemy import inspect, text
from support.services import PostgresServer

import pmsq.models  # noqa: F401  (registers every table on Base.metadata)
from pmsq.models.base import Base
from pmsq.models.db import make_engine
from pmsq.models.migrate import alembic_config, upgrade

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


def test_0003_dates_trees_that_were_already_final(empty_database_url: str) -> None:
    """Trees finished before `tree_finished_at` existed take their root's last update, so
    retention reaches them; unfinished trees and jobs below a root stay undated."""
    upgrade(empty_database_url, "0002")
    updated = "2026-01-02 03:04:05"
    engine = make_engine(empty_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO accounts (id, name, created_at) VALUES ('a', 'a', :at)"),
                {"at": updated},
            )
            connection.execute(
                text(
                    "INSERT INTO integrations (id, account_id, name, integration_vendor, active,"
                    " is_archived, new_properties_are_enabled, sync_frequency, sync_cadence,"
                    " max_request_frequency, max_request_cadence, max_job_concurrency,"
                    " use_custom_sync_schedule, created_at, updated_at) VALUES ('i', 'a', 'i',"
                    " 'SANDBOX', true, false, true, 1, 'HOUR', 1, 'SECOND', 1, false, :at, :at)"
                ),
                {"at": updated},
            )
            for job_id, root_id, finished, total in [
                ("done", "done", 2, 2),
                ("done-child", "done", 0, 0),
                ("open", "open", 1, 2),
            ]:
                connection.execute(
                    text(
                        "INSERT INTO jobs (id, root_job_id, account_id, integration_id, model,"
                        " action, payload, status, attempts, deliveries, unrecorded_claims,"
                        " outcome_unknown, idempotency_key, created_at, updated_at, tree_total,"
                        " tree_finished, tree_succeeded, tree_failed) VALUES (:id, :root, 'a',"
                        " 'i', 'residents', 'CREATE', '{}', 'SUCCESS', 1, 1, 0, false, :id, :at,"
                        " :at, :total, :finished, :finished, 0)"
                    ),
                    {"id": job_id, "root": root_id, "at": updated, "total": total,
                     "finished": finished},
                )  # fmt: skip
    finally:
        engine.dispose()

    upgrade(empty_database_url)

    engine = make_engine(empty_database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT id, tree_finished_at FROM jobs")).all()
            dated = {row[0]: row[1] for row in rows}
    finally:
        engine.dispose()
    assert dated["done"] is not None
    assert str(dated["done"]).startswith(updated)
    assert (dated["done-child"], dated["open"]) == (None, None)
