"""Alembic environment: migrations run against the URL the caller put in the config."""

from __future__ import annotations

from alembic import context

import pmsq.models  # noqa: F401  (registers every table on Base.metadata)
from pmsq.models.base import Base
from pmsq.models.db import make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url must be set"
engine = make_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
