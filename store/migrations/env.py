"""Alembic environment: runs on the connection store.db.upgrade() passes in (or on sqlalchemy.url from the CLI)."""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from store.schema import metadata

config = context.config


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # `alembic -c store/alembic.ini upgrade head` with GATEWAY_DATABASE_URL or sqlalchemy.url
    from store.db import default_url

    with create_engine(config.get_main_option("sqlalchemy.url") or default_url()).begin() as conn:
        _run(conn)
