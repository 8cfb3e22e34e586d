"""Alembic, driven from code: `upgrade(url)` brings any database to the models' schema."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

SCRIPT_LOCATION = "pmsq.models:migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)
